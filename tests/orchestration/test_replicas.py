"""Three `notespace serve` processes on one PostgreSQL behave as one service: a key's quota
holds across them, a note written through one is found by all, and a promotion made through
one reaches every replica at once without dropping a request. Run with each vector store:
FAISS (each replica replays the shared log: a stated bound) and pgvector (at once)."""

from __future__ import annotations

import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.registry.database import make_engine, upgrade
from service.registry.keys import KeyStore
from tests.conftest import registry_with_versions, scratch_postgres_database
from tests.support.subprocess_server import ServiceProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPLICAS = 3
REQUESTS_PER_MINUTE = 10
# The registry poll is the fallback for a lost promotion announcement, and the FAISS store's
# bound for another replica's write: each replica replays the shared vector log when it polls.
POLL_S = 1.0
WRITE_VISIBLE_BOUND_S = POLL_S + 4.0  # the poll, plus the replay on a contended 2-core box
# The announcement (milliseconds), then each replica loads the tiny model, opens its vectors
# and answers its next request. Measured on the shared 2-core box: FAISS 0.1-1.3 s; pgvector
# 0.2-0.5 s, but 1.9 / 8.6 / 8.9 s in a run at load average 8 (a training job beside the
# tests): the replicas open the new version's partition one after another (its DDL holds an
# advisory lock). The bound is for that box, not a target.
PROMOTION_BOUND_S = 15.0


@dataclass(frozen=True)
class Cluster:
    replicas: list[ServiceProcess]
    database_url: str
    admin_key: str
    vector_store: str = "faiss"

    def key(self, name: str, scopes: list[str], **quotas: int) -> str:
        engine = make_engine(self.database_url)
        try:
            return KeyStore(engine).create(name, scopes, "test", **quotas).key
        finally:
            engine.dispose()


@contextmanager
def _database(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "pgvector":
        with request.getfixturevalue("pgvector_server").database() as url:
            yield url
    else:
        with scratch_postgres_database() as url:
            upgrade(url)
            yield url


@pytest.fixture(scope="module", params=["faiss", "pgvector"])
def cluster(
    request: pytest.FixtureRequest, tiny_bundle: Path, tiny_bundle_v2: Path
) -> Iterator[Cluster]:
    """Three replicas on one database, tiny@1 active and tiny@2 registered: FAISS in each
    replica on the machine's PostgreSQL, or pgvector in the database (no index in any)."""
    with _database(request) as url, ExitStack() as stack:
        registry_with_versions(url, tiny_bundle, tiny_bundle_v2)
        admin = Cluster([], url, "").key("ops", ["admin", "embed", "index", "search"])
        replicas = [
            ServiceProcess(
                {
                    "NOTESPACE_DATABASE_URL": url,
                    "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
                    "NOTESPACE_INDEX_DIR": tempfile.mkdtemp(prefix=f"replica-{i}-"),
                    "NOTESPACE_AUTH": "on",
                    "NOTESPACE_REGISTRY_POLL_S": str(POLL_S),
                    "NOTESPACE_INTRA_OP_THREADS": "1",
                    "NOTESPACE_WARMUP": "false",
                    "NOTESPACE_QUERY_LANE_MAX_TOKENS": "0",
                    "NOTESPACE_VECTOR_STORE": request.param,
                },
                log_level="info",
            )
            for i in range(REPLICAS)
        ]
        for replica in replicas:
            stack.callback(replica.stop)
        for replica in replicas:
            replica.wait_ready()
        yield Cluster(replicas, url, admin, request.param)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_quota_holds_across_replicas(cluster: Cluster) -> None:
    limited = cluster.key("limited", ["embed"], requests_per_minute=REQUESTS_PER_MINUTE)

    def call(i: int) -> int:
        replica = cluster.replicas[i % REPLICAS]
        return httpx.post(
            f"{replica.url}/embed", json={"notes": ["x"]}, headers=_auth(limited), timeout=30
        ).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(call, range(REPLICAS * REQUESTS_PER_MINUTE)))
    assert codes.count(200) == REQUESTS_PER_MINUTE, codes
    assert codes.count(429) == (REPLICAS - 1) * REQUESTS_PER_MINUTE, codes


