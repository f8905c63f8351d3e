"""The `gensci` command. Each study mounts its own sub-command."""

from __future__ import annotations

import typer

from gensci import __version__
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


def main() -> None:
    """Entry point: run the CLI, turning gensci errors into one clear line and exit code 2."""
    from gensci.errors import GensciError

    try:
        app(standalone_mode=False)
    except GensciError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise SystemExit(2) from None
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("interrupted", err=True)
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":
    main()
