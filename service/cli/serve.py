"""`notespace serve`: run the HTTP service. Every setting is a flag here, generated from
`Settings` with its description as the help text, and an environment variable NOTESPACE_<NAME>
(as text-embeddings-inference does); a flag given wins over the environment."""

from __future__ import annotations

import inspect
import json
import logging
import sys
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from pydantic.fields import FieldInfo

from service.cli.common import settings as load_settings
from service.settings import Settings

# Short spellings kept from before every setting was a flag.
_ALIASES = {"bundle_path": ("--bundle",)}


class LogLevel(StrEnum):
    # No "trace": uvicorn's trace level logs every ASGI message, headers (keys) included.
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


def _run(log_level: LogLevel, flags: dict[str, Any]) -> None:
    import uvicorn

    from service.app import create_app
    from service.server import server_config

    overrides = {
        name: _setting_value(name, value) for name, value in flags.items() if value is not None
    }
    config = load_settings(**overrides)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    server = uvicorn.Server(server_config(create_app(config), config, log_level=log_level.value))
    server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the app did not start


def _setting_value(name: str, value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    return json.loads(value) if _is_json(Settings.model_fields[name]) else value


def _is_json(field: FieldInfo) -> bool:
    return typing.get_origin(field.annotation) in (dict, list)


def _choices(name: str, values: list[str]) -> type[StrEnum]:
    """A StrEnum of a Literal setting's values: typer lists them and refuses others."""
    functional: Any = StrEnum  # the functional API, whose name mypy wants as a literal
    choices: type[StrEnum] = functional(name, {v.upper(): v for v in values})
    return choices


def _flag(name: str, field: FieldInfo) -> inspect.Parameter:
    """A `--name` option of the field's type, unset by default so the environment applies."""
    annotation: Any = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None → X
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:  # choices, listed in the help
        values = [str(v) for v in typing.get_args(annotation)]
        annotation = _choices(name, values)
    elif _is_json(field):
        annotation = str  # JSON text, as in the environment
    dashed = "--" + name.replace("_", "-")
    decls = [f"{dashed}/--no-{name.replace('_', '-')}"] if annotation is bool else [dashed]
    default = "every core" if field.default_factory is not None else field.default
    if isinstance(default, Path | dict | list):
        default = str(default) if isinstance(default, Path) else json.dumps(default)
    help_text = f"{field.description} [env NOTESPACE_{name.upper()}; default {default}]"
    option = typer.Option(
        None,
        *decls,
        *_ALIASES.get(name, ()),
        help=help_text,
        show_default=False,
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation | None
    )


def _serve_command() -> Callable[..., None]:
    parameters = [
        inspect.Parameter(
            "log_level",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(LogLevel.INFO, help="log level of the service and the server"),
            annotation=LogLevel,
        ),
        *(_flag(name, field) for name, field in Settings.model_fields.items()),
    ]

    def serve(**options: Any) -> None:
        """Run the HTTP service (every setting: a flag, or the environment variable)."""
        _run(options.pop("log_level"), options)

    serve.__dict__["__signature__"] = inspect.Signature(parameters)  # what typer reads
    return serve


serve = _serve_command()