def test_a_promotion_during_traffic_drops_nothing_and_reaches_every_replica(
    cluster: Cluster,
) -> None:
    stop = threading.Event()
    seen: dict[int, list[tuple[int, str]]] = defaultdict(list)  # replica -> (status, model)

    def traffic(i: int) -> None:
        replica = cluster.replicas[i]
        with httpx.Client(base_url=replica.url, headers=_auth(cluster.admin_key)) as c:
            while not stop.is_set():
                r = c.post("/embed", json={"notes": ["fever and cough"]}, timeout=30)
                seen[i].append((r.status_code, r.headers.get("X-Notespace-Model", "")))

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(REPLICAS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        promoted = httpx.post(
            f"{cluster.replicas[0].url}/models/tiny@2/promote",
            headers=_auth(cluster.admin_key),
            timeout=60,
        )
        assert promoted.status_code == 200, promoted.text
        committed = time.monotonic()
        switched_s: dict[int, float] = {}
        while len(switched_s) < REPLICAS and time.monotonic() - committed < 2 * PROMOTION_BOUND_S:
            for i in range(REPLICAS):
                if i not in switched_s and seen[i] and seen[i][-1][1] == "tiny@2":
                    switched_s[i] = time.monotonic() - committed
            time.sleep(0.02)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    for i in range(REPLICAS):
        statuses = {status for status, _ in seen[i]}
        assert statuses == {200}, (i, statuses)
        models = [model for _, model in seen[i]]
        assert models[0] == "tiny@1" and models[-1] == "tiny@2", (i, models)
        # Once a replica answers with the new version it never answers with the old one.
        first_new = models.index("tiny@2")
        assert set(models[first_new:]) == {"tiny@2"}, (i, models)
    print(f"seconds from the promotion's answer to each replica's first tiny@2: {switched_s}")
    assert len(switched_s) == REPLICAS, switched_s
    assert max(switched_s.values()) < PROMOTION_BOUND_S, switched_s
    # The other replicas heard the announcement (they did not wait for their poll).
    for replica in cluster.replicas[1:]:
        assert "a promotion of tiny was announced" in replica.output()


def test_a_note_written_through_one_replica_is_found_by_every_replica(
    cluster: Cluster,
) -> None:
    headers = _auth(cluster.admin_key)
    note = {"id": "replicated-1", "text": "left lower lobe consolidation, started antibiotics"}
    written = httpx.post(
        f"{cluster.replicas[0].url}/notes", json={"notes": [note]}, headers=headers, timeout=30
    )
    assert written.status_code == 200, written.text
    acknowledged = time.monotonic()
    found_s: dict[int, float] = {}
    first_round: set[int] | None = None
    while len(found_s) < REPLICAS and time.monotonic() - acknowledged < 10:
        for i, replica in enumerate(cluster.replicas):
            if i in found_s:
                continue
            r = httpx.post(
                f"{replica.url}/search", json={"query": note["text"], "k": 1}, headers=headers
            )
            assert r.status_code == 200, r.text
            if [hit["id"] for hit in r.json()["results"]] == [note["id"]]:
                found_s[i] = time.monotonic() - acknowledged
        if first_round is None:
            first_round = set(found_s)
        time.sleep(0.05)
    print(f"seconds from the write's answer to each replica finding the note: {found_s}")
    assert len(found_s) == REPLICAS, found_s
    if cluster.vector_store == "pgvector":
        # The vector is written in the note's transaction: every replica finds it at once.
        assert first_round == set(range(REPLICAS)), found_s
    else:
        assert 0 in first_round  # the writer replays its own commit before it answers
        assert max(found_s.values()) < WRITE_VISIBLE_BOUND_S, found_s
