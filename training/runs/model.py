"""Load a base encoder with an MLM head, and run its two halves (encoder, vocabulary head)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.errors import TrainingConfigError

log = logging.getLogger(__name__)


@dataclass
class EncoderWithHead:
    """A *ForMaskedLM model split into the encoder (hidden states) and its vocabulary head."""

    model: Any  # the full *ForMaskedLM PreTrainedModel: what is saved and optimised
    tokenizer: Any
    encoder: nn.Module
    head: nn.Module
    dim: int
    # True when the checkpoint had no trained masked-LM head (a sentence-transformers base):
    # transformers initialised it at random.
    fresh_head: bool = False

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, T] -> last hidden layer [B, T, D]."""
        out: torch.Tensor = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        return out

    def logits(self, hidden_rows: torch.Tensor) -> torch.Tensor:
        """Hidden rows [N, D] (masked positions only) -> vocabulary logits [N, V]."""
        out: torch.Tensor = self.head(hidden_rows)
        return out


def _mlm_head(model: nn.Module, base: Path) -> nn.Module:
    for name in ("cls", "lm_head"):  # BERT-style, RoBERTa / XLM-R-style
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise TrainingConfigError(
        f"{base}: no masked-LM head found on {type(model).__name__}; "
        "use a BERT- or RoBERTa-style encoder"
    )


def load_encoder(base: Path) -> EncoderWithHead:
    """Load `base` as a masked-LM encoder or raise TrainingConfigError naming the directory."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    if not base.is_dir():
        raise TrainingConfigError(f"base model directory not found: {base}")
    if not (base / "config.json").is_file():
        raise TrainingConfigError(f"{base} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(base, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingConfigError(f"cannot read the model config in {base}: {exc}") from None
    if getattr(config, "is_decoder", False) or getattr(config, "is_encoder_decoder", False):
        raise TrainingConfigError(f"{base} is not an encoder-only model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        # Checkpoints saved as a bare encoder (e.g. sentence-transformers) get a fresh head.
        model, info = AutoModelForMaskedLM.from_pretrained(
            base, config=config, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingConfigError(f"cannot load a masked-LM encoder from {base}: {exc}") from None
    if not getattr(tokenizer, "is_fast", False) or tokenizer.mask_token_id is None:
        raise TrainingConfigError(f"{base} needs a fast tokenizer with a mask token")
    encoder = getattr(model, "base_model", None)
    if not isinstance(encoder, nn.Module) or encoder is model:
        raise TrainingConfigError(f"{base}: cannot find the encoder inside {type(model).__name__}")
    head = _mlm_head(model, base)
    head_names = {name for name, module in model.named_children() if module is head}
    fresh = any(key.split(".")[0] in head_names for key in info.get("missing_keys", []))
    return EncoderWithHead(model, tokenizer, encoder, head, int(config.hidden_size), fresh)


def save_model(model: EncoderWithHead, out: Path, *, head_trained: bool) -> None:
    """Write model + tokenizer for `from_pretrained`. A masked-LM head that started fresh and
    never trained (MLM weight 0) is left out: saved, its random weights would look like a
    trained head to the next run, whose MLM weight "auto" would then turn the MLM term on."""
    keep_head = head_trained or not model.fresh_head
    to_save: Any = model.model if keep_head else model.encoder  # transformers PreTrainedModel
    to_save.save_pretrained(out)
    model.tokenizer.save_pretrained(out)


def frozen_copy(encoder: nn.Module) -> nn.Module:
    """A copy of the encoder that never trains: the teacher of the distillation term."""
    import copy

    teacher = copy.deepcopy(encoder)
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingConfigError("device 'cuda' requested but CUDA is not available")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")
