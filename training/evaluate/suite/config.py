"""The suite definition (YAML): its tasks, and the settings every model is evaluated with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from training.evaluate.data import EvaluationError, FewShotN, parse_n

SUITES_DIR = Path(__file__).resolve().parents[2] / "configs" / "suites"
BUILTIN_TASKS = (
    "mtsamples-note-type",
    "mtsamples-specialty",
    "mtsamples-description-retrieval",
    "medquad-qtype",
    "medquad-retrieval",
    "meqsum-retrieval",
    "medec-type",
)


def _parse_ns(values: Any) -> Any:
    if values is None or not isinstance(values, list):
        return values  # None: no override; anything else fails validation below
    try:
        return [parse_n(str(v)) for v in values]
    except EvaluationError as exc:
        raise ValueError(str(exc)) from None


FewShotNs = Annotated[list[FewShotN], BeforeValidator(_parse_ns)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FinetuneSettings(_Strict):
    """Fine-tuning the whole encoder (expensive on CPU: off unless the suite names tasks)."""

    tasks: list[str]
    n: FewShotNs = [16]
    seeds: int = Field(5, ge=1)
    max_steps: int = Field(200, ge=1)
    eval_every: int = Field(10, ge=1)
    patience: int = Field(5, ge=1)  # evaluations without a validation gain before stopping
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(256, ge=8)  # tokens per note while fine-tuning (no chunking)
    encoder_lr: float = Field(2e-5, gt=0)
    head_lr: float = Field(1e-3, gt=0)


class SuiteSettings(_Strict):
    n: FewShotNs = [16, 64, "all"]
    seeds: int = Field(5, ge=1)
    long_note: Literal["chunk", "truncate"] = "chunk"
    bootstrap: int = Field(1000, ge=10)  # paired bootstrap resamples for the CIs
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    runtime: Literal["auto", "onnxruntime", "openvino"] = "auto"
    cpu_precision: Literal["auto", "fp32", "bf16"] = "auto"
    tsne: bool = False  # t-SNE pictures of classification test sets (slow)
    finetune: FinetuneSettings | None = None

    @field_validator("n")
    @classmethod
    def _some_n(cls, ns: list[FewShotN]) -> list[FewShotN]:
        if not ns:
            raise ValueError("give at least one N")
        return ns


class BuiltinTaskSpec(_Strict):
    """A visible task with a built-in loader; `path` is relative to the data root."""

    name: str
    builtin: str | None = None  # the loader; default: the task's name
    path: str
    n: FewShotNs | None = None  # override the suite's N values for this task
    min_per_class: int | None = Field(None, ge=1)

    @property
    def loader(self) -> str:
        return self.builtin or self.name

    @model_validator(mode="after")
    def _known(self) -> BuiltinTaskSpec:
        if self.loader not in BUILTIN_TASKS:
            raise ValueError(
                f"unknown built-in task {self.loader!r} (known: {', '.join(BUILTIN_TASKS)}; "
                "a task of your own needs `kind`)"
            )
        return self


class ClassificationColumns(_Strict):
    text: str
    label: str
    id: str | None = None
    group: str | None = None  # rows sharing it (a patient) never straddle a split


class RetrievalColumns(_Strict):
    query: str
    document: str
    id: str | None = None  # the document's id (default: a hash of its text)


class ColumnSplit(_Strict):
    column: str  # values train / val / test


class HashSplit(_Strict):
    by: Literal["hash"]
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _room(self) -> HashSplit:
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError("test_fraction + val_fraction must leave rows to train on")
        return self


class CustomTaskSpec(_Strict):
    """A trust's own table; columns are mapped (the file keeps its own names)."""

    name: str
    kind: Literal["classification", "retrieval"]
    path: str
    format: Literal["csv", "tsv", "jsonl", "parquet"] | None = None  # default: from the suffix
    columns: ClassificationColumns | RetrievalColumns
    split: ColumnSplit | HashSplit
    n: FewShotNs | None = None
    min_per_class: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _columns_fit_kind(self) -> CustomTaskSpec:
        want = RetrievalColumns if self.kind == "retrieval" else ClassificationColumns
        if not isinstance(self.columns, want):
            raise ValueError(f"a {self.kind} task maps columns {sorted(want.model_fields)}")
        return self


