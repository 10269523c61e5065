"""lineage.json beside a trained model: what export copies into the bundle manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.errors import TrainingError

LINEAGE_FILE = "lineage.json"
# The manifest fields export_bundle accepts through lineage=; "objective" travels separately.
MANIFEST_KEYS = ("base_model", "data_fingerprint", "training_config", "eval_metrics")


def write_lineage(model_dir: Path, lineage: dict[str, Any]) -> Path:
    path = model_dir / LINEAGE_FILE
    path.write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_lineage(model_dir: Path) -> dict[str, Any] | None:
    """The lineage written by a training run, or None for a model that has none."""
    path = model_dir / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise TrainingError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise TrainingError(f"{path} must hold a JSON object")
    return data


def manifest_lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    """The subset of a lineage record that export_bundle puts in the manifest."""
    return {k: lineage[k] for k in MANIFEST_KEYS if lineage.get(k) is not None}
