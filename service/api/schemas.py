"""Request and response models. Requests forbid unknown fields; text limits are checked in
`validate_texts` so they answer 400/413 rather than a generic 422."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from service.errors import EmptyInput, NoteTooLong, PayloadTooLarge
from service.settings import LongNotePolicy, Settings


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoteIn(_Request):
    id: StrictStr | None = Field(default=None, max_length=256, description="client's note id")
    text: StrictStr


def _note_from_string(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


# A plain string is shorthand for {"text": ...}; converting before validation keeps error
# locations simple (notes[3].text, not a union branch name).
NoteField = Annotated[NoteIn, BeforeValidator(_note_from_string)]


class EmbedRequest(_Request):
    notes: list[NoteField] = Field(
        description="notes to embed: plain strings, or objects with an optional client id"
    )
    long_note: LongNotePolicy | None = Field(
        default=None,
        description="notes longer than one window: 'chunk' (overlapping windows, mean-pooled; "
        "the default), 'truncate' (first window only) or 'reject' (413)",
    )


class ModelRef(BaseModel):
    name: str
    version: str


class EmbeddedNote(BaseModel):
    index: int
    id: str | None
    embedding: list[float]
    tokens: int = Field(description="tokens in the note, special tokens excluded")
    handling: Literal["whole", "chunked", "truncated"]
    windows: int


class Usage(BaseModel):
    tokens: int


class EmbedResponse(BaseModel):
    model: ModelRef
    dim: int
    data: list[EmbeddedNote]
    usage: Usage


class OpenAIEmbeddingRequest(_Request):
    input: StrictStr | list[StrictStr]
    model: StrictStr
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: StrictStr | None = Field(default=None, max_length=256)


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def validate_texts(texts: list[str], settings: Settings, param: str) -> None:
    """Reject empty, blank, too many or too long notes, naming the field (never the text)."""
    if not texts:
        raise EmptyInput(f"{param} must hold at least one note", param=param)
    if len(texts) > settings.max_notes_per_request:
        raise PayloadTooLarge(
            f"{len(texts)} notes sent; at most {settings.max_notes_per_request} per request",
            param=param,
        )
    for i, text in enumerate(texts):
        if not text.strip():
            raise EmptyInput(f"{param}[{i}] is empty or whitespace only", param=f"{param}[{i}]")
        if len(text) > settings.max_chars_per_note:
            raise NoteTooLong(
                f"{param}[{i}] has {len(text)} characters; at most "
                f"{settings.max_chars_per_note} per note",
                param=f"{param}[{i}]",
            )
