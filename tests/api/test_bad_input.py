"""Bad input gets a clear 4xx naming the field, never the note text; never a 500 or a hang."""

from __future__ import annotations

import json

import httpx
import pytest

CANARY = "CANARY-zebra-quartz-1729"


def assert_error(r: httpx.Response, status: int, param: str | None = None) -> dict[str, str]:
    assert r.status_code == status, r.text
    assert CANARY not in r.text
    error = r.json()["error"]
    assert error["message"] and error["code"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"notes": []}, 400, "notes"),
        ({"notes": ["fine", "   \n\t "]}, 400, "notes[1]"),
        ({"notes": [""]}, 400, "notes[0]"),
        ({"notes": [CANARY, 42]}, 422, "notes[1]"),
        ({"notes": [{"text": CANARY, "extra": 1}]}, 422, "notes[0].extra"),
        ({"notes": [CANARY], "unknown": True}, 422, "unknown"),
        ({"notes": [CANARY] * 9}, 413, "notes"),
        ({"notes": [CANARY + " x" * 5000]}, 413, "notes[0]"),
        ({"notes": [CANARY], "long_note": "explode"}, 422, "long_note"),
        ({"notes": CANARY}, 422, "notes"),
        ({}, 422, "notes"),
    ],
)
def test_bad_bodies(client: httpx.Client, body: object, status: int, param: str) -> None:
    assert_error(client.post("/embed", json=body), status, param)


def test_invalid_json(client: httpx.Client) -> None:
    r = client.post(
        "/embed",
        content=b'{"notes": ["' + CANARY.encode() + b'"',
        headers={"content-type": "application/json"},
    )
    assert assert_error(r, 400)["code"] == "invalid_json"


def test_empty_body(client: httpx.Client) -> None:
    r = client.post("/embed", content=b"", headers={"content-type": "application/json"})
    assert_error(r, 400)


def test_deeply_nested_json(client: httpx.Client) -> None:
    depth = 100_000
    r = client.post(
        "/embed",
        content=b'{"notes": ' + b"[" * depth + b"]" * depth + b"}",
        headers={"content-type": "application/json"},
    )
    assert_error(r, 400)


def test_body_over_limit_is_413(server, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import LiveServer, make_settings

    small_settings = make_settings(tiny_bundle, max_body_bytes=2048, warmup=False)
    with LiveServer(small_settings) as small, small.client() as c:
        r = c.post("/embed", json={"notes": [CANARY * 200]})
        assert_error(r, 413)
        ok = c.post("/embed", json={"notes": ["short note"]})
        assert ok.status_code == 200


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404)
    assert_error(client.get("/embed"), 405)


def test_non_json_content_type(client: httpx.Client) -> None:
    r = client.post(
        "/embed", content=json.dumps({"notes": [CANARY]}), headers={"content-type": "text/plain"}
    )
    assert 400 <= r.status_code < 500
    assert CANARY not in r.text


def test_chunked_body_over_limit_is_413(server, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import LiveServer, make_settings

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"notes": ["'
        for _ in range(50):
            yield CANARY.encode() * 10
        yield b'"]}'

    small_settings = make_settings(tiny_bundle, max_body_bytes=2048, warmup=False)
    with LiveServer(small_settings) as small, small.client() as c:
        r = c.post("/embed", content=chunks(), headers={"content-type": "application/json"})
        assert_error(r, 413)
