"""Edges of access control and audit (issue 14): credentials that disagree, refused acting
users and spreadsheet formulas in the audit export, secrets in logged URLs, the API docs
behind a key, and slow clients that must not hold the server."""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cli.audit import spreadsheet_safe
from service.registry.audit import AuditLog
from service.registry.database import make_engine
from service.registry.keys import KeyScope, KeyStore
from tests.conftest import LiveServer, make_settings, migrated_sqlite_url
from tests.support.subprocess_server import ServiceProcess

NOTESPACE = str(Path(sys.executable).with_name("notespace"))
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


@dataclass
class Secured:
    live: LiveServer
    key: str
    other_key: str


@pytest.fixture(scope="module")
def secured(tiny_bundle: Path) -> Iterator[Secured]:
    settings_ = make_settings(tiny_bundle, auth="on", warmup=False)
    store = KeyStore(make_engine(settings_.database_url))
    every = [s.value for s in KeyScope]
    key = store.create("+cmd|' /C calc'!A0", every, "test").key  # a formula as a key name
    other = store.create("other", every, "test").key
    with LiveServer(settings_) as live:
        yield Secured(live, key, other)


# -- credentials ---------------------------------------------------------------------------

# What a header may carry: the key, another valid key, a malformed or unknown one, nothing.
CREDENTIALS = ["key", "other", "unknown", "malformed", "empty"]


def _value(kind: str, s: Secured, header: str) -> str:
    key = {
        "key": s.key,
        "other": s.other_key,
        "unknown": "ns_abcdefghij_" + "A" * 43,
        "malformed": "not-a-key",
        "empty": "",
    }[kind]
    return (f"Bearer {key}" if kind != "empty" else "Bearer") if header == "authorization" else key


@settings(max_examples=60, deadline=None)
@given(
    authorizations=st.lists(st.sampled_from(CREDENTIALS), max_size=2),
    api_keys=st.lists(st.sampled_from(CREDENTIALS), max_size=2),
)
def test_a_request_passes_only_when_every_credential_it_sends_is_the_same_valid_key(
    secured: Secured, authorizations: list[str], api_keys: list[str]
) -> None:
    headers = [("authorization", _value(k, secured, "authorization")) for k in authorizations]
    headers += [("x-api-key", _value(k, secured, "x-api-key")) for k in api_keys]
    sent = authorizations + api_keys
    passes = bool(sent) and (set(sent) == {"key"} or set(sent) == {"other"})
    with secured.live.client() as c:
        r = c.get("/info", headers=httpx.Headers(headers))
    assert r.status_code == (200 if passes else 401), (headers, r.text)
    if not passes:
        assert r.json()["error"]["type"] == "authentication_error"
    if {"key", "other"} <= set(sent) and not {"malformed", "empty"} & set(sent):
        assert r.json()["error"]["code"] == "conflicting_credentials"


# -- audit: acting users and the CSV export -------------------------------------------------


