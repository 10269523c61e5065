"""/v1/embeddings works with the official openai Python client (base64 and float formats)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import LiveServer, make_settings


@pytest.fixture()
def oai(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_client_default_base64(oai: openai.OpenAI, client: httpx.Client) -> None:
    texts = ["patient admitted with chest pain", "ct scan normal"]
    result = oai.embeddings.create(model="tiny", input=texts)
    assert [d.index for d in result.data] == [0, 1]
    vectors = np.asarray([d.embedding for d in result.data])
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    native = client.post("/embed", json={"notes": texts}).json()["data"]
    np.testing.assert_allclose(vectors, [n["embedding"] for n in native], atol=1e-6)
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0
    assert result.model == "tiny@1"


def test_openai_client_float_and_single_string(oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(model="tiny@1", input="fever", encoding_format="float")
    assert len(result.data) == 1 and len(result.data[0].embedding) == 32


def test_openai_errors(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="other-model", input="x")
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model="tiny", input=[])
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model="tiny", input="x", dimensions=16)
    with pytest.raises(openai.UnprocessableEntityError):
        oai.embeddings.create(model="tiny", input=[[1, 2, 3]])


def test_openai_client_lists_and_retrieves_the_served_model(oai: openai.OpenAI) -> None:
    names = [m.id for m in oai.models.list()]
    assert names == ["tiny", "tiny@1"]
    assert oai.models.retrieve("tiny@1").owned_by == "notespace"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("text-embedding-3-small")


def test_token_id_input_is_refused_with_a_clear_message(client: httpx.Client) -> None:
    for ids in ([1, 2, 3], [[1, 2, 3], [4, 5]]):
        r = client.post("/v1/embeddings", json={"model": "tiny", "input": ids})
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "token_ids_unsupported" and "send the text" in error["message"]


def test_dimensions_other_than_the_models_say_why(client: httpx.Client) -> None:
    r = client.post("/v1/embeddings", json={"model": "tiny", "input": "x", "dimensions": 16})
    assert r.status_code == 400
    assert "32-dimensional vectors only" in r.json()["error"]["message"]
    ok = client.post("/v1/embeddings", json={"model": "tiny", "input": "x", "dimensions": 32})
    assert ok.status_code == 200


def test_an_alias_lets_a_client_keep_its_model_name(tiny_bundle: Path) -> None:
    settings = make_settings(tiny_bundle, warmup=False, model_aliases=["text-embedding-3-small"])
    with LiveServer(settings) as live:
        oai = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
        result = oai.embeddings.create(model="text-embedding-3-small", input="chest pain")
        assert len(result.data[0].embedding) == 32 and result.model == "tiny@1"
        assert "text-embedding-3-small" in [m.id for m in oai.models.list()]


def test_usage_counts_the_tokens_embedded(client: httpx.Client) -> None:
    long_note = "patient admitted with chest pain " * 40  # many windows of 32 tokens
    whole = client.post("/embed", json={"notes": [long_note]}).json()
    cut = client.post("/embed", json={"notes": [long_note], "long_note": "truncate"}).json()
    assert whole["data"][0]["handling"] == "chunked" and cut["data"][0]["handling"] == "truncated"
    assert whole["usage"]["tokens"] == whole["data"][0]["tokens"]  # every token, once
    # Truncated: only the first window's content tokens were embedded.
    assert cut["usage"]["tokens"] < cut["data"][0]["tokens"] == whole["data"][0]["tokens"]
    oai = client.post("/v1/embeddings", json={"model": "tiny", "input": long_note}).json()
    assert oai["usage"]["prompt_tokens"] == whole["usage"]["tokens"]
