"""Index every distinct MTSamples note through the HTTP API with a real bundle, then search.

    python bench/mtsamples_search.py --bundle bundles/all-MiniLM-L6-v2

Prints notes indexed, indexing throughput, and how many probed notes find themselves first
(free-text query with the note's own text) and keep their category under a filter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ServiceProcess, fresh_service_env

from tests.support.mtsamples_probe import index_and_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    env = fresh_service_env("mts", NOTESPACE_MAX_NOTES_PER_REQUEST="64")
    with ServiceProcess(args.bundle, **env) as svc:
        r = index_and_probe(svc.url, probes=args.probes)
        rss = svc.rss_mb()
    print(
        f"indexed {r.indexed} notes in {r.index_seconds:.0f} s "
        f"({r.indexed / r.index_seconds:.1f} notes/s over HTTP); "
        f"own text ranks the note first for {r.self_first}/{r.probes} probes; "
        f"category filter respected for {r.filtered_ok}/{r.probes}; service RSS {rss:.0f} MB"
    )


if __name__ == "__main__":
    main()
