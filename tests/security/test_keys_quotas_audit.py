"""Quotas answer 429 with Retry-After; the audit trail names key, user, action, counts, model
and search results, never text; auth defaults and the CLI."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.registry.audit import AuditLog
from service.registry.database import make_engine
from service.registry.keys import KeyStore
from service.settings import Settings
from tests.conftest import LiveServer, make_settings, migrated_sqlite_url

CANARY = "CANARY-heron-5521"
NOTESPACE = str(Path(sys.executable).with_name("notespace"))


def test_request_quota_answers_429_with_retry_after(tiny_bundle: Path) -> None:
    settings = make_settings(tiny_bundle, auth="on", warmup=False)
    key = (
        KeyStore(make_engine(settings.database_url))
        .create("limited", ["embed"], "t", requests_per_minute=3)
        .key
    )
    with LiveServer(settings) as live, live.client() as c:
        codes = [
            c.post("/embed", json={"notes": ["x"]}, headers={"Authorization": f"Bearer {key}"})
            for _ in range(5)
        ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    assert int(codes[3].headers["Retry-After"]) >= 1
    assert codes[3].json()["error"]["code"] == "quota_exceeded"


def test_token_quota(tiny_bundle: Path) -> None:
    settings = make_settings(tiny_bundle, auth="on", warmup=False)
    key = (
        KeyStore(make_engine(settings.database_url))
        .create("tokens", ["embed"], "t", tokens_per_minute=20)
        .key
    )
    with LiveServer(settings) as live, live.client() as c:
        headers = {"Authorization": f"Bearer {key}"}
        first = c.post("/embed", json={"notes": ["fever " * 30]}, headers=headers)
        second = c.post("/embed", json={"notes": ["x"]}, headers=headers)
    assert first.status_code == 200 and second.status_code == 429


def test_audit_trail(tiny_bundle: Path) -> None:
    settings = make_settings(tiny_bundle, auth="on", warmup=False)
    store = KeyStore(make_engine(settings.database_url))
    key = store.create("epr-feed", ["embed", "index", "search"], "t").key
    headers = {"Authorization": f"Bearer {key}", "X-Acting-User": "dr.jones"}
    with LiveServer(settings) as live, live.client() as c:
        c.post("/embed", json={"notes": [CANARY, "fever"]}, headers=headers)
        c.post("/notes", json={"notes": [{"id": "n1", "text": CANARY}]}, headers=headers)
        hits = c.post("/search", json={"query": CANARY, "k": 1}, headers=headers).json()
        c.post("/embed", json={"notes": [CANARY]})  # no key: audited as a refusal
        assert (
            c.post(
                "/embed", json={"notes": ["x"]}, headers={**headers, "X-Acting-User": "u" * 300}
            ).status_code
            == 400
        )
    entries = list(AuditLog(make_engine(settings.database_url)).entries())
    by_action = {(e.action, e.status): e for e in entries}
    embed = by_action[("embed", 200)]
    assert (embed.key_name, embed.acting_user, embed.item_count, embed.model_ref) == (
        "epr-feed",
        "dr.jones",
        2,
        "tiny@1",
    )
    assert by_action[("index_notes", 200)].note_ids == ["n1"]
    search = by_action[("search", 200)]
    assert search.note_ids == [h["id"] for h in hits["results"]] == ["n1"]
    refused = by_action[("embed", 401)]
    assert refused.key_id is None
    for e in entries:
        assert CANARY not in repr(vars(e))

    out = subprocess.run(
        [NOTESPACE, "audit", "export", "--database-url", settings.database_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["action"] for r in rows} >= {"embed", "index_notes", "search"}
    assert CANARY not in out


def test_auth_defaults() -> None:
    assert not Settings(host="127.0.0.1").auth_enabled
    assert Settings(host="0.0.0.0").auth_enabled
    assert Settings(host="127.0.0.1", auth="on").auth_enabled
    with pytest.raises(ValidationError, match="loopback only"):
        Settings(host="0.0.0.0", auth="off")


def test_keys_cli_create_list_revoke() -> None:
    url = migrated_sqlite_url()
    env = {**os.environ, "NOTESPACE_DATABASE_URL": url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NOTESPACE, *args], env=env, capture_output=True, text=True)

    created = run("keys", "create", "--name", "feed", "--scopes", "embed,search")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ns_") and "shown once" in created.stderr
    key_id = key.split("_")[1]
    listed = run("keys", "list")
    assert key_id in listed.stdout and key not in listed.stdout
    assert set(KeyStore(make_engine(url)).verify(key).scopes.split(",")) == {"embed", "search"}
    assert run("keys", "create", "--name", "x", "--scopes", "root").returncode != 0
    assert run("keys", "revoke", key_id).returncode == 0
    assert "revoked" in run("keys", "list").stdout
    time.sleep(0)
