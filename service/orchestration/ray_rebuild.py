"""`notespace index rebuild --ray`: re-embed a model version's notes on a Ray cluster.

The notes table is cut into fixed ranges of row ids (range k holds ids k*R+1 .. (k+1)*R, so
the ranges are the same on every run whatever was added since). Ray Data hands the ranges to
a pool of actors, each holding one ONNX Runtime copy of the model and its own database
connection; an actor reads its range's notes that lack a current vector, embeds them and
writes them exactly as the in-process loop does (rebuild.embed_and_store: idempotent by note
and version, a note changed meanwhile keeps its newer vector). The driver records each range
an actor has finished in a small JSON file, so a run that stops (a node lost, Ctrl-C) starts
again where it stopped; a range in flight when it stopped is simply done again. A run that
finishes deletes the file. Only row-id ranges and counts travel through Ray; note text goes
from the database to the actor that embeds it, and vectors from that actor to the database.

Ray is the optional `[ray]` extra: only this module imports it, and only `notespace index
rebuild --ray` imports this module (tests/test_dependency_direction.py).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import ray
import ray.data
from ray.exceptions import RayError
from ray.util.annotations import RayDeprecationWarning

from service.orchestration.indexes import index_ref
from service.orchestration.rebuild import (
    RayRebuild,
    RebuildStopped,
    embed_and_store,
    offline_runtime,
)
from service.orchestration.vector_stores import open_vector_store
from service.registry.database import make_engine
from service.registry.models import ModelRegistry
from service.registry.notes import NoteStore
from service.registry.tables import ModelVersion
from service.settings import Settings

log = logging.getLogger(__name__)

# A dead actor is restarted and its range retried this many times before the run stops
# (Ray Data's default is forever, which hides a node that can never do the work).
ACTOR_RESTARTS = 3


@dataclass(frozen=True, order=True)
class IdRange:
    first: int
    last: int


def plan_ranges(bounds: tuple[int, int], range_notes: int) -> list[IdRange]:
    """The fixed ranges covering row ids `bounds[0]..bounds[1]`."""
    low, high = bounds
    first_k, last_k = (low - 1) // range_notes, (high - 1) // range_notes
    return [IdRange(k * range_notes + 1, (k + 1) * range_notes) for k in range(first_k, last_k + 1)]


class RangeCheckpoint:
    """The ranges finished for one model version (and one range size), in a JSON file that is
    replaced atomically on every update, so a crash leaves the previous complete record."""

    def __init__(self, path: Path, model: str, range_notes: int) -> None:
        self.path = path
        self._identity = {"model": model, "range_notes": range_notes}
        self._done: set[IdRange] = set()
        if path.exists():
            recorded = json.loads(path.read_text())
            if {k: recorded.get(k) for k in self._identity} == self._identity:
                self._done = {IdRange(first, last) for first, last in recorded["done"]}

    @property
    def done(self) -> frozenset[IdRange]:
        return frozenset(self._done)

    def record(self, finished: IdRange) -> None:
        self._done.add(finished)
        record = {**self._identity, "done": [[r.first, r.last] for r in sorted(self._done)]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(record))
        os.replace(partial, self.path)


def default_checkpoint(settings: Settings, row: ModelVersion) -> Path:
    return settings.index_dir / f"rebuild-{index_ref(row.ref, row.id)}.ranges.json"


def connect(address: str) -> bool:
    """Join the Ray cluster at `address` ("auto": the cluster this machine belongs to, or a
    new local one when there is none). Returns whether this call started Ray (and so owns
    its shutdown)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=None if address == "auto" else address,
            log_to_driver=False,  # the CLI reports progress itself; workers' logs stay on nodes
            logging_level=logging.WARNING,
            include_dashboard=False,
        )
    except (ConnectionError, RuntimeError, RayError) as exc:
        raise RebuildStopped(
            f"cannot join the Ray cluster at {address} ({type(exc).__name__}); nothing was "
            "embedded: check `ray status` on the head, or run without --ray"
        ) from None
    return True


