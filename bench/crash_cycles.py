"""Kill -9 the service mid-indexing for many cycles; every acknowledged note must survive once.

    python bench/crash_cycles.py --cycles 200 [--database-url postgresql+psycopg://...]

Builds a tiny encoder bundle (so a cycle takes about a second), runs the same harness as
tests/orchestration/test_crash_recovery.py, and prints what it checked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.registry.database import upgrade
from tests.support.crash_harness import run_cycles
from tests.support.tiny_model import build_tiny_encoder
from training.export import export_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="notespace-crash-"))
    bundle = work / "bundle"
    export_bundle(build_tiny_encoder(work / "base"), bundle, name="tiny", max_tokens=32)
    url = args.database_url or f"sqlite:///{work}/registry.db"
    upgrade(url)
    started = time.perf_counter()
    state = run_cycles(bundle, url, work / "index", args.cycles, seed=args.seed)
    print(
        f"{state.cycles} kill -9 cycles in {time.perf_counter() - started:.0f} s on "
        f"{url.split(':')[0]}: {len(state.acked)} acknowledged notes "
        f"({sum(state.acked_during_cycles)} acknowledged writes while the kill was pending), "
        "all present, each indexed exactly once and found by its own text"
    )


if __name__ == "__main__":
    main()
