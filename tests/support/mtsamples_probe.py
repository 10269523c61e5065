"""Index MTSamples through the HTTP API and check each probed note finds itself first."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from training.data.mtsamples import load_mtsamples

MTSAMPLES_CSV = Path(__file__).resolve().parents[3] / "shared/data/mtsamples/mtsamples.csv"


@dataclass(frozen=True)
class ProbeResult:
    indexed: int
    index_seconds: float
    probes: int
    self_first: int
    filtered_ok: int


def index_and_probe(url: str, probes: int = 50, batch: int = 32, seed: int = 0) -> ProbeResult:
    notes, _ = load_mtsamples(MTSAMPLES_CSV)
    records = [
        {"id": f"mts-{n.note_id}", "text": n.text, "category": n.category, "source": "mtsamples"}
        for n in notes
    ]
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=300) as client:
        for i in range(0, len(records), batch):
            r = client.post("/notes", json={"notes": records[i : i + batch]})
            r.raise_for_status()
        seconds = time.perf_counter() - started
        sample = random.Random(seed).sample(records, probes)
        self_first = filtered_ok = 0
        for record in sample:
            hits = client.post("/search", json={"query": record["text"], "k": 1}).json()
            self_first += hits["results"][0]["id"] == record["id"]
            filtered = client.post(
                "/search",
                json={
                    "note_id": record["id"],
                    "k": 5,
                    "filters": {"categories": [record["category"]]},
                },
            ).json()["results"]
            filtered_ok += all(h["category"] == record["category"] for h in filtered)
    return ProbeResult(len(records), seconds, probes, self_first, filtered_ok)
