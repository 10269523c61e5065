"""`index rebuild --ray`: the same vectors as the in-process loop, on a local Ray with two
ONNX Runtime actors, going on from the ranges an earlier run recorded and through the loss of
a worker."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.orchestration.rebuild import (
    RayRebuild,
    embed_and_store,
    offline_runtime,
    rebuild_index,
)
from service.registry.database import make_engine, upgrade
from service.registry.notes import NoteInput, NoteStore
from service.settings import Settings
from tests.conftest import make_settings, registry_with_versions, scratch_postgres_database
from tests.support.stored_vectors import drop_stored_vectors, stored_vectors
from tests.support.tiny_model import synthetic_corpus

pytest.importorskip("ray", reason="Ray is the optional [ray] extra: pip install 'notespace[ray]'")
from service.orchestration.ray_rebuild import (
    IdRange,
    RangeCheckpoint,
    plan_ranges,
)

NOTES = 600
RANGE_NOTES = 20  # 30 ranges: enough work in flight to lose a worker half-way


def test_ranges_are_fixed_by_row_id_whatever_the_bounds() -> None:
    assert plan_ranges((1, 45), 20) == [IdRange(1, 20), IdRange(21, 40), IdRange(41, 60)]
    assert plan_ranges((25, 40), 20) == [IdRange(21, 40)]
    assert plan_ranges((40, 41), 20) == [IdRange(21, 40), IdRange(41, 60)]


def test_a_checkpoint_is_kept_per_model_and_range_size(tmp_path: Path) -> None:
    path = tmp_path / "ranges.json"
    RangeCheckpoint(path, "tiny@2", 20).record(IdRange(21, 40))
    assert RangeCheckpoint(path, "tiny@2", 20).done == {IdRange(21, 40)}
    assert RangeCheckpoint(path, "tiny@2", 50).done == frozenset()  # other ranges: start over
    assert RangeCheckpoint(path, "tiny@3", 20).done == frozenset()
    assert not path.with_suffix(".partial").exists()


@pytest.fixture()
def database(tiny_bundle: Path, tiny_bundle_v2: Path) -> Iterator[str]:
    """tiny@1 active with NOTES notes, tiny@2 registered with no vectors yet."""
    with scratch_postgres_database() as url:
        upgrade(url)
        v1 = registry_with_versions(url, tiny_bundle, tiny_bundle_v2).get("tiny@1")
        engine = make_engine(url)
        notes = [NoteInput(key=f"n{i}", text=t) for i, t in enumerate(synthetic_corpus(NOTES))]
        rng = np.random.default_rng(0)
        # tiny@1's vectors only have to exist; the rebuild under test is tiny@2's.
        vectors = {n.key: rng.normal(size=v1.embedding_dim).astype(np.float32) for n in notes}
        NoteStore(engine, store_text=True).upsert(notes, vectors, model_version_id=v1.id)
        engine.dispose()
        yield url


def _ray_workers() -> list[int]:
    """PIDs of this machine's Ray Data actors embedding ranges (by their process title)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"RangeEmbedder" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _kill_a_worker_once_work_is_recorded(checkpoint: Path, killed: list[int]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # Past the range recorded before this run: the pool is at work.
        if checkpoint.exists() and len(json.loads(checkpoint.read_text())["done"]) >= 3:
            workers = _ray_workers()
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
                return
        time.sleep(0.01)


def test_ray_rebuild_gives_the_plain_loops_vectors_resumes_and_survives_a_lost_worker(
    database: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    from service.registry.models import ModelRegistry

    settings: Settings = make_settings(tiny_bundle, database_url=database)
    registry = ModelRegistry(make_engine(database))
    v2 = registry.get("tiny@2")

    plain = rebuild_index(settings, v2, 64)
    assert plain.embedded == NOTES
    expected = stored_vectors(database, v2.id)
    drop_stored_vectors(database, v2.id)

    # An earlier Ray run finished the first range, recorded it, and stopped.
    checkpoint = tmp_path / "ranges.json"
    store = NoteStore(make_engine(database), store_text=True)
    first = plan_ranges((1, NOTES), RANGE_NOTES)[0]
    runtime = offline_runtime(settings, v2)
    for batch in store.vectors.missing(v2.id, 64, id_range=(first.first, first.last)):
        embed_and_store(store, runtime, v2.id, batch, settings.max_batch_tokens)
    RangeCheckpoint(checkpoint, v2.ref, RANGE_NOTES).record(first)

    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_a_worker_once_work_is_recorded, args=(checkpoint, killed), daemon=True
    )
    killer.start()
    on_ray = rebuild_index(
        settings,
        v2,
        16,
        ray=RayRebuild(address="auto", actors=2, range_notes=RANGE_NOTES, checkpoint=checkpoint),
    )
    killer.join(5)

    assert killed, "no Ray worker was found to kill"
    assert on_ray.embedded == NOTES - RANGE_NOTES  # the recorded range was not done again
    assert on_ray.live_notes == on_ray.index_rows == NOTES
    assert not checkpoint.exists()  # a finished run leaves no record to resume from
    got = stored_vectors(database, v2.id)
    assert got.keys() == expected.keys()
    ids = sorted(got)
    a = np.stack([got[i] for i in ids])
    b = np.stack([expected[i] for i in ids])
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 1 - 1e-6  # float32 batches of different make-up
