"""Builds a tiny random BERT + WordPiece tokenizer on disk, shaped like a real HF encoder dir."""

from __future__ import annotations

import random
from pathlib import Path

_PROSE = (
    "patient admitted with chest pain shortness of breath fever cough history of "
    "diabetes hypertension asthma copd renal failure discharged home follow up clinic "
    "plan review ct scan x ray mri ultrasound normal abnormal fracture left right "
    "knee hip shoulder surgery operation procedure incision closed sutures blood loss "
    "minimal stable tolerated medication dose daily twice aspirin metformin insulin "
    "antibiotics pain relief nursing note mobilising eating drinking family informed "
    "observations heart rate pressure temperature oxygen saturation"
)
WORDS = _PROSE.split()


def synthetic_corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(n)]


def build_tiny_encoder(
    out: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    corpus: list[str] | None = None,
    vocab_size: int = 300,
    masked_lm: bool = False,
    model_max_length: int = 64,
) -> Path:
    """A random BERT (with an MLM head when `masked_lm`, for training tests) and a WordPiece
    tokenizer trained on `corpus` (default: the synthetic word list)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertConfig, BertForMaskedLM, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(
        [*(corpus or synthetic_corpus(300, seed)), "abcdefghijklmnopqrstuvwxyz0123456789.,:;/()-"],
        WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials),
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[
            ("[CLS]", tokenizer.token_to_id("[CLS]")),
            ("[SEP]", tokenizer.token_to_id("[SEP]")),
        ],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    out.mkdir(parents=True, exist_ok=True)
    model = BertForMaskedLM(config) if masked_lm else BertModel(config)
    model.eval().save_pretrained(out)
    fast.save_pretrained(out)
    return out
