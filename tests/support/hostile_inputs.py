"""Hostile and careless input, by class, placed at every position of every route that takes it.

The hypothesis tests (tests/security/test_input_rules.py) draw from the strategies; the battery
in bench/hardening.py draws from the same builders with a seeded generator, so both exercise
the same positions. A case is raw bytes: Python's JSON writer cannot produce `NaN`, `1e400`,
forty-digit integers or the UTF-8 bytes of a lone surrogate, which a hostile client can send.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import strategies as st

SENTINEL = "__HOSTILE__"


@dataclass(frozen=True)
class Case:
    kind: str  # the class: text, number, model-id, metadata-size, time
    where: str  # the position, e.g. "POST /notes notes[0].metadata value"
    method: str
    path: str
    body: bytes | None

    def send(self, client: object, headers: dict[str, str] | None = None) -> object:
        import httpx

        assert isinstance(client, httpx.Client)
        extra = {"content-type": "application/json"} if self.body is not None else {}
        return client.request(
            self.method, self.path, content=self.body, headers={**extra, **(headers or {})}
        )


# Where text goes: (label, method, path, body with SENTINEL where the text goes).
TEXT_POSITIONS: list[tuple[str, str, str, object]] = [
    ("embed note", "POST", "/embed", {"notes": [SENTINEL]}),
    ("embed note text", "POST", "/embed", {"notes": [{"id": "a", "text": SENTINEL}]}),
    ("embed note id", "POST", "/embed", {"notes": [{"id": SENTINEL, "text": "chest pain"}]}),
    ("classify note", "POST", "/classify", {"notes": [SENTINEL]}),
    ("openai input", "POST", "/v1/embeddings", {"model": "tiny", "input": SENTINEL}),
    ("openai input list", "POST", "/v1/embeddings", {"model": "tiny", "input": ["x", SENTINEL]}),
    ("openai model", "POST", "/v1/embeddings", {"model": SENTINEL, "input": "x"}),
    ("openai user", "POST", "/v1/embeddings", {"model": "tiny", "input": "x", "user": SENTINEL}),
    ("index text", "POST", "/notes", {"notes": [{"id": "h1", "text": SENTINEL}]}),
    ("index id", "POST", "/notes", {"notes": [{"id": SENTINEL, "text": "fever"}]}),
    (
        "index category",
        "POST",
        "/notes",
        {"notes": [{"id": "h1", "text": "x", "category": SENTINEL}]},
    ),
    ("index source", "POST", "/notes", {"notes": [{"id": "h1", "text": "x", "source": SENTINEL}]}),
    (
        "index metadata value",
        "POST",
        "/notes",
        {"notes": [{"id": "h1", "text": "x", "metadata": {"mrn": SENTINEL}}]},
    ),
    (
        "index metadata key",
        "POST",
        "/notes",
        {"notes": [{"id": "h1", "text": "x", "metadata": {SENTINEL: "v"}}]},
    ),
    ("search query", "POST", "/search", {"query": SENTINEL, "k": 3}),
    ("search note id", "POST", "/search", {"note_id": SENTINEL, "k": 3}),
    ("filter category", "POST", "/search", {"query": "x", "filters": {"categories": [SENTINEL]}}),
    ("filter source", "POST", "/search", {"query": "x", "filters": {"sources": [SENTINEL]}}),
    (
        "filter metadata value",
        "POST",
        "/search",
        {"query": "x", "filters": {"metadata": {"mrn": SENTINEL}}},
    ),
    (
        "filter metadata key",
        "POST",
        "/search",
        {"query": "x", "filters": {"metadata": {SENTINEL: 1}}},
    ),
]
PATH_POSITIONS: list[tuple[str, str, str]] = [
    ("note path id", "GET", "/notes/{}"),
    ("note path id (delete)", "DELETE", "/notes/{}"),
    ("model path ref", "GET", "/models/{}"),
    ("model path ref (promote)", "POST", "/models/{}/promote"),
]
# Where a number goes.
NUMBER_POSITIONS: list[tuple[str, str, str, object]] = [
    (
        "index metadata value",
        "POST",
        "/notes",
        {"notes": [{"id": "h1", "text": "x", "metadata": {"n": SENTINEL}}]},
    ),
    (
        "filter metadata value",
        "POST",
        "/search",
        {"query": "x", "filters": {"metadata": {"n": SENTINEL}}},
    ),
    ("search k", "POST", "/search", {"query": "x", "k": SENTINEL}),
    ("classify top_k", "POST", "/classify", {"notes": ["x"], "top_k": SENTINEL}),
    (
        "openai dimensions",
        "POST",
        "/v1/embeddings",
        {"model": "tiny", "input": "x", "dimensions": SENTINEL},
    ),
]
NUMBER_LITERALS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1" * 40,
    "-" + "9" * 30,
    str(2**63),
    str(-(2**63) - 1),
    str(2**64),
]
MODEL_REFS = ["1" * 40, str(2**63), "%C2%B2", "%D9%A3", "-1", "1e5", "0x10", "a%00%40b"]


def _json_with(body: object, replacement: str, *, raw_utf8: bool) -> bytes:
    """The body as JSON with SENTINEL replaced by `replacement` (a JSON string or literal)."""
    text = json.dumps(body, ensure_ascii=not raw_utf8)
    return text.replace(json.dumps(SENTINEL), replacement).encode("utf-8", "surrogatepass")


def text_case(position: int, text: str, *, raw_utf8: bool) -> Case:
    label, method, path, body = TEXT_POSITIONS[position]
    encoded = json.dumps(text, ensure_ascii=not raw_utf8)
    encoding = "raw UTF-8" if raw_utf8 else "JSON escapes"
    return Case(
        "text",
        f"{method} {path} {label} ({encoding})",
        method,
        path,
        _json_with(body, encoded, raw_utf8=raw_utf8),
    )


def path_case(position: int, text: str) -> Case:
    label, method, template = PATH_POSITIONS[position]
    segment = quote(text.encode("utf-8", "surrogatepass"), safe="")
    return Case("text", f"{method} {template} {label}", method, template.format(segment), None)


def number_case(position: int, literal: str) -> Case:
    label, method, path, body = NUMBER_POSITIONS[position]
    return Case(
        "number",
        f"{method} {path} {label} = {literal[:12]}",
        method,
        path,
        _json_with(body, literal, raw_utf8=False),
    )


def model_ref_case(ref: str) -> Case:
    return Case("model-id", f"GET /models/{ref[:12]}", "GET", f"/models/{ref}", None)


# -- hypothesis strategies ---------------------------------------------------------------


def bad_character() -> st.SearchStrategy[str]:
    """NUL, or a lone UTF-16 surrogate (high or low)."""
    return st.just("\x00") | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def hostile_text() -> st.SearchStrategy[str]:
    """Ordinary text with at least one NUL or lone surrogate somewhere in it."""
    plain = st.text(max_size=12)  # hypothesis's default alphabet has no surrogates
    return st.tuples(plain, bad_character(), plain, st.lists(bad_character(), max_size=2)).map(
        lambda p: p[0] + p[1] + p[2] + "".join(p[3])
    )


def text_cases() -> st.SearchStrategy[Case]:
    body_cases = st.builds(
        text_case,
        st.integers(0, len(TEXT_POSITIONS) - 1),
        hostile_text(),
        raw_utf8=st.booleans(),
    )
    path_cases = st.builds(path_case, st.integers(0, len(PATH_POSITIONS) - 1), hostile_text())
    return body_cases | path_cases


def number_literals() -> st.SearchStrategy[str]:
    huge = st.integers(min_value=2**63, max_value=10**60)
    return (
        st.sampled_from(NUMBER_LITERALS)
        | huge.map(str)
        | huge.map(lambda n: str(-n - 1))
        | st.integers(400, 4000).map(lambda e: f"1e{e}")
    )


def number_cases() -> st.SearchStrategy[Case]:
    return st.builds(number_case, st.integers(0, len(NUMBER_POSITIONS) - 1), number_literals())


# -- the seeded generator for the bench battery --------------------------------------------


def seeded_cases(rng: random.Random, count: int, canary: str) -> list[Case]:
    """`count` cases over every class and position, reproducibly. Body text carries `canary`
    (it must never reach a log); path ids do not (the access log records paths by design)."""
    makers: list[Callable[[], Case]] = [
        lambda: text_case(
            rng.randrange(len(TEXT_POSITIONS)),
            _seeded_text(rng, canary),
            raw_utf8=rng.random() < 0.5,
        ),
        lambda: path_case(rng.randrange(len(PATH_POSITIONS)), _seeded_text(rng, "id")),
        lambda: number_case(rng.randrange(len(NUMBER_POSITIONS)), _seeded_literal(rng)),
        lambda: model_ref_case(rng.choice(MODEL_REFS)),
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def _seeded_text(rng: random.Random, marker: str) -> str:
    bad = "\x00" if rng.random() < 0.4 else chr(rng.randint(0xD800, 0xDFFF))
    words = ["chest", "pain", "mrn", "ward 7", "é", "\u2028", "😀", marker]
    return " ".join(rng.sample(words, 3)) + bad + marker


def _seeded_literal(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(NUMBER_LITERALS)
    return str(rng.randint(2**63, 10**50) * rng.choice([1, -1]))
