"""The `notespace` command line. Training commands plug in through the `notespace.cli`
entry-point group, so this module never imports training code (or torch)."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="notespace",
    help="On-premise embeddings, categories and search for clinical notes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold note text
)


def _settings(**overrides: Any) -> Any:
    from service.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind [env NOTESPACE_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [env NOTESPACE_PORT]")] = None,
    bundle: Annotated[
        Path | None, typer.Option(help="model bundle directory [env NOTESPACE_BUNDLE_PATH]")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or auto [env NOTESPACE_DEVICE]")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from service.app import create_app

    settings = _settings(host=host, port=port, bundle_path=bundle, device=device)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )


def _load_plugins() -> None:
    for entry in entry_points(group="notespace.cli"):
        register = entry.load()
        register(app)


def main() -> None:
    _load_plugins()
    app()
