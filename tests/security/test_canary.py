"""Canary strings in note and query text, through every endpoint and through failing requests,
never reach a log line, an error body, a metric or the audit trail."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import httpx
import pytest

from service.registry.audit import AuditLog
from service.registry.database import make_engine
from service.registry.keys import KeyScope, KeyStore
from tests.conftest import migrated_sqlite_url
from tests.support.subprocess_server import ServiceProcess

pytestmark = pytest.mark.slow
CANARY = "CANARYzq7xw"
VECTOR = re.compile(r"-?\d\.\d{3,}(?:\s*,\s*-?\d\.\d{3,}){7,}")


def test_canaries_leave_no_trace(tiny_bundle: Path) -> None:
    url = migrated_sqlite_url()
    key = KeyStore(make_engine(url)).create("canary", [s.value for s in KeyScope], "t").key
    env = {
        "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
        "NOTESPACE_DATABASE_URL": url,
        "NOTESPACE_INDEX_DIR": tempfile.mkdtemp(),
        "NOTESPACE_AUTH": "on",
        "NOTESPACE_MAX_CHARS_PER_NOTE": "2000",
        "NOTESPACE_MAX_NOTES_PER_REQUEST": "4",
    }
    server = ServiceProcess(env, log_level="debug").wait_ready()
    bodies: list[str] = []
    try:
        with httpx.Client(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        ) as c:
            text = f"patient {CANARY} chest pain"
            calls = [
                ("POST", "/embed", {"notes": [text, {"id": "a", "text": text}]}),
                ("POST", "/embed", {"notes": [text], "categories": True}),
                ("POST", "/v1/embeddings", {"model": "tiny", "input": [text]}),
                ("POST", "/classify", {"notes": [text]}),
                ("POST", "/notes", {"notes": [{"id": "n1", "text": text, "category": "c"}]}),
                ("POST", "/search", {"query": text, "k": 3}),
                ("POST", "/search", {"note_id": "n1", "k": 3}),
                ("GET", "/notes/n1", None),
                # failing requests, each carrying the canary
                ("POST", "/embed", {"notes": [text, 42]}),
                ("POST", "/embed", {"notes": [text], "extra": text}),
                ("POST", "/embed", {"notes": [text * 200]}),
                ("POST", "/embed", {"notes": [text] * 5}),
                ("POST", "/embed", {"notes": [text], "long_note": text}),
                ("POST", "/v1/embeddings", {"model": text, "input": text}),
                ("POST", "/notes", {"notes": [{"id": "n2", "text": text, "time": text}]}),
                ("POST", "/search", {"query": text, "k": text}),
                ("POST", "/search", {"query": text, "filters": {"categories": text}}),
                ("POST", "/classify", {"notes": [text], "bogus": text}),
            ]
            for method, path, body in calls:
                r = c.request(method, path, json=body)
                assert r.status_code < 500, (path, r.text)
                if r.status_code >= 400:
                    bodies.append(r.text)
            broken = c.post(
                "/embed",
                content=b'{"notes": ["' + CANARY.encode() + b'"',
                headers={"content-type": "application/json"},
            )
            bodies.append(broken.text)
            metrics = c.get("/metrics").text
            assert c.delete("/notes/n1").status_code == 200
    finally:
        logs = server.stop()
    assert len(bodies) >= 10
    for body in bodies:
        assert CANARY not in body
    assert CANARY not in metrics
    assert CANARY not in logs, [line for line in logs.splitlines() if CANARY in line][:3]
    assert VECTOR.search(logs) is None  # no run of floats that could be a vector
    entries = list(AuditLog(make_engine(url)).entries())
    assert entries and CANARY not in json.dumps([repr(vars(e)) for e in entries])
