"""Service settings: one frozen object, read from NOTESPACE_* environment variables."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.inference.config import CpuPrecision, Device, LongNotePolicy, Runtime

# The setting types, for the layers that take settings (api/, orchestration/).
__all__ = ["CpuPrecision", "Device", "LongNotePolicy", "Runtime", "Settings", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _setting(default: Any = ..., description: str = "", **constraints: Any) -> Any:
    """A setting's default, constraints and description (the help text of its flag)."""
    return Field(default=default, description=description, **constraints)


class Settings(BaseSettings):
    """Everything the service can be told: each field is the environment variable
    NOTESPACE_<NAME> and the `notespace serve --<name>` flag. GET /info shows the limits."""

    model_config = SettingsConfigDict(env_prefix="NOTESPACE_", frozen=True, extra="forbid")

    bundle_path: Path = _setting(
        Path("bundles/all-MiniLM-L6-v2"),
        "model bundle registered and served when the registry is empty (the quick start)",
    )

    # -- the registry ---------------------------------------------------------------------
    database_url: str = _setting(
        "sqlite:///var/notespace.db",
        "registry and notes database: a SQLite file on one box, PostgreSQL in docker-compose",
    )
    model_name: str | None = _setting(
        None, "serve the active version of this model name (needed when several are active)"
    )
    model_aliases: list[str] = _setting(
        [],
        "other names /v1/embeddings accepts for the served model (JSON list), e.g. "
        '["text-embedding-3-small"], so an OpenAI client works with its model name unchanged',
    )
    registry_poll_s: float = _setting(
        5.0,
        "seconds between looks for a promotion made elsewhere (CLI, another replica); on "
        "PostgreSQL a promotion is also announced (LISTEN/NOTIFY) and followed at once, so "
        "this is the bound only when an announcement is lost",
        gt=0,
    )

    # -- notes and search -----------------------------------------------------------------
    store_note_text: bool = _setting(
        True,
        "keep note text, so a newly promoted model can re-embed every note (off: a rebuild "
        "needs the notes sent again)",
    )
    index_dir: Path = _setting(Path("var/index"), "folder of the vector index snapshots")
    index_kind: Literal["auto", "flat", "hnsw"] = _setting(
        "auto", "flat (exact), hnsw (approximate), or auto (hnsw from index_hnsw_min_rows)"
    )
    index_hnsw_min_rows: int = _setting(50_000, "rows from which auto builds an HNSW index", ge=1)
    index_snapshot_every_writes: int = _setting(
        10_000, "checkpoint the index after this many applied rows (0: never)", ge=0
    )
    index_snapshot_every_s: float = _setting(
        300.0, "checkpoint the index this often while it has unsaved rows (0: never)", ge=0
    )
    index_snapshot_retry_s: float = _setting(
        30.0,
        "after a failed checkpoint (disk full or read-only) serve from memory and retry this "
        "much later",
        gt=0,
    )
    max_search_k: int = _setting(100, "most neighbours one search may ask for", ge=1)
    index_threads: int = _setting(
        1, "FAISS OpenMP threads (one measured fastest on small servers)", ge=1
    )
    vector_store: Literal["faiss", "pgvector"] = _setting(
        "faiss",
        "where note vectors are searched: faiss (in each process, checkpointed to index_dir) "
        "or pgvector (in the PostgreSQL notes database; replicas hold no index)",
    )
    pgvector_hnsw_m: int = _setting(16, "pgvector: HNSW links per node (m)", ge=2, le=100)
    pgvector_ef_construction: int = _setting(
        64, "pgvector: HNSW candidate list while building (ef_construction)", ge=4, le=1000
    )
    pgvector_ef_search: int = _setting(
        100, "pgvector: HNSW candidate list per search (hnsw.ef_search)", ge=1, le=1000
    )
    pgvector_exact_max_rows: int = _setting(
        1_000,
        "pgvector: a search whose filter matches at most this many notes scores them all "
        "exactly instead of walking the HNSW graph",
        ge=0,
    )

    # -- promotion ------------------------------------------------------------------------
    promote_requires_complete_index: bool = _setting(
        True, "refuse a version whose index does not yet cover every stored note"
    )
    promotion_margin: float = _setting(
        0.005,
        "how much worse than the active version a candidate's suite metric may be on any task "
        "(absolute: 0.005 is half a macro-F1 point)",
        ge=0,
        allow_inf_nan=False,
    )
    promotion_task_margins: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = (
        _setting({}, 'per-task margins as JSON, e.g. {"medquad-retrieval": 0.01}')
    )
    promotion_requires_eval: bool = _setting(
        False,
        "refuse a promotion that cannot be compared with the active version (off: allowed, "
        "recorded as not comparable)",
    )

    # -- access ---------------------------------------------------------------------------
    quota_store: Literal["auto", "database", "process"] = _setting(
        "auto",
        "where per-key quotas are counted: database (shared by every replica; PostgreSQL "
        "only), process (this process alone), or auto (database on PostgreSQL)",
    )
    auth: Literal["auto", "on", "off"] = _setting(
        "auto", "API keys: auto is on beyond loopback; off is allowed on loopback only"
    )
    host: str = _setting("127.0.0.1", "interface to bind")
    port: int = _setting(8000, "port to listen on", ge=1, le=65535)
    api_docs: Literal["auto", "open", "key", "off"] = _setting(
        "auto", "/docs and /openapi.json: open, key (any valid key), off; auto: key when auth is on"
    )

    # -- inference ------------------------------------------------------------------------
    device: Device = _setting("cpu", "cpu, cuda, or auto (cuda when onnxruntime-gpu has a GPU)")
    intra_op_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        description="threads of one inference (default: every core)",
        ge=1,
    )
    max_batch_tokens: int = _setting(16384, "padded tokens per inference batch", ge=64)
    warmup: bool = _setting(True, "run a short and a full-length batch before serving")
    runtime: Runtime = _setting(
        "auto", "onnxruntime, openvino, or auto (the faster that can serve the bundle here)"
    )
    cpu_precision: CpuPrecision = _setting(
        "auto", "fp32, bf16 (OpenVINO on CPUs with bf16 units), or auto"
    )
    ort_cpu_arena: bool = _setting(
        True, "ONNX Runtime keeps the peak batch's buffers for reuse (off: lower idle memory)"
    )
    ort_thread_spinning: bool = _setting(
        True, "ONNX Runtime threads spin between ops (off on a box shared with other work)"
    )
    query_lane_max_tokens: int = _setting(
        512,
        "a request of at most this many window tokens runs at once on a second, single-thread "
        "model copy instead of queueing behind bulk batches (0: no lane, no copy)",
        ge=0,
    )

    # -- long notes -----------------------------------------------------------------------
    long_note_policy: LongNotePolicy = _setting(
        "chunk", "notes longer than a window: chunk (overlapping windows, pooled), truncate, reject"
    )
    window_overlap_tokens: int = _setting(32, "tokens shared by consecutive windows", ge=0)
    max_windows_per_note: int = _setting(256, "windows one note may become (beyond: 413)", ge=1)

    # -- limits, each answered with a clear 4xx / 503 ---------------------------------------
    max_body_bytes: int = _setting(16 * 1024 * 1024, "request body size (beyond: 413)", ge=1024)
    max_notes_per_request: int = _setting(256, "notes per request (beyond: 413)", ge=1)
    max_chars_per_note: int = _setting(200_000, "characters per note (beyond: 413)", ge=1)
    max_queue_tokens: int = _setting(
        131_072, "tokens waiting for the encoder (about 10-20 s of CPU work; beyond: 503)", ge=1
    )
    max_pending_requests: int = _setting(
        128, "requests admitted but not finished (beyond: 503 at once)", ge=1
    )
    request_deadline_ms: int = _setting(
        30_000,
        "longest wait in the queue for the encoder; once its turn comes a request runs to the "
        "end, so a 503 always means a busy queue",
        ge=1,
    )
    retry_after_s: int = _setting(1, "least Retry-After of a 503 for load", ge=1)
    max_request_tokens: int = _setting(
        65_536,
        "tokens one request may hold, as model windows (never more than max_queue_tokens; "
        "beyond: 413 saying how to split)",
        ge=1,
    )
    max_metadata_keys: int = _setting(32, "keys of a note's or a filter's metadata", ge=1)
    max_metadata_key_chars: int = _setting(64, "characters per metadata key", ge=1)
    max_metadata_value_chars: int = _setting(1024, "characters per metadata string value", ge=1)
    max_metadata_bytes: int = _setting(8192, "UTF-8 bytes of the metadata as JSON", ge=2)
    header_read_timeout_s: float = _setting(
        10.0,
        "a request's headers must arrive within this of the connection opening or the "
        "previous response (else 408, connection closed)",
        gt=0,
    )
    body_read_timeout_s: float = _setting(
        30.0, "a request's body must arrive within this of its headers (else 408)", gt=0
    )

    # -- the database -----------------------------------------------------------------------
    database_connect_timeout_s: float = _setting(
        5.0, "PostgreSQL: give up a connection attempt (or a wait for a pooled one) after", gt=0
    )
    database_statement_timeout_ms: int = _setting(
        30_000, "PostgreSQL: give up a statement after this (0: no limit)", ge=0
    )
    database_retry_after_s: int = _setting(
        5, "Retry-After of a 503 for an unavailable, busy or full database", ge=1
    )

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on" or (self.auth == "auto" and not is_loopback(self.host))

    @model_validator(mode="after")
    def _no_open_service_beyond_loopback(self) -> Settings:
        if self.auth == "off" and not is_loopback(self.host):
            raise ValueError(
                f"auth is off but the service would bind to {self.host}: "
                "auth may be off on loopback only"
            )
        return self

    @property
    def is_postgresql(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def quotas_shared(self) -> bool:
        """Whether quotas are counted in the database (every replica shares them)."""
        return self.quota_store == "database" or (self.quota_store == "auto" and self.is_postgresql)

    @model_validator(mode="after")
    def _shared_quotas_need_postgresql(self) -> Settings:
        if self.quota_store == "database" and not self.is_postgresql:
            raise ValueError("quota_store database needs a PostgreSQL database_url")
        return self

    @property
    def request_token_limit(self) -> int:
        return min(self.max_request_tokens, self.max_queue_tokens)

    @property
    def api_docs_access(self) -> Literal["open", "key", "off"]:
        if self.api_docs == "auto":
            return "key" if self.auth_enabled else "open"
        return self.api_docs

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> Settings:
        if self.max_queue_tokens < self.max_batch_tokens:
            raise ValueError("max_queue_tokens must be at least max_batch_tokens")
        return self

    @model_validator(mode="after")
    def _pgvector_needs_postgres(self) -> Settings:
        if self.vector_store == "pgvector" and not self.database_url.startswith("postgresql"):
            raise ValueError(
                "vector_store pgvector keeps vectors in PostgreSQL: database_url must be a "
                "postgresql:// URL"
            )
        return self

    @model_validator(mode="after")
    def _precision_fits_runtime(self) -> Settings:
        if self.cpu_precision == "bf16" and self.runtime == "onnxruntime":
            raise ValueError("cpu_precision bf16 needs runtime openvino (ONNX Runtime has no bf16)")
        if self.runtime == "openvino" and self.device == "cuda":
            raise ValueError("runtime openvino serves CPU only; use onnxruntime for device cuda")
        return self
