"""The `notespace` command line, one module per command group. Training commands plug in
through the `notespace.cli` entry-point group, so the service never imports training code (or
torch)."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from service.cli import audit, db, index, keys, models, serve

app = typer.Typer(
    name="notespace",
    help="On-premise embeddings, categories and search for clinical notes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold note text
    # Plain help: rich's boxed panels cut long option names to fit the terminal.
    rich_markup_mode=None,
)
app.command()(serve.serve)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")
app.add_typer(index.app, name="index")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")


def _load_plugins() -> None:
    for entry in entry_points(group="notespace.cli"):
        register = entry.load()
        register(app)


def main() -> None:
    _load_plugins()
    app()
