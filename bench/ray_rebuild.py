"""Re-embedding throughput: the in-process rebuild loop against `index rebuild --ray`, on the
same notes in the same run, with the vectors compared.

    python bench/ray_rebuild.py --bundle bundles/all-MiniLM-L6-v2 --notes 400 --actors 2

Each run gets a scratch database on the PostgreSQL at NOTESPACE_TEST_POSTGRES_URL (default
127.0.0.1:5432/test), the bundle registered as the version to rebuild, and `--notes`
MTSamples transcriptions (a synthetic corpus without shared/). The plain loop runs with
`--threads` inference threads (every core, as `index rebuild` does by default); Ray runs
`--actors` actors of `--threads-per-actor` threads each on a local Ray. Ray's figure is given
twice: the whole command (starting Ray and loading a model copy per actor included) and the
embedding phase alone (from the first range finished to the last), the part that grows with
the number of notes. On one machine Ray cannot beat the plain loop by more than the plain
loop leaves cores idle; the point of Ray is adding machines (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import load_notes
from service.bundle import load_bundle
from service.orchestration.rebuild import RayRebuild, rebuild_index
from service.registry.database import make_engine, upgrade
from service.registry.models import ModelRegistry
from service.registry.notes import NoteInput, NoteStore
from service.settings import Settings
from tests.conftest import scratch_postgres_database
from tests.support.stored_vectors import drop_stored_vectors, stored_vectors


def cpu_flags() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    wanted = sorted(f for f in flags if f.startswith(("avx512", "amx")) or "vnni" in f)
    return f"{model}, {os.cpu_count()} cores visible; {' '.join(wanted) or 'no avx512/amx/vnni'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--notes", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2, help="plain loop inference threads")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--threads-per-actor", type=int, default=1)
    parser.add_argument("--range-notes", type=int, default=32)
    parser.add_argument("--batch-notes", type=int, default=16)
    args = parser.parse_args()

    texts = load_notes(limit=args.notes)
    bundle = load_bundle(args.bundle)
    print(f"CPU: {cpu_flags()}")
    print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print(f"{len(texts)} notes, {bundle.manifest.ref}, batches of {args.batch_notes} notes")
    with scratch_postgres_database() as url:
        upgrade(url)
        registry = ModelRegistry(make_engine(url))
        row = registry.register(bundle, "bench")
        registry.promote(row.ref)
        # Notes stored with placeholder vectors under the version itself, then dropped: the
        # rebuild under measurement starts from notes with no vector.
        notes = [NoteInput(key=f"n{i}", text=t) for i, t in enumerate(texts)]
        store = NoteStore(make_engine(url), store_text=True)
        placeholder = np.ones(bundle.manifest.embedding_dim, dtype=np.float32)
        store.upsert(notes, {n.key: placeholder for n in notes}, row.id)
        drop_stored_vectors(url, row.id)
        index_dir = Path(tempfile.mkdtemp(prefix="bench-ray-rebuild-"))
        settings = Settings(
            database_url=url,
            bundle_path=args.bundle,
            index_dir=index_dir,
            intra_op_threads=args.threads,
        )

        start = time.perf_counter()
        plain = rebuild_index(settings, row, args.batch_notes)
        plain_s = time.perf_counter() - start
        expected = stored_vectors(url, row.id)
        drop_stored_vectors(url, row.id)

        finished: list[tuple[float, int]] = []  # (when, notes done so far) per range

        def progress(done: int, _total: int) -> None:
            finished.append((time.perf_counter(), done))

        start = time.perf_counter()
        on_ray = rebuild_index(
            settings,
            row,
            args.batch_notes,
            progress,
            ray=RayRebuild(
                address="auto",
                actors=args.actors,
                cpus_per_actor=args.threads_per_actor,
                range_notes=args.range_notes,
                checkpoint=index_dir / "bench-ranges.json",
            ),
        )
        ray_s = time.perf_counter() - start
        got = stored_vectors(url, row.id)

    ids = sorted(expected)
    a = np.stack([expected[i] for i in ids])
    b = np.stack([got[i] for i in ids])
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    # From the first range's answer to the last: the notes of every range but the first.
    phase_s = finished[-1][0] - finished[0][0]
    phase_notes = finished[-1][1] - finished[0][1]
    print(f"{'run':<44} {'notes':>6} {'seconds':>8} {'notes/s':>8}")
    print(
        f"{f'plain loop, {args.threads} threads':<44} {plain.embedded:>6} "
        f"{plain_s:>8.1f} {plain.embedded / plain_s:>8.1f}"
    )
    label = f"ray, {args.actors} actors x {args.threads_per_actor} thread, whole command"
    print(f"{label:<44} {on_ray.embedded:>6} {ray_s:>8.1f} {on_ray.embedded / ray_s:>8.1f}")
    label = "ray, embedding phase (first to last range)"
    print(f"{label:<44} {phase_notes:>6.0f} {phase_s:>8.1f} {phase_notes / phase_s:>8.1f}")
    print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print(
        f"vectors: {len(ids)} notes compared, cosine min {cosine.min():.7f} "
        f"mean {cosine.mean():.7f}"
    )


if __name__ == "__main__":
    main()
