"""The issue-14 hardening battery, with the figures for docs/reliability.md.

    python bench/hardening.py --cases 2000 --kill-cycles 20 --outage-cycles 10 --disk-cycles 5

On SQLite and on PostgreSQL (a scratch database on the test server for the battery and the
kill -9 cycles; a private server, stopped and started, for the outages), against the service
in its own process, auth on, logging at debug:

* battery: hostile input at every position (tests/support/hostile_inputs.py), careless-integration
  cases (mixed metadata types, oversized metadata, edge times, credentials that disagree,
  keys in URLs, formulas as acting users, requests past the size limits), and legitimate and
  failing requests carrying a canary in note text, queries and metadata; counts requests,
  statuses, 5xx, dropped connections, and canaries in the logs and the audit table;
* kill -9 cycles while a client indexes (tests/support/crash_harness.py): acknowledged notes lost;
* PostgreSQL outages mid-load (server stopped as in a crash, then started): statuses during
  the outage, refusal latency, acknowledged notes lost;
* SQLite on a full disk (a small tmpfs, root only): statuses, and notes lost after space returns.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.registry.audit import AuditLog
from service.registry.database import make_engine, upgrade
from service.registry.keys import KeyScope, KeyStore
from tests.conftest import scratch_postgres_database
from tests.support.crash_harness import CrashState, lost_notes, run_cycles
from tests.support.failing_storage import ThrowawayPostgres, index_through_outage, small_filesystem
from tests.support.hostile_inputs import Case, seeded_cases
from tests.support.subprocess_server import ServiceProcess
from tests.support.tiny_model import build_tiny_encoder, synthetic_corpus
from training.export import export_bundle

CANARY = "CANARYhx14q"


@dataclass
class BatteryReport:
    statuses: Counter[int] = field(default_factory=Counter)
    five_xx: list[str] = field(default_factory=list)
    dropped_connections: int = 0
    canary_log_lines: int = 0
    canary_in_audit: bool = False
    secret_in_logs: bool = False
    healthy_after: bool = False

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def careless_cases(canary: str) -> list[Case]:
    """What a careless integration job sends: valid JSON, wrong in ways the schema allows."""

    def post(where: str, path: str, body: object) -> Case:
        return Case("careless", where, "POST", path, json.dumps(body).encode())

    cases = []
    types = {"s": "abc", "i": 5, "f": 5.5, "b": True, "n": None, "z": "0"}
    for name, value in types.items():
        note = {"id": f"mix-{name}", "text": f"{canary} note", "metadata": {"mrn": value}}
        cases.append(post("mixed metadata types: index", "/notes", {"notes": [note]}))
    for value in [*types.values(), 0, -1, 2**62, 1e300, "", "abc"]:
        body = {"query": f"{canary} chest", "filters": {"metadata": {"mrn": value}}}
        cases.append(post("mixed metadata types: filter", "/search", body))
    for metadata in (
        {"v": canary * 500_000},
        {f"k{i}": i for i in range(100)},
        {"k" * 500: canary},
        {f"k{i}": canary * 20 for i in range(32)},
    ):
        note = {"id": "big-meta", "text": canary, "metadata": metadata}
        cases.append(post("oversized metadata", "/notes", {"notes": [note]}))
    for when in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2026-13-01T00:00Z"):
        note = {"id": "edge-time", "text": canary, "time": when}
        cases.append(post("edge times", "/notes", {"notes": [note]}))
        cases.append(
            post("edge times: filter", "/search", {"query": canary, "filters": {"time_to": when}})
        )
    cases.append(post("10,000 notes", "/embed", {"notes": [canary] * 10_000}))
    cases.append(
        post("past the token limit", "/embed", {"notes": [f"{canary} word " * 30_000] * 3})
    )
    cases.append(
        post(
            "one long note",
            "/embed",
            {"notes": [f"{canary} word " * 30_000], "long_note": "reject"},
        )
    )
    return cases


def run_battery(
    bundle: Path, database_url: str, cases: int, seed: int, work: Path
) -> BatteryReport:
    keys = KeyStore(make_engine(database_url))
    key = keys.create("battery", [s.value for s in KeyScope], "bench").key
    other = keys.create("other", ["embed"], "bench").key
    env = {
        "NOTESPACE_BUNDLE_PATH": str(bundle),
        "NOTESPACE_DATABASE_URL": database_url,
        "NOTESPACE_INDEX_DIR": str(work / "index"),
        "NOTESPACE_AUTH": "on",
        "NOTESPACE_WARMUP": "false",
    }
    report = BatteryReport()
    server = ServiceProcess(env, log_level="debug").wait_ready()
    auth = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            stream = None

            def send(case: Case, headers: dict[str, str] | None = None) -> None:
                nonlocal stream
                try:
                    r = case.send(c, {**auth, **(headers or {})})
                except httpx.TransportError:
                    report.dropped_connections += 1
                    stream = None
                    return
                assert isinstance(r, httpx.Response)
                report.statuses[r.status_code] += 1
                if r.status_code >= 500:
                    report.five_xx.append(f"{r.status_code} {case.where}")
                current = r.extensions.get("network_stream")
                if stream is not None and current is not stream:
                    report.dropped_connections += 1
                stream = current

            texts = synthetic_corpus(40, seed=seed)
            legit = [
                Case(
                    "legit",
                    "index",
                    "POST",
                    "/notes",
                    json.dumps(
                        {
                            "notes": [
                                {
                                    "id": f"ok{i}",
                                    "text": f"{canary_text(t)}",
                                    "category": "c",
                                    "metadata": {"ward": f"{CANARY} w{i % 3}", "bed": i},
                                }
                                for i, t in enumerate(texts)
                            ]
                        }
                    ).encode(),
                ),
                Case(
                    "legit",
                    "search",
                    "POST",
                    "/search",
                    json.dumps(
                        {
                            "query": canary_text(texts[0]),
                            "k": 5,
                            "filters": {"metadata": {"ward": f"{CANARY} w1"}},
                        }
                    ).encode(),
                ),
                Case(
                    "legit",
                    "embed",
                    "POST",
                    "/embed",
                    json.dumps({"notes": [canary_text(t) for t in texts[:8]]}).encode(),
                ),
                Case(
                    "legit",
                    "embed",
                    "POST",
                    "/v1/embeddings",
                    json.dumps({"model": "tiny", "input": canary_text(texts[1])}).encode(),
                ),
            ]
            for case in legit + careless_cases(CANARY):
                send(case)
            for case in seeded_cases(random.Random(seed), cases, CANARY):
                send(case)
            # Credentials and secrets in URLs (refusals are 4xx; the key must not be logged).
            for headers in (
                {"X-API-Key": other},
                {"Authorization": "Basic abc", "X-API-Key": key},
                {"Authorization": "Bearer", "X-API-Key": key},
                {"X-Acting-User": '=HYPERLINK("http://x","y")'},
                {"X-Acting-User": "u" * 300},
            ):
                send(Case("access", "credentials", "GET", "/info", None), headers)
            send(Case("access", "key in URL", "GET", f"/index/stats?api_key={key}", None))
            with httpx.Client(base_url=server.url, timeout=30) as anonymous:
                for path in ("/openapi.json", "/docs", f"/info?api_key={key}"):
                    r = anonymous.get(path)
                    report.statuses[r.status_code] += 1
            report.healthy_after = (
                c.get("/health").status_code == 200
                and c.get("/ready").status_code == 200
                and c.post("/embed", json={"notes": ["after"]}, headers=auth).status_code == 200
            )
    finally:
        logs = server.stop()
    report.canary_log_lines = sum(1 for line in logs.splitlines() if CANARY in line)
    report.secret_in_logs = key.split("_", 2)[2] in logs
    audit = json.dumps([repr(vars(e)) for e in AuditLog(make_engine(database_url)).entries()])
    report.canary_in_audit = CANARY in audit
    return report


def canary_text(text: str) -> str:
    return f"{text} {CANARY}"


@dataclass
class OutageReport:
    cycles: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    refusal_s: list[float] = field(default_factory=list)
    acked: int = 0
    lost: int = 0


def run_outages(bundle: Path, cycles: int, seed: int, work: Path) -> OutageReport:
    rng = random.Random(seed)
    report = OutageReport()
    with ThrowawayPostgres() as pg:
        upgrade(pg.url)
        env = {
            "NOTESPACE_BUNDLE_PATH": str(bundle),
            "NOTESPACE_DATABASE_URL": pg.url,
            "NOTESPACE_INDEX_DIR": str(work / "outage-index"),
            "NOTESPACE_WARMUP": "false",
            "NOTESPACE_DATABASE_CONNECT_TIMEOUT_S": "2",
            "NOTESPACE_REGISTRY_POLL_S": "0.5",
        }
        state = CrashState()
        with ServiceProcess(env) as server:
            for _ in range(cycles):
                outcomes = index_through_outage(
                    server.url, pg, state, outage_s=rng.uniform(1.0, 4.0)
                )
                report.cycles += 1
                for status, seconds, _ in outcomes:
                    report.statuses[status] += 1
                    if status == 503:
                        report.refusal_s.append(seconds)
            report.acked = len(state.acked)
            report.lost = len(lost_notes(server.url, state))
    return report


def run_disk_full(bundle: Path, cycles: int) -> OutageReport:
    report = OutageReport()
    with small_filesystem(4096) as fs:
        url = f"sqlite:///{fs.path}/registry.db"
        upgrade(url)
        env = {
            "NOTESPACE_BUNDLE_PATH": str(bundle),
            "NOTESPACE_DATABASE_URL": url,
            "NOTESPACE_INDEX_DIR": tempfile.mkdtemp(prefix="notespace-disk-index-"),
            "NOTESPACE_WARMUP": "false",
        }
        state = CrashState()
        texts = synthetic_corpus(50, seed=3)
        with ServiceProcess(env) as server, httpx.Client(base_url=server.url, timeout=60) as c:
            n = 0
            for cycle in range(cycles):
                for phase in ("space", "full", "space again"):
                    if phase == "full":
                        fs.fill()
                    elif phase == "space again":
                        fs.free()
                    for _ in range(5):
                        batch = [
                            {"id": f"d{n + j}", "text": f"{texts[(n + j) % 50]} marker {n + j}"}
                            for j in range(3)
                        ]
                        n += 3
                        started = time.perf_counter()
                        r = c.post("/notes", json={"notes": batch})
                        report.statuses[r.status_code] += 1
                        if r.status_code == 200:
                            state.acked.update({b["id"]: b["text"] for b in batch})
                        else:
                            report.refusal_s.append(time.perf_counter() - started)
                            state.unacked.update({b["id"]: b["text"] for b in batch})
                report.cycles = cycle + 1
            report.acked = len(state.acked)
            report.lost = len(lost_notes(server.url, state))
    return report


@contextmanager
def databases() -> Iterator[list[tuple[str, str]]]:
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="notespace-hardening-db-"))
        sqlite = f"sqlite:///{work}/registry.db"
        upgrade(sqlite)
        postgres = stack.enter_context(scratch_postgres_database())
        upgrade(postgres)
        yield [("SQLite", sqlite), ("PostgreSQL", postgres)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="hostile cases per database")
    parser.add_argument("--kill-cycles", type=int, default=20, help="per database")
    parser.add_argument("--outage-cycles", type=int, default=10)
    parser.add_argument("--disk-cycles", type=int, default=5)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="notespace-hardening-"))
    bundle = work / "bundle"
    export_bundle(build_tiny_encoder(work / "base"), bundle, name="tiny", max_tokens=32)
    started = time.perf_counter()
    print(
        "| database | requests | 5xx | dropped connections | canary lines in logs | "
        "canary in audit | key in logs | healthy after |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|")
    with databases() as dbs:
        for name, url in dbs:
            r = run_battery(bundle, url, args.cases, args.seed, work / name)
            print(
                f"| {name} | {r.requests} | {len(r.five_xx)} | {r.dropped_connections} | "
                f"{r.canary_log_lines} | {r.canary_in_audit} | {r.secret_in_logs} | "
                f"{r.healthy_after} |"
            )
            print(
                f"<!-- {name} statuses: {dict(sorted(r.statuses.items()))}; "
                f"5xx: {r.five_xx[:5]} -->"
            )
        print()
        print("| database | kill -9 cycles | acknowledged notes | lost |")
        print("|---|---:|---:|---:|")
        for name, url in dbs:
            index_dir = work / f"{name}-crash-index"
            try:
                state = run_cycles(bundle, url, index_dir, args.kill_cycles, seed=args.seed)
                print(f"| {name} | {state.cycles} | {len(state.acked)} | 0 |")
            except AssertionError as exc:  # verify() names what was lost
                print(f"| {name} | FAILED | - | {str(exc)[:80]} |")
    print()
    outage = run_outages(bundle, args.outage_cycles, args.seed, work)
    print(_storage_row("PostgreSQL outage (stop -m immediate, start)", outage))
    if shutil.which("mount"):
        try:
            disk = run_disk_full(bundle, args.disk_cycles)
            print(_storage_row("SQLite disk full, then space freed", disk))
        except BaseException as exc:
            print(f"SQLite disk-full cycles not run: {type(exc).__name__}: {exc}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def _storage_row(label: str, r: OutageReport) -> str:
    refusals = sorted(r.refusal_s)
    p50 = statistics.median(refusals) * 1000 if refusals else 0.0
    worst = refusals[-1] * 1000 if refusals else 0.0
    return (
        f"{label}: {r.cycles} cycles, statuses {dict(sorted(r.statuses.items()))}, "
        f"refusal latency p50 {p50:.0f} ms / max {worst:.0f} ms, "
        f"{r.acked} acknowledged notes, {r.lost} lost"
    )


if __name__ == "__main__":
    main()
