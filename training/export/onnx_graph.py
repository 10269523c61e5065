"""torch → ONNX: the encoder with mean pooling and L2 normalisation as one graph, and the check
that ONNX Runtime reproduces PyTorch on real text within the stated tolerance."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

# fp32 ONNX vs fp32 PyTorch on unit vectors: kernel differences stay around 1e-6.
PARITY_MAX_ABS_DIFF = 1e-4
PARITY_MIN_COSINE = 0.9999
ONNX_OPSET = 18

# Built-in parity texts: synthetic clinical prose written for this purpose (no patient data),
# of varied lengths so the check covers padding and long windows. A trust can pass its own.
PARITY_TEXTS = (
    "Patient seen in clinic today.",
    "BP 142/88, HR 92, afebrile. Chest clear. Plan: repeat U&Es in one week.",
    "DISCHARGE SUMMARY: 74-year-old man admitted with community-acquired pneumonia, treated "
    "with IV co-amoxiclav and clarithromycin, stepped down to oral antibiotics on day three. "
    "Oxygen weaned. Discharged home with GP follow-up and a repeat chest X-ray in six weeks.",
    "RADIOLOGY: CT head without contrast. No acute intracranial haemorrhage, no midline shift. "
    "Established small vessel ischaemic change. Impression: no acute abnormality.",
    "Nursing note: patient mobilising with frame, pressure areas intact, eating and drinking "
    "well, pain controlled with regular paracetamol. Family updated by phone. " * 12,
    "Operative note. Procedure: laparoscopic cholecystectomy. Findings: chronically inflamed "
    "gallbladder with multiple calculi. Critical view of safety obtained, cystic duct and "
    "artery clipped and divided, gallbladder removed in a retrieval bag. Haemostasis secured. "
    "Port sites closed with absorbable sutures. Estimated blood loss minimal. " * 8,
)


class MeanPooledEncoder(torch.nn.Module):
    """Encoder + attention-mask mean pooling + L2 normalisation, as one traced graph."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # [B, T, D]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        summed = (hidden * weights).sum(dim=1)  # [B, D]
        pooled = summed / weights.sum(dim=1).clamp(min=1e-9)  # [B, D]
        return torch.nn.functional.normalize(pooled, p=2.0, dim=-1)  # [B, D]


def torch_embed(
    module: MeanPooledEncoder, tokenizer: Any, texts: list[str], max_tokens: int
) -> tuple[npt.NDArray[np.float32], dict[str, npt.NDArray[np.int64]]]:
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
    )
    with torch.inference_mode():
        vectors = module(batch["input_ids"], batch["attention_mask"])
    feeds = {
        "input_ids": batch["input_ids"].numpy().astype(np.int64),
        "attention_mask": batch["attention_mask"].numpy().astype(np.int64),
    }
    return vectors.numpy().astype(np.float32), feeds


def onnx_export(module: MeanPooledEncoder, out_file: Path, vocab_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, max(6, vocab_size), (2, 16), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0  # trace with padding present
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence")
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # per-initializer INFO lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (input_ids, attention_mask),
            str(out_file),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def check_parity(
    model_file: Path, reference: npt.NDArray[np.float32], feeds: dict[str, npt.NDArray[np.int64]]
) -> tuple[float, float]:
    """Run the exported graph in ONNX Runtime; return (max abs diff, min cosine)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    got = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
    max_abs = float(np.abs(got - reference).max())
    cos = (got * reference).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
    )
    return max_abs, float(cos.min())
