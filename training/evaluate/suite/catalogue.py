"""Load a suite's tasks: built-in loaders by name, a trust's own tables by column map."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from training.evaluate.suite.config import BuiltinTaskSpec, CustomTaskSpec, SuiteConfig, TaskSpec
from training.evaluate.suite.custom import load_custom_task
from training.evaluate.suite.loaders import medec, medquad, meqsum, mtsamples
from training.evaluate.suite.loaders.files import data_file
from training.evaluate.suite.tasks import Task


@dataclass(frozen=True)
class LoadedTask:
    task: Task
    files: list[Path]  # every data file read, hashed into the suite fingerprint


def _builtin(spec: BuiltinTaskSpec, path: Path, min_per_class: int) -> LoadedTask:
    loader = spec.loader
    if loader == "mtsamples-note-type":
        task: Task = mtsamples.load_mtsamples_task(
            spec.name, path, target="category", min_per_class=min_per_class
        )
    elif loader == "mtsamples-specialty":
        task = mtsamples.load_mtsamples_task(
            spec.name, path, target="label", min_per_class=min_per_class
        )
    elif loader == "mtsamples-description-retrieval":
        task = mtsamples.load_description_task(spec.name, path)
    elif loader == "medquad-qtype":
        task = medquad.load_qtype_task(spec.name, path, min_per_class=min_per_class)
    elif loader == "medquad-retrieval":
        task = medquad.load_retrieval_task(spec.name, path)
    elif loader == "meqsum-retrieval":
        task = meqsum.load_meqsum_task(spec.name, path)
    else:
        assert loader == "medec-type"  # BuiltinTaskSpec refuses unknown loaders
        task = medec.load_medec_task(spec.name, path, min_per_class=min_per_class)
        files = [path / medec.VALIDATION_FILE, path / medec.TEST_FILE]
        return LoadedTask(task, files)
    return LoadedTask(task, [path])


def load_task(spec: TaskSpec, suite: SuiteConfig, data_root: Path | None) -> LoadedTask:
    path = data_file(spec.name, data_root, spec.path)
    floor = suite.min_per_class(spec)
    if isinstance(spec, CustomTaskSpec):
        return LoadedTask(load_custom_task(spec, path, min_per_class=floor), [path])
    return _builtin(spec, path, floor)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def suite_fingerprint(suite: SuiteConfig, loaded: dict[str, LoadedTask]) -> str:
    """sha256 of the suite definition (tasks, N, seeds, settings) and every data file's
    sha256, in task order: two results compare only when their fingerprints match."""
    digest = hashlib.sha256(suite.definition_digest().encode())
    for name, item in loaded.items():
        for path in item.files:
            digest.update(f"\n{name}:{path.name}:{file_sha256(path)}".encode())
    return digest.hexdigest()