def test_refused_acting_users_are_not_stored_verbatim_and_the_export_is_spreadsheet_safe(
    secured: Secured,
) -> None:
    auth = {"Authorization": f"Bearer {secured.key}"}
    refused = ["u" * 300, "dr\x07smith", "line\tbreak"]
    formulas = ['=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "@SUM(A1)", "-2+3"]
    with secured.live.client() as c:
        for value in refused:
            assert c.get("/info", headers={**auth, "X-Acting-User": value}).status_code == 400
        two = httpx.Headers([*auth.items(), ("X-Acting-User", "alice"), ("X-Acting-User", "=x")])
        assert c.get("/info", headers=two).status_code == 400
        for value in formulas:
            assert c.get("/info", headers={**auth, "X-Acting-User": value}).status_code == 200
        note = {"id": "=1+1", "text": "chest pain"}
        assert c.post("/notes", json={"notes": [note]}, headers=auth).status_code == 200
    time.sleep(0.5)  # the audit writer flushes every 0.2 s
    url = secured.live.settings.database_url
    stored = [e.acting_user for e in AuditLog(make_engine(url)).entries()]
    for value in refused:
        assert value not in stored
    # (the server itself refuses a control character in a header before the app sees it)
    assert sum(1 for v in stored if v and v.startswith("(refused; sha256 ")) >= 3
    assert "=x" not in stored
    for value in formulas:
        assert value in stored  # valid values are stored as sent...

    out = subprocess.run(
        [NOTESPACE, "audit", "export", "--database-url", url, "--format", "csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    cells = [cell for row in rows for cell in row.values() if cell]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]  # ...exported inert
    assert "'" + formulas[0] in cells and "'=1+1" in cells and "'+cmd|' /C calc'!A0" in cells


@given(st.text(max_size=30))
def test_spreadsheet_safe_cells_never_start_a_formula(value: str) -> None:
    safe = spreadsheet_safe(value)
    assert isinstance(safe, str) and not safe.startswith(FORMULA_STARTS)
    assert safe in (value, "'" + value)


# -- logs and docs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_keys_never_reach_the_access_log(tiny_bundle: Path) -> None:
    url = migrated_sqlite_url()
    key = KeyStore(make_engine(url)).create("k", ["search", "index"], "t").key
    secret = key.split("_", 2)[2]
    env = {
        "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
        "NOTESPACE_DATABASE_URL": url,
        "NOTESPACE_INDEX_DIR": tempfile.mkdtemp(),
        "NOTESPACE_AUTH": "on",
        "NOTESPACE_WARMUP": "false",
    }
    server = ServiceProcess(env, log_level="info").wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get(f"/index/stats?api_key={key}").status_code == 401
            assert c.get(f"/index/stats?token={secret}&x=1").status_code == 401
            headers = {"Authorization": f"Bearer {key}"}
            assert c.get(f"/notes/{key}", headers=headers).status_code == 404
    finally:
        logs = server.stop()
    assert "/index/stats?api_key=***" in logs  # the line is there, the value is not
    assert secret not in logs


@pytest.mark.parametrize(
    ("auth", "api_docs", "anonymous", "with_key"),
    [
        ("on", "auto", 401, 200),  # the default with auth on: a key is needed
        ("on", "open", 200, 200),
        ("on", "off", 404, 404),
        ("off", "auto", 200, 200),
    ],
)
def test_api_docs_access(
    tiny_bundle: Path, auth: str, api_docs: str, anonymous: int, with_key: int
) -> None:
    settings_ = make_settings(tiny_bundle, auth=auth, api_docs=api_docs, warmup=False)
    key = KeyStore(make_engine(settings_.database_url)).create("k", ["embed"], "t").key
    with LiveServer(settings_) as live, live.client() as c:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert c.get(path).status_code == anonymous, path
            r = c.get(path, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == with_key, path
        if with_key == 200:
            r = c.get("/openapi.json", headers={"Authorization": f"Bearer {key}"})
            assert "/embed" in r.json()["paths"]


# -- slow clients -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(tiny_bundle: Path) -> Iterator[LiveServer]:
    settings_ = make_settings(
        tiny_bundle, warmup=False, header_read_timeout_s=0.5, body_read_timeout_s=0.5
    )
    with LiveServer(settings_) as live:
        yield live


def _connect(live: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", live.settings.port), timeout=5)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    started = time.monotonic()
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def test_a_connection_that_sends_nothing_is_closed(impatient: LiveServer) -> None:
    with _connect(impatient) as sock:
        data, waited = _read_until_closed(sock)
    assert data == b"" and waited < 3


def test_headers_sent_byte_by_byte_get_408_at_the_deadline(impatient: LiveServer) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with _connect(impatient) as sock:
        started = time.monotonic()
        with pytest.raises(OSError):  # the server closes while the client still drips
            for byte in request:
                sock.send(bytes([byte]))
                time.sleep(0.02)
        data, _ = _read_until_closed(sock)
    assert time.monotonic() - started < 3.5
    assert data.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in data


def test_a_stalled_body_gets_408_and_the_connection_is_closed(impatient: LiveServer) -> None:
    head = (
        b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    with _connect(impatient) as sock:
        sock.sendall(head + b'{"notes": ["ch')
        data, waited = _read_until_closed(sock)
    assert waited < 3
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"connection: close" in rest.lower() and b'"request_timeout"' in rest
    with impatient.client() as c:  # and the server serves everyone else
        assert c.post("/embed", json={"notes": ["chest pain"]}).status_code == 200
