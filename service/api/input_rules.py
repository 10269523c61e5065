"""Rules every request's input meets before a handler, the tokenizer or the database sees it.

* Text holds no NUL (PostgreSQL cannot store one) and no unpaired UTF-16 surrogate (JSON's
  `"\\ud800"`, or the bytes ED A0 80 that Python's JSON reader lets through: no tokenizer,
  database or response encoder accepts one).
* Numbers are finite (Python's JSON reader takes `NaN`, `Infinity` and `1e400`, which no
  database stores and no later reader parses), and integers fit in 64 bits.

They apply to every string, number and object key of a JSON body, at any depth, and to every
path parameter, and are checked here once, as an app-wide dependency; a breach is a 400 naming
the field, never echoing the value.
"""

from __future__ import annotations

import email.message
import math
import re
from typing import Any

from fastapi import Request

from service.errors import InvalidNumber, InvalidText

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_INT64 = (-(2**63), 2**63 - 1)


def check_text(value: str, param: str) -> None:
    found = _BAD_TEXT.search(value)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "an unpaired UTF-16 surrogate"
        raise InvalidText(f"{param} contains {what}", param=param)


def check_number(value: int | float, param: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidNumber(f"{param} must be a finite number", param=param)
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise InvalidNumber(f"{param} must be an integer that fits in 64 bits", param=param)


def check_value(value: Any, root: str = "body") -> None:
    """Walk a parsed JSON value (iteratively: depth costs no stack) and apply the rules."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        here = path or root
        if isinstance(item, str):
            check_text(item, here)
        elif isinstance(item, int | float):
            check_number(item, here)
        elif isinstance(item, dict):
            for key, child in item.items():
                key_text = str(key)
                if _BAD_TEXT.search(key_text):
                    check_text(key_text, f"a key of {here}")
                stack.append((child, f"{path}.{key_text}" if path else key_text))
        elif isinstance(item, list):
            stack.extend((child, f"{here}[{i}]") for i, child in enumerate(item))


async def enforce_input_rules(request: Request) -> None:
    """App-wide dependency: runs before the route's own dependencies (auth among them) and
    before its handler; the body is the one FastAPI already parsed (cached on the request)."""
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_text(value, name)
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is not None and _parsed_as_json(request):
        body = await request.body()
        if body:
            check_value(await request.json())


def _parsed_as_json(request: Request) -> bool:
    """Whether FastAPI read this body as JSON (its rule: an application/json or +json type)."""
    content_type = request.headers.get("content-type")
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
