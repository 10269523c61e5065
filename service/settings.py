"""Service settings: one frozen object, read from NOTESPACE_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LongNotePolicy = Literal["chunk", "truncate", "reject"]
Device = Literal["cpu", "cuda", "auto"]
# Which runtime executes the bundle's ONNX graph: ONNX Runtime (always installed) or the
# OpenVINO runtime (extra `notespace[openvino]`, CPU only). `auto` takes the faster one that
# can serve the bundle on this machine (service/inference/runtime_choice.py).
Runtime = Literal["auto", "onnxruntime", "openvino"]
# Arithmetic precision on CPU. bf16 runs fp32 bundles on the CPU's bf16 units (AVX512-BF16 /
# AMX) through OpenVINO; ONNX Runtime has no bf16 CPU kernels, so bf16 needs OpenVINO. `auto`
# takes bf16 exactly when OpenVINO serves and the CPU has bf16 units.
CpuPrecision = Literal["auto", "fp32", "bf16"]


class Settings(BaseSettings):
    """Everything the service can be told. Every limit is here and is shown by GET /info."""

    model_config = SettingsConfigDict(env_prefix="NOTESPACE_", frozen=True, extra="forbid")

    # Where the model bundle lives (the zero-config quickstart exports it here).
    bundle_path: Path = Path("bundles/all-MiniLM-L6-v2")

    # The registry database: a SQLite file on one box, PostgreSQL in docker-compose.
    database_url: str = "sqlite:///var/notespace.db"
    # Serve the active version of this model name (needed only when several names are active).
    model_name: str | None = None
    # How often the service looks for a promotion made elsewhere (CLI, another replica).
    registry_poll_s: float = Field(default=5.0, gt=0)

    # Notes and search. Text storage lets a newly promoted model re-embed every note; trusts
    # that forbid a copy of the text turn it off (a rebuild then needs the notes re-sent).
    store_note_text: bool = True
    index_dir: Path = Path("var/index")
    index_kind: Literal["auto", "flat", "hnsw"] = "auto"
    index_hnsw_min_rows: int = Field(default=50_000, ge=1)
    index_snapshot_every_writes: int = Field(default=10_000, ge=0)
    index_snapshot_every_s: float = Field(default=300.0, ge=0)
    # After a failed checkpoint (index disk full or read-only) the service serves from memory
    # and tries again this much later (/info reports it meanwhile).
    index_snapshot_retry_s: float = Field(default=30.0, gt=0)
    max_search_k: int = Field(default=100, ge=1)
    # FAISS's OpenMP threads: one measured fastest on small servers (bench/index_bench.py).
    index_threads: int = Field(default=1, ge=1)
    # Promotion refuses a version whose index does not yet cover every stored note.
    promote_requires_complete_index: bool = True
    # The promotion guard (service/registry/promotion_guard.py): a version whose evaluation
    # suite's primary metric is worse than the active version's by more than the margin, on
    # any task, is refused. Absolute units of the metric: 0.005 is half a macro-F1 point.
    promotion_margin: float = Field(default=0.005, ge=0, allow_inf_nan=False)
    # Per-task margins, e.g. {"medquad-retrieval": 0.01} (JSON in the environment).
    promotion_task_margins: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}
    # Refuse a promotion that cannot be compared (no suite results, different suites) when
    # there is an active version to compare against; off: allowed and recorded "not comparable".
    promotion_requires_eval: bool = False

    # API keys: "auto" is on whenever the service binds beyond loopback; "off" is allowed on
    # loopback only (the quick start), "on" always.
    auth: Literal["auto", "on", "off"] = "auto"

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Inference.
    device: Device = "cpu"
    intra_op_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_batch_tokens: int = Field(default=16384, ge=64)
    warmup: bool = True
    runtime: Runtime = "auto"
    cpu_precision: CpuPrecision = "auto"
    # ONNX Runtime's CPU memory arena keeps the peak batch's buffers for reuse; off, freed
    # buffers go back to the allocator (lower idle memory, measured in docs/benchmarks.md).
    ort_cpu_arena: bool = True
    # Intra-op threads spin between ops; on a shared box that steals cores from tokenisation.
    ort_thread_spinning: bool = True
    # The query lane: a request of at most this many window tokens (a search query, a short
    # note) skips the batch queue and runs at once on a second, single-thread copy of the
    # model, so it is not stuck behind a bulk batch (one such batch takes up to a second on
    # CPU). One lane request at a time; others queue as usual. 0: no lane, no second copy.
    query_lane_max_tokens: int = Field(default=512, ge=0)

    # Long notes.
    long_note_policy: LongNotePolicy = "chunk"
    window_overlap_tokens: int = Field(default=32, ge=0)
    max_windows_per_note: int = Field(default=256, ge=1)

    # Limits, each answered with a clear 4xx / 503.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_notes_per_request: int = Field(default=256, ge=1)
    max_chars_per_note: int = Field(default=200_000, ge=1)
    # About 10-20 s of work at CPU speed: more would only wait past the deadline.
    max_queue_tokens: int = Field(default=131_072, ge=1)
    # Requests admitted but not finished (tokenising, queued, running); beyond it, 503 at once.
    max_pending_requests: int = Field(default=128, ge=1)
    # The longest a request waits in the queue for the encoder. Once its turn comes it runs to
    # the end, however large, so a request is never refused for its own size (that is what
    # max_request_tokens is for): a 503 always means a busy queue, and retrying works.
    request_deadline_ms: int = Field(default=30_000, ge=1)
    retry_after_s: int = Field(default=1, ge=1)
    # Tokens one request may hold (every window, special tokens included; never more than
    # max_queue_tokens): beyond it, 413 saying how many notes to send per request. About 85
    # typical MTSamples notes.
    max_request_tokens: int = Field(default=65_536, ge=1)
    # Metadata of a note or a search filter: keys, characters per key and per string value,
    # and UTF-8 bytes of the whole object as JSON; beyond any of them, 413.
    max_metadata_keys: int = Field(default=32, ge=1)
    max_metadata_key_chars: int = Field(default=64, ge=1)
    max_metadata_value_chars: int = Field(default=1024, ge=1)
    max_metadata_bytes: int = Field(default=8192, ge=2)
    # Slow clients: a request's headers must arrive within header_read_timeout_s (of the
    # connection opening or the previous response), its body within body_read_timeout_s of
    # the headers; otherwise 408 and the connection is closed.
    header_read_timeout_s: float = Field(default=10.0, gt=0)
    body_read_timeout_s: float = Field(default=30.0, gt=0)

    # The database. PostgreSQL: a connection attempt (and a wait for a pooled connection) gives
    # up after database_connect_timeout_s, a statement after database_statement_timeout_ms
    # (0: no limit). An unavailable, busy or full database answers 503 with this Retry-After.
    database_connect_timeout_s: float = Field(default=5.0, gt=0)
    database_statement_timeout_ms: int = Field(default=30_000, ge=0)
    database_retry_after_s: int = Field(default=5, ge=1)

    # /docs, /redoc and /openapi.json: "open" to anyone, "key" for any valid API key, "off".
    # "auto": open when auth is off, "key" when it is on.
    api_docs: Literal["auto", "open", "key", "off"] = "auto"

    @property
    def auth_enabled(self) -> bool:
        from service.security import is_loopback

        return self.auth == "on" or (self.auth == "auto" and not is_loopback(self.host))

    @model_validator(mode="after")
    def _no_open_service_beyond_loopback(self) -> Settings:
        from service.security import is_loopback

        if self.auth == "off" and not is_loopback(self.host):
            raise ValueError(
                f"auth is off but the service would bind to {self.host}: "
                "auth may be off on loopback only"
            )
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
    def _precision_fits_runtime(self) -> Settings:
        if self.cpu_precision == "bf16" and self.runtime == "onnxruntime":
            raise ValueError("cpu_precision bf16 needs runtime openvino (ONNX Runtime has no bf16)")
        if self.runtime == "openvino" and self.device == "cuda":
            raise ValueError("runtime openvino serves CPU only; use onnxruntime for device cuda")
        return self