class RangeEmbedder:
    """A Ray Data actor: one model copy and one database pool, embedding whole ranges."""

    def __init__(
        self, settings_values: dict[str, Any], model_ref: str, threads: int, batch_notes: int
    ) -> None:
        self._settings = Settings(**settings_values)
        self._engine = make_engine(self._settings.database_url)
        self._store, _ = open_vector_store(self._settings, self._engine)
        row = ModelRegistry(self._engine).get(model_ref)
        self._version_id = row.id
        self._runtime = offline_runtime(self._settings, row, threads=threads)
        self._batch_notes = batch_notes

    def __call__(self, batch: dict[str, npt.NDArray[np.int64]]) -> dict[str, npt.NDArray[np.int64]]:
        seen, without_text = [], []
        for first, last in zip(batch["first"], batch["last"], strict=True):
            notes = no_text = 0
            for chunk in self._store.vectors.missing(
                self._version_id, self._batch_notes, id_range=(int(first), int(last))
            ):
                no_text += embed_and_store(
                    self._store,
                    self._runtime,
                    self._version_id,
                    chunk,
                    self._settings.max_batch_tokens,
                )
                notes += len(chunk)
            seen.append(notes)
            without_text.append(no_text)
        return {
            "first": batch["first"],
            "last": batch["last"],
            "seen": np.asarray(seen, dtype=np.int64),
            "without_text": np.asarray(without_text, dtype=np.int64),
        }


def embed_on_ray(
    settings: Settings,
    row: ModelVersion,
    store: NoteStore,
    batch_notes: int,
    options: RayRebuild,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, int]:
    """Embed every live note lacking a current vector under `row` on Ray; returns (embedded,
    without text). Ranges recorded as finished by an earlier run are skipped."""
    bounds = store.vectors.note_id_bounds()
    if bounds is None:
        return 0, 0
    live, covered = store.vectors.counts(row.id)
    checkpoint = RangeCheckpoint(
        options.checkpoint or default_checkpoint(settings, row), row.ref, options.range_notes
    )
    ranges = plan_ranges(bounds, options.range_notes)
    todo = [r for r in ranges if r not in checkpoint.done]
    log.info(
        "%s: %d ranges of %d row ids, %d recorded as done in %s",
        row.ref,
        len(ranges),
        options.range_notes,
        len(ranges) - len(todo),
        checkpoint.path,
    )
    if not todo:
        return 0, 0
    started = connect(options.address)
    embedded = without_text = seen = 0
    try:
        for result in _run(settings, row, batch_notes, options, todo):
            checkpoint.record(IdRange(int(result["first"]), int(result["last"])))
            seen += int(result["seen"])
            without_text += int(result["without_text"])
            embedded = seen - without_text
            if progress is not None:
                progress(seen, live - covered)
    except RayError as exc:
        raise RebuildStopped(
            f"the Ray rebuild of {row.ref} stopped ({type(exc).__name__}); "
            f"{len(checkpoint.done)} of {len(ranges)} ranges are done and recorded in "
            f"{checkpoint.path}: run the same command again to go on from there"
        ) from None
    finally:
        if started:
            ray.shutdown()
    # Every range is done: the record has served its purpose. The next rebuild starts afresh
    # (notes added or changed since land in ranges this run already finished).
    checkpoint.path.unlink(missing_ok=True)
    return embedded, without_text


def _run(
    settings: Settings,
    row: ModelVersion,
    batch_notes: int,
    options: RayRebuild,
    todo: list[IdRange],
) -> Iterable[dict[str, Any]]:
    """The results of each range, as the actors finish them."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws its own, in notes
    ranges = ray.data.from_items(
        [{"first": r.first, "last": r.last} for r in todo],
        override_num_blocks=len(todo),  # one range per block: the pool shares them out
    )
    with warnings.catch_warnings():
        # Bounded restarts have no named parameter yet (`ray_remote_args` until Ray 2.64; the
        # [ray] extra is pinned below it).
        warnings.simplefilter("ignore", RayDeprecationWarning)
        return _embed_ranges(ranges, settings, row, batch_notes, options).iter_rows()


def _embed_ranges(
    ranges: ray.data.Dataset,
    settings: Settings,
    row: ModelVersion,
    batch_notes: int,
    options: RayRebuild,
) -> ray.data.Dataset:
    return ranges.map_batches(
        RangeEmbedder,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_cpus=options.cpus_per_actor,
        fn_constructor_kwargs={
            "settings_values": settings.model_dump(mode="json"),
            "model_ref": row.ref,
            "threads": options.cpus_per_actor,
            "batch_notes": batch_notes,
        },
        max_restarts=ACTOR_RESTARTS,
        max_task_retries=ACTOR_RESTARTS,
    )
