"""Every endpoint × {no key, malformed, unknown, revoked, key without the scope, key with it}."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.registry.database import make_engine
from service.registry.keys import KeyScope, KeyStore
from tests.conftest import LiveServer, make_settings

# (method, path template, concrete path, body, scope; None = any valid key)
ENDPOINTS: list[tuple[str, str, str, object, KeyScope | None]] = [
    ("POST", "/embed", "/embed", {"notes": ["chest pain"]}, KeyScope.EMBED),
    ("POST", "/v1/embeddings", "/v1/embeddings", {"model": "tiny", "input": "x"}, KeyScope.EMBED),
    ("GET", "/v1/models", "/v1/models", None, KeyScope.EMBED),
    ("GET", "/v1/models/{model}", "/v1/models/tiny", None, KeyScope.EMBED),
    ("POST", "/notes", "/notes", {"notes": [{"id": "a", "text": "fever"}]}, KeyScope.INDEX),
    ("DELETE", "/notes/{note_id}", "/notes/zz", None, KeyScope.INDEX),
    ("GET", "/notes/{note_id}", "/notes/a", None, KeyScope.SEARCH),
    ("POST", "/search", "/search", {"query": "fever", "k": 1}, KeyScope.SEARCH),
    ("GET", "/index/stats", "/index/stats", None, KeyScope.SEARCH),
    ("GET", "/models", "/models", None, KeyScope.ADMIN),
    ("GET", "/models/{ref}", "/models/tiny@1", None, KeyScope.ADMIN),
    ("POST", "/models/{ref}/promote", "/models/tiny@1/promote", None, KeyScope.ADMIN),
    ("GET", "/metrics", "/metrics", None, KeyScope.ADMIN),
    ("GET", "/info", "/info", None, None),
    ("POST", "/classify", "/classify", {"notes": ["chest pain"]}, KeyScope.CLASSIFY),
]
OPEN = {("GET", "/health"), ("GET", "/ready")}


@dataclass
class Keys:
    full: str
    by_scope: dict[KeyScope, str]
    revoked: str
    unknown: str


@pytest.fixture(scope="module")
def secured(tiny_bundle: Path) -> Iterator[tuple[LiveServer, Keys]]:
    settings = make_settings(tiny_bundle, auth="on", warmup=False)
    store = KeyStore(make_engine(settings.database_url))
    keys = Keys(
        full=store.create("all", [s.value for s in KeyScope], "test").key,
        by_scope={s: store.create(s.value, [s.value], "test").key for s in KeyScope},
        revoked=store.create("gone", ["embed", "admin"], "test").key,
        unknown="ns_abcdefghij_" + "A" * 43,
    )
    store.revoke(keys.revoked.split("_")[1])
    with LiveServer(settings) as live:
        yield live, keys


def call(c: httpx.Client, method: str, path: str, body: object, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return c.request(method, path, json=body, headers=headers)


def served_routes(live: LiveServer, key: str) -> set[tuple[str, str]]:
    with live.client() as c:
        r = c.get("/openapi.json", headers={"Authorization": f"Bearer {key}"})
        paths = r.json()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_matrix_covers_every_route(secured: tuple[LiveServer, Keys]) -> None:
    live, keys = secured
    covered = {(m, p) for m, p, *_ in ENDPOINTS} | OPEN
    assert served_routes(live, keys.full) - covered == set(), "add new endpoints to the matrix"


@pytest.mark.parametrize(("method", "template", "path", "body", "scope"), ENDPOINTS)
def test_auth_matrix(
    secured: tuple[LiveServer, Keys],
    method: str,
    template: str,
    path: str,
    body: object,
    scope: KeyScope | None,
) -> None:
    live, keys = secured
    if (method, template) not in served_routes(live, keys.full):
        pytest.skip(f"{method} {template} is not served by this build")
    with live.client() as c:
        for key in (None, "not-a-key", keys.unknown, keys.revoked):
            r = call(c, method, path, body, key)
            assert r.status_code == 401, (key, r.text)
            assert r.json()["error"]["type"] == "authentication_error"
        r = c.request(method, path, json=body, headers={"Authorization": "Basic abc"})
        assert r.status_code == 401
        if scope is not None:
            other = next(s for s in KeyScope if s != scope)
            r = call(c, method, path, body, keys.by_scope[other])
            assert r.status_code == 403, r.text
            assert scope.value in r.json()["error"]["message"]
            allowed = keys.by_scope[scope]
        else:
            allowed = keys.by_scope[KeyScope.EMBED]  # any valid key
        r = call(c, method, path, body, allowed)
        assert r.status_code not in (401, 403), r.text
        assert r.status_code < 500, r.text
        r = c.request(method, path, json=body, headers={"X-API-Key": keys.full})
        assert r.status_code not in (401, 403), r.text


def test_open_endpoints_need_no_key(secured: tuple[LiveServer, Keys]) -> None:
    live, _ = secured
    with live.client() as c:
        assert c.get("/health").status_code == 200
        assert c.get("/ready").json() == {"status": "ready"}


def test_revocation_takes_effect_immediately(secured: tuple[LiveServer, Keys]) -> None:
    live, _ = secured
    store = KeyStore(make_engine(live.settings.database_url))
    created = store.create("short-lived", ["embed"], "test")
    with live.client() as c:
        assert call(c, "POST", "/embed", {"notes": ["x"]}, created.key).status_code == 200
        store.revoke(created.row.key_id)
        assert call(c, "POST", "/embed", {"notes": ["x"]}, created.key).status_code == 401


def test_categories_on_embed_need_the_classify_scope(secured: tuple[LiveServer, Keys]) -> None:
    live, keys = secured
    with live.client() as c:
        r = call(
            c, "POST", "/embed", {"notes": ["x"], "categories": True}, keys.by_scope[KeyScope.EMBED]
        )
        assert r.status_code == 403 and "classify" in r.json()["error"]["message"]