TaskSpec = BuiltinTaskSpec | CustomTaskSpec


class SuiteConfig(_Strict):
    name: str
    description: str = ""
    settings: SuiteSettings = SuiteSettings()
    tasks: list[TaskSpec]

    @model_validator(mode="after")
    def _consistent(self) -> SuiteConfig:
        names = [t.name for t in self.tasks]
        if not names:
            raise ValueError("a suite needs at least one task")
        if len(set(names)) != len(names):
            raise ValueError(f"task names repeat: {names}")
        ft = self.settings.finetune
        if ft is not None and (unknown := sorted(set(ft.tasks) - set(names))):
            raise ValueError(f"finetune.tasks names unknown task(s) {unknown}")
        return self

    def task_ns(self, spec: TaskSpec) -> list[FewShotN]:
        return list(spec.n or self.settings.n)

    def finetune_ns(self, task: str) -> list[FewShotN]:
        ft = self.settings.finetune
        return list(ft.n) if ft is not None and task in ft.tasks else []

    def min_per_class(self, spec: TaskSpec) -> int:
        """The task's class floor: as given, else its largest finite N (fine-tuning's too)."""
        if spec.min_per_class is not None:
            return spec.min_per_class
        finite = [n for n in self.task_ns(spec) + self.finetune_ns(spec.name) if n != "all"]
        return max(finite, default=2)

    def definition_digest(self) -> str:
        """sha256 of the definition as written (tasks, paths relative to the data root, N,
        seeds and every other setting): with the data files' hashes, the suite fingerprint."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _error_line(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in ([prefix] if prefix else []) + list(err["loc"])) or "suite"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _parse_task(spec: Any, index: int, source: str) -> TaskSpec:
    """One task: with `kind` a trust's own table, without a built-in task; its columns are
    validated against the kind so an error names the right fields."""
    where = f"{source}: tasks[{index}]"
    if not isinstance(spec, dict):
        raise EvaluationError(f"{where}: a task is a mapping with at least `name` and `path`")
    where += f" ({spec.get('name', '?')})"
    try:
        if "kind" not in spec:
            return BuiltinTaskSpec.model_validate(spec)
        columns: Any = spec.get("columns")
        if isinstance(columns, dict):
            model = RetrievalColumns if spec["kind"] == "retrieval" else ClassificationColumns
            try:
                columns = model.model_validate(columns)
            except ValidationError as exc:
                raise EvaluationError(f"{where}: {_error_line(exc, 'columns')}") from None
        return CustomTaskSpec.model_validate({**spec, "columns": columns})
    except ValidationError as exc:
        raise EvaluationError(f"{where}: {_error_line(exc)}") from None


def parse_suite(data: Any, source: str = "suite") -> SuiteConfig:
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise EvaluationError(f"{source}: a suite is a YAML mapping with `name` and `tasks`")
    tasks = [_parse_task(spec, i, source) for i, spec in enumerate(data["tasks"])]
    try:
        return SuiteConfig.model_validate({**data, "tasks": tasks})
    except ValidationError as exc:
        raise EvaluationError(f"{source}: {_error_line(exc)}") from None


def suite_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a suite in training/configs/suites/."""
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise EvaluationError(f"suite file not found: {path}")
        return path
    named = SUITES_DIR / f"{name_or_path}.yaml"
    if not named.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))) or "none"
        raise EvaluationError(f"unknown suite {name_or_path!r} (named suites: {known})")
    return named


def load_suite(name_or_path: str) -> tuple[SuiteConfig, Path]:
    """(the suite, the directory its relative paths fall back to when no data root is given)."""
    path = suite_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EvaluationError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    return parse_suite(data, str(path)), path.parent
