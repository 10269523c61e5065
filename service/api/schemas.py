"""Request and response models. Requests forbid unknown fields; text limits are checked in
`validate_texts` so they answer 400/413 rather than a generic 422."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
)

from service.errors import EmptyInput, MetadataTooLarge, NoteTooLong, PayloadTooLarge
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
    categories: bool = Field(
        default=False,
        description="also return each note's category from the model's note-category head "
        "(409 when the serving model has none)",
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
    category: str | None = Field(default=None, description="only when categories were asked")
    category_probability: float | None = None


class Usage(BaseModel):
    tokens: int


class EmbedResponse(BaseModel):
    model: ModelRef
    dim: int
    data: list[EmbeddedNote]
    usage: Usage


class ClassifyRequest(_Request):
    notes: list[NoteField] = Field(description="notes to classify into note categories")
    long_note: LongNotePolicy | None = Field(
        default=None, description="as for /embed: 'chunk' (default), 'truncate' or 'reject'"
    )
    top_k: StrictInt | None = Field(
        default=None, ge=1, description="return only the k most probable categories per note"
    )


class CategoryScore(BaseModel):
    category: str
    probability: float


class ClassifiedNote(BaseModel):
    index: int
    id: str | None
    category: str = Field(description="the most probable note category")
    probability: float
    probabilities: list[CategoryScore] = Field(description="every category, most probable first")
    tokens: int
    handling: Literal["whole", "chunked", "truncated"]


class ClassifyResponse(BaseModel):
    model: ModelRef
    labels: list[str]
    data: list[ClassifiedNote]
    usage: Usage


class OpenAIEmbeddingRequest(_Request):
    # Token ids (one list, or one per input) are parsed so they can be refused with a clear
    # answer: they are ids of the client's tokenizer, meaningless to this model's.
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(
        description="text, or a list of texts (token-id input is refused: send text)"
    )
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


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the version was exported (Unix seconds)")
    owned_by: str = "notespace"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


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


def validate_metadata(metadata: Metadata | None, settings: Settings, param: str) -> None:
    """Refuse metadata beyond the configured bounds (413), naming the field, never a value."""
    if not metadata:
        return
    if len(metadata) > settings.max_metadata_keys:
        raise MetadataTooLarge(
            f"{param} has {len(metadata)} keys; at most {settings.max_metadata_keys}", param=param
        )
    for key, value in metadata.items():
        if len(key) > settings.max_metadata_key_chars:
            raise MetadataTooLarge(
                f"a key of {param} has {len(key)} characters; at most "
                f"{settings.max_metadata_key_chars}",
                param=param,
            )
        if isinstance(value, str) and len(value) > settings.max_metadata_value_chars:
            raise MetadataTooLarge(
                f"a value of {param} has {len(value)} characters; at most "
                f"{settings.max_metadata_value_chars}",
                param=param,
            )
    size = len(json.dumps(metadata, ensure_ascii=False).encode("utf-8"))
    if size > settings.max_metadata_bytes:
        raise MetadataTooLarge(
            f"{param} is {size} bytes as JSON; at most {settings.max_metadata_bytes}", param=param
        )


# -- notes and search ------------------------------------------------------------------------

MetadataValue = StrictStr | int | float | bool | None
# Bounds on metadata (keys, value length, total size) are settings: see validate_metadata.
Metadata = dict[str, MetadataValue]
NoteKey = Annotated[StrictStr, Field(min_length=1, max_length=256)]
ShortText = Annotated[StrictStr, Field(min_length=1, max_length=128)]


def _in_utc(value: datetime) -> datetime:
    # Stored and compared in UTC on every database (SQLite keeps no offset), so a time whose
    # UTC form leaves years 1-9999 cannot be stored, read back or compared: refuse it here.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class NoteRecord(_Request):
    id: NoteKey = Field(description="the client's note id (idempotency key)")
    text: StrictStr
    category: ShortText | None = None
    time: UtcDatetime | None = Field(default=None, description="note time, with time zone")
    source: ShortText | None = None
    metadata: Metadata | None = Field(
        default=None, description="flat key → scalar; filterable by equality"
    )


class IndexNotesRequest(_Request):
    notes: list[NoteRecord]


class IndexedNote(BaseModel):
    id: str
    status: Literal["created", "updated", "unchanged"]


class IndexNotesResponse(BaseModel):
    model: ModelRef
    results: list[IndexedNote]


class NoteMetadata(BaseModel):
    id: str
    category: str | None
    time: datetime | None
    source: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class SearchFilters(_Request):
    categories: list[ShortText] | None = Field(default=None, max_length=100)
    sources: list[ShortText] | None = Field(default=None, max_length=100)
    time_from: UtcDatetime | None = None
    time_to: UtcDatetime | None = None
    metadata: Metadata | None = Field(
        default=None, description="key → scalar: notes whose metadata holds exactly that value"
    )


class SearchRequest(_Request):
    query: StrictStr | None = Field(default=None, description="free text to search with")
    note_id: NoteKey | None = Field(
        default=None, description="an indexed note to find neighbours of (excluded from hits)"
    )
    k: StrictInt = 10
    filters: SearchFilters | None = None


class SearchHitOut(NoteMetadata):
    score: float


class SearchResponse(BaseModel):
    model: ModelRef
    results: list[SearchHitOut]


class IndexStatsResponse(BaseModel):
    model: str = Field(description="NAME@VERSION whose index this is")
    live_notes: int
    notes_with_vectors: int = Field(description="live notes with a current vector of the model")
    index_rows: int
    kind: str
    sequence_watermark: int
    memory_bytes: int
