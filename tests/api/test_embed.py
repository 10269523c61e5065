"""POST /embed and the operational endpoints, over real HTTP against a real inference session
(ONNX Runtime or OpenVINO, whichever `runtime auto` picks on this machine)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from service.inference.runtime_choice import choose_runtime
from service.orchestration.configs import runtime_config
from tests.conftest import make_settings
from tests.support.tiny_model import synthetic_corpus

LONG_NOTE = " ".join(synthetic_corpus(8, seed=9))


def test_embed_returns_unit_vectors_with_handling(client: httpx.Client) -> None:
    notes = ["patient admitted with chest pain", {"id": "n-2", "text": LONG_NOTE}]
    r = client.post("/embed", json={"notes": notes})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "tiny", "version": "1"} and body["dim"] == 32
    assert r.headers["x-notespace-model"] == "tiny@1"
    first, second = body["data"]
    assert (first["index"], first["id"], first["handling"], first["windows"]) == (
        0,
        None,
        "whole",
        1,
    )
    assert (second["id"], second["handling"]) == ("n-2", "chunked") and second["windows"] > 1
    for item in body["data"]:
        vector = np.asarray(item["embedding"])
        assert vector.shape == (32,)
        assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert body["usage"]["tokens"] == first["tokens"] + second["tokens"]


def test_long_note_policy_per_request(client: httpx.Client) -> None:
    r = client.post("/embed", json={"notes": [LONG_NOTE], "long_note": "truncate"})
    assert r.status_code == 200 and r.json()["data"][0]["handling"] == "truncated"
    r = client.post("/embed", json={"notes": ["ok", LONG_NOTE], "long_note": "reject"})
    assert r.status_code == 413
    assert r.json()["error"]["param"] == "notes[1]"


def test_same_note_same_vector_alone_or_in_batch(client: httpx.Client) -> None:
    """Determinism contract: padding and batch-mates must not move a vector (tolerance 1e-5)."""
    target = "fever cough history of asthma, chest clear, plan review in clinic"
    alone = client.post("/embed", json={"notes": [target]}).json()["data"][0]["embedding"]
    others = synthetic_corpus(6, seed=4)
    mixed = client.post("/embed", json={"notes": [*others[:3], target, *others[3:], LONG_NOTE]})
    in_batch = mixed.json()["data"][3]["embedding"]
    np.testing.assert_allclose(alone, in_batch, atol=1e-5)
    chunked_alone = client.post("/embed", json={"notes": [LONG_NOTE]}).json()["data"][0]
    np.testing.assert_allclose(
        chunked_alone["embedding"], mixed.json()["data"][-1]["embedding"], atol=1e-5
    )


def test_health_ready_info(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/info").json()
    assert info["model"]["dim"] == 32 and info["model"]["max_tokens_per_window"] == 32
    # The runtime `auto` picks on this machine (tests/test_runtime_choice.py covers the rules).
    choice = choose_runtime(runtime_config(make_settings(Path("unused"))), "fp32")
    expected = (
        ["CPUExecutionProvider"]
        if choice.runtime == "onnxruntime"
        else [f"OpenVINO-CPU-{choice.precision}"]
    )
    assert info["model"]["providers"] == expected
    assert set(info["limits"]) >= {
        "max_body_bytes",
        "max_notes_per_request",
        "max_chars_per_note",
        "max_queue_tokens",
        "request_deadline_ms",
    }


def test_metrics_expose_routes_queue_batches_and_stages(client: httpx.Client) -> None:
    client.post("/embed", json={"notes": ["metrics probe note"]})
    text = client.get("/metrics").text
    assert 'notespace_requests_total{route="/embed",status="200"}' in text
    client.get("/docs")
    assert 'route="/docs",status="200"' in client.get("/metrics").text  # not "unmatched"
    for stage in ("queue", "tokenize", "infer", "pool"):
        assert f'notespace_stage_seconds_count{{stage="{stage}"}}' in text
    assert "notespace_queue_tokens " in text
    assert "notespace_batch_windows_count" in text
    assert "notespace_batch_tokens_count" in text
