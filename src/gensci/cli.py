"""The `gensci` command. Each study mounts its own sub-command."""

from __future__ import annotations

import typer

from gensci import __version__
from gensci.bounds import install as install_bounds
from gensci.cells.cli import app as cells_app
from gensci.demo import demo
from gensci.poisson.cli import app as poisson_app
from gensci.protein.cli import app as protein_app
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
