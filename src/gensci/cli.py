"""The `gensci` command. Each study mounts its own sub-command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gensci import __version__
from gensci.bounds import install as install_bounds
from gensci.calorimetry.cli import app as calo_app
from gensci.cells.cli import app as cells_app
from gensci.demo import demo
from gensci.dynamics.cli import app as dynamics_app
from gensci.poisson.cli import app as poisson_app
from gensci.protein.cli import app as protein_app
from gensci.runtime import OverwriteOption
from gensci.style.cli import app as style_app
from gensci.symmetry.cli import app as symmetry_app
from gensci.tomography.cli import app as ct_app

app = typer.Typer(
    help="Deep generative models as instruments for science and engineering problems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo)
app.add_typer(ct_app, name="ct")
app.add_typer(poisson_app, name="poisson")
app.add_typer(cells_app, name="cells")
app.add_typer(protein_app, name="protein")
app.add_typer(dynamics_app, name="dynamics")
app.add_typer(symmetry_app, name="symmetry")
app.add_typer(calo_app, name="calo")
app.add_typer(style_app, name="style")


@app.command("report")
def report(
    folders: Annotated[list[Path], typer.Argument(help="study output folders (with results.json)")],
    out: Annotated[Path, typer.Option("--out", help="folder of the site (index.html)")],
    overwrite: OverwriteOption = False,
) -> None:
    """Build one static HTML site from study output folders: an index and a page per study."""
    from gensci.errors import OutputExistsError
    from gensci.report.site import build_site, read_record
    from gensci.runtime import prepare_out_dir

    for folder in folders:
        read_record(folder)  # every input is checked before anything is written
        site, inp = out.resolve(), folder.resolve()
        if site == inp or site in inp.parents or inp in site.parents:
            raise OutputExistsError(f"--out {out} overlaps the input folder {folder}")
    index = build_site(folders, prepare_out_dir(out, overwrite))
    typer.echo(f"wrote {index} ({len(folders)} stud{'y' if len(folders) == 1 else 'ies'})")


@app.command("version")
def version() -> None:
    """Print the gensci version."""
    typer.echo(__version__)


# every numeric option of every command is checked against gensci.bounds before work starts
install_bounds(app)


def main() -> None:
    """Entry point: run the CLI, turning gensci errors into one clear line and exit code 2.

    Usage errors (an unknown option, a non-integer where one is needed, a missing option) are
    reported by the CLI framework itself: its usage line, the problem, exit code 2.
    """
    from gensci.bounds import Interrupted
    from gensci.errors import GensciError

    try:
        app(prog_name="gensci")
    except Interrupted as exc:
        typer.secho(str(exc), err=True)
        raise SystemExit(130) from None
    except GensciError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
