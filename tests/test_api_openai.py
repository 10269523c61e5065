"""/v1/embeddings works with the official openai Python client (base64 and float formats)."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import LiveServer


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
