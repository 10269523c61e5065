"""Kill -9 the service while a client indexes, restart, and check nothing acknowledged is lost
or duplicated. Used by the CI test (a few cycles) and bench/crash_cycles.py (hundreds)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.subprocess_server import ServiceProcess
from tests.support.tiny_model import synthetic_corpus


@dataclass
class CrashState:
    acked: dict[str, str] = field(default_factory=dict)  # note id → text last acknowledged
    # The batch in flight when the server died may or may not have committed: its texts are
    # allowed as a note's current text too (committed-but-unacknowledged is not a loss).
    unacked: dict[str, str] = field(default_factory=dict)
    cycles: int = 0
    acked_during_cycles: list[int] = field(default_factory=list)


def _writer(url: str, state: CrashState, cycle: int, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    texts = synthetic_corpus(400, seed=seed)
    n = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            batch = []
            for _ in range(3):
                if state.acked and rng.random() < 0.2:  # re-send or change an acked note
                    key = rng.choice(list(state.acked))
                    text = state.acked[key] if rng.random() < 0.5 else rng.choice(texts)
                else:
                    key, text = f"c{cycle}-n{n}", rng.choice(texts) + f" marker {cycle} {n}"
                    n += 1
                batch.append({"id": key, "text": text})
            unique = {b["id"]: b for b in batch}
            try:
                r = client.post("/notes", json={"notes": list(unique.values())})
            except httpx.TransportError:
                # The server died mid-request: this batch was never acknowledged.
                state.unacked.update({k: b["text"] for k, b in unique.items()})
                return
            if r.status_code == 200:
                for b in unique.values():
                    state.acked[b["id"]] = b["text"]
                    state.unacked.pop(b["id"], None)


def verify(url: str, state: CrashState) -> None:
    """Every acknowledged note is stored, indexed once, and found first by its own text."""
    with httpx.Client(base_url=url, timeout=30) as client:
        stats = client.get("/index/stats").json()
        assert stats["index_rows"] == stats["live_notes"] == stats["notes_with_vectors"], stats
        assert stats["live_notes"] >= len(state.acked), stats
    assert lost_notes(url, state) == []


def lost_notes(url: str, state: CrashState) -> list[str]:
    """Acknowledged notes that are not stored, or not found by their own text."""
    lost = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for key, text in state.acked.items():
            if client.get(f"/notes/{key}").status_code != 200:
                lost.append(key)
                continue
            candidates = [text] + ([state.unacked[key]] if key in state.unacked else [])
            if not any(_found_by(client, key, t) for t in candidates):
                lost.append(key)
    return lost


def _found_by(client: httpx.Client, key: str, text: str) -> bool:
    hits = client.post("/search", json={"query": text, "k": 3}).json()["results"]
    ids = [h["id"] for h in hits]
    assert len(ids) == len(set(ids)), "a note appears twice in the index"
    # Identical texts tie at score 1; the note must be among the exact matches.
    exact = [h["id"] for h in hits if h["score"] > 0.999]
    return key in exact or len(exact) == 3


def run_cycles(
    bundle: Path, database_url: str, index_dir: Path, cycles: int, seed: int = 0
) -> CrashState:
    env = {
        "NOTESPACE_BUNDLE_PATH": str(bundle),
        "NOTESPACE_DATABASE_URL": database_url,
        "NOTESPACE_INDEX_DIR": str(index_dir),
        "NOTESPACE_INTRA_OP_THREADS": "1",
        "NOTESPACE_WARMUP": "false",
        # Checkpoint often, so kills land before, during and after snapshot writes.
        "NOTESPACE_INDEX_SNAPSHOT_EVERY_WRITES": "7",
    }
    rng = random.Random(seed)
    state = CrashState()
    for cycle in range(cycles):
        server = ServiceProcess(env)
        try:
            server.wait_ready()
            verify(server.url, state)  # what earlier cycles acknowledged survived this restart
            before = len(state.acked)
            stop = threading.Event()
            writer = threading.Thread(
                target=_writer, args=(server.url, state, cycle, stop, seed + cycle)
            )
            writer.start()
            time.sleep(rng.uniform(0.3, 1.5))
            server.kill()
            stop.set()
            writer.join(15)
            state.acked_during_cycles.append(len(state.acked) - before)
            state.cycles += 1
        finally:
            server.stop()
    with ServiceProcess(env) as server:
        verify(server.url, state)
    return state
