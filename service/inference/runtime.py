"""One model version, loaded and ready to run: manifest, tokenizer, encoder (and its head)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from service.bundle import Bundle, Manifest
from service.inference.config import LongNotePolicy, RuntimeConfig
from service.inference.head import CategoryHead, load_head
from service.inference.onnx_encoder import OnnxEncoder
from service.inference.openvino_encoder import OpenVinoEncoder
from service.inference.runtime_choice import RuntimeChoice, bundle_kind, choose_runtime
from service.inference.tokenize import NoteTokenizer
from service.inference.window_encoder import WindowEncoder
from service.inference.windows import Vectors, encode_windows, pool_notes

log = logging.getLogger(__name__)

# Warm-up text: synthetic, so nothing clinical is ever embedded before a real request.
_WARMUP_TEXT = "warm up the encoder with a synthetic sentence of ordinary words. "


@dataclass(frozen=True)
class ModelRuntime:
    """One model version, ready to run: its manifest, tokenizer and encoder belong together."""

    manifest: Manifest
    tokenizer: NoteTokenizer
    encoder: WindowEncoder
    providers: tuple[str, ...] = ()
    version_id: int | None = None  # the registry row this runtime was loaded from
    head: CategoryHead | None = None  # the bundle's optional note-category head
    # A second, single-thread copy of the model for the query lane (None: no lane). Its own
    # compiled model / session: sharing the bulk one would queue a query behind the batch
    # running on it.
    lane_encoder: WindowEncoder | None = None

    def embed_sync(
        self, texts: list[str], policy: LongNotePolicy, max_batch_tokens: int
    ) -> Vectors:
        """Embed without the batcher (offline jobs such as an index rebuild)."""
        notes = self.tokenizer.tokenize(texts, policy)
        (window_vectors,) = encode_windows(
            self.encoder,
            [notes],
            pad_token_id=self.tokenizer.pad_token_id,
            max_batch_tokens=max_batch_tokens,
        )
        return pool_notes(notes, window_vectors)

    @classmethod
    def load(
        cls, bundle: Bundle, config: RuntimeConfig, version_id: int | None = None
    ) -> ModelRuntime:
        """Load (and, if the config says so, warm up) a verified bundle."""
        tokenizer = NoteTokenizer(
            bundle.tokenizer_path,
            max_tokens=bundle.manifest.max_tokens,
            overlap_tokens=config.window.overlap_tokens,
            max_windows_per_note=config.window.max_windows_per_note,
        )
        choice = choose_runtime(config, bundle_kind(bundle.manifest))
        log.info(
            "%s serves on %s (%s): %s",
            bundle.manifest.ref,
            choice.runtime,
            choice.precision,
            choice.reason,
        )
        encoder = _make_encoder(bundle, config, choice, config.intra_op_threads)
        lane = _make_encoder(bundle, config, choice, 1) if config.query_lane else None
        runtime = cls(
            manifest=bundle.manifest,
            tokenizer=tokenizer,
            encoder=encoder,
            providers=tuple(encoder.active_providers),
            version_id=version_id,
            head=load_head(bundle),
            lane_encoder=lane,
        )
        if config.warmup:
            runtime.warm_up()
        return runtime

    def warm_up(self) -> None:
        """Run a short and a full-length batch so first requests do not pay for allocation."""
        encoders = (
            [self.encoder] if self.lane_encoder is None else [self.encoder, self.lane_encoder]
        )
        for repeats in (1, 10_000):
            notes = self.tokenizer.tokenize([_WARMUP_TEXT * repeats], "truncate")
            window = notes[0].windows[0]
            ids = window.reshape(1, -1).repeat(2, axis=0)
            for encoder in encoders:
                encoder.encode(ids, np.ones_like(ids))


def _make_encoder(
    bundle: Bundle, config: RuntimeConfig, choice: RuntimeChoice, threads: int
) -> OnnxEncoder | OpenVinoEncoder:
    if choice.runtime == "openvino":
        return OpenVinoEncoder(
            bundle,
            precision=choice.precision,
            threads=threads,
            float_precision=config.cpu_precision,
        )
    return OnnxEncoder(
        bundle,
        device=config.device,
        intra_op_threads=threads,
        cpu_arena=config.ort_cpu_arena,
        thread_spinning=config.ort_thread_spinning,
    )
