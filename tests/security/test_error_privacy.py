"""No exception path logs request content (issue 14, the privacy incident): a database error
during a write on a note carrying a canary (PostgreSQL, whose error message itself quotes the
row) and an unexpected exception leave no canary in any log line or error body; the client gets
the usual error body and keeps its connection."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.api.middleware import REQUEST_ID_HEADER, LastResortMiddleware
from service.registry.database import upgrade
from tests.conftest import free_port, scratch_postgres_database
from tests.support.subprocess_server import ServiceProcess

CANARY = "CANARYpgx41"

# The trigger fails every write of a note, quoting the note's text and metadata in the error
# message and its DETAIL, as PostgreSQL's own errors can (a unique key, a JSON fragment).
_FAILING_TRIGGER = """
CREATE FUNCTION notespace_test_fail() RETURNS trigger AS $$
BEGIN
  IF NEW.note_key LIKE 'full%' THEN
    RAISE EXCEPTION 'cannot store %', NEW.text
      USING ERRCODE = 'disk_full', DETAIL = 'metadata ' || coalesce(NEW.metadata::text, '');
  END IF;
  RAISE EXCEPTION 'unexpected for %', NEW.text USING DETAIL = NEW.note_key;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER notespace_test_fail BEFORE INSERT OR UPDATE ON notes
  FOR EACH ROW EXECUTE FUNCTION notespace_test_fail();
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_a_database_error_on_a_write_logs_no_note_content(tiny_bundle: Path) -> None:
    with scratch_postgres_database() as url:
        upgrade(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(_FAILING_TRIGGER))
        engine.dispose()
        env = {
            "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
            "NOTESPACE_DATABASE_URL": url,
            "NOTESPACE_INDEX_DIR": tempfile.mkdtemp(),
            "NOTESPACE_WARMUP": "false",
        }
        server = ServiceProcess(env, log_level="debug").wait_ready()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                note = {
                    "text": f"patient {CANARY} chest pain",
                    "category": f"cat-{CANARY}",
                    "metadata": {"name": f"{CANARY} smith", CANARY: 1},
                }
                full = c.post("/notes", json={"notes": [{"id": "full-1", **note}]})
                other = c.post("/notes", json={"notes": [{"id": "odd-1", **note}]})
                health = c.get("/health")
        finally:
            logs = server.stop()
    # A full disk is 503 with Retry-After; an unexplained database error is a 500; both with
    # the usual body, and the connection still serves.
    assert full.status_code == 503 and full.headers["retry-after"]
    assert full.json()["error"]["code"] == "storage_full"
    assert other.status_code == 500 and other.json()["error"]["code"] == "database_error"
    assert health.status_code == 200
    assert health.extensions["network_stream"] is other.extensions["network_stream"]
    for response in (full, other):
        assert CANARY not in response.text
    leaked = [line for line in logs.splitlines() if CANARY in line]
    assert leaked == []
    assert "Traceback" not in logs and "[parameters" not in logs
    request_id = other.headers[REQUEST_ID_HEADER]
    assert any("sqlstate 53100" in line for line in logs.splitlines())
    assert any(request_id in line and "database failure" in line for line in logs.splitlines())


class _Boom(Exception):
    pass


def test_an_unexpected_exception_is_a_500_with_a_request_id_and_no_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fail(request: Request) -> PlainTextResponse:
        raise _Boom(f"note text {CANARY} in an exception message")

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # Placed as create_app places it: the outermost middleware of the application.
    app = Starlette(
        routes=[Route("/fail", fail), Route("/ok", ok)],
        middleware=[Middleware(LastResortMiddleware)],
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="debug"))
    thread = threading.Thread(target=server.run, daemon=True)
    with caplog.at_level(logging.DEBUG):
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
                failed = c.get("/fail")
                after = c.get("/ok")
        finally:
            server.should_exit = True
            thread.join(10)
    assert failed.status_code == 500
    request_id = failed.headers[REQUEST_ID_HEADER]
    assert failed.json()["error"] == {
        "type": "server_error",
        "code": "internal_error",
        "message": f"internal error (request {request_id})",
        "param": None,
    }
    assert after.status_code == 200  # same connection: the server did not drop it
    assert after.extensions["network_stream"] is failed.extensions["network_stream"]
    assert CANARY not in caplog.text and "Traceback" not in caplog.text
    assert "Exception in ASGI application" not in caplog.text
    service_lines = [r.getMessage() for r in caplog.records if r.name.startswith("service")]
    (line,) = [m for m in service_lines if request_id in m]
    assert "_Boom" in line
