"""Index snapshots: one self-verifying file per model version, replaced atomically.

Layout (all integers little-endian):

    b"NSIDX\\x00v1"                 8-byte magic
    FAISS index bytes               exactly what faiss.serialize_index would return
    position ids                    int64 per FAISS position (-1 = tombstone)
    header                          UTF-8 JSON, see `SnapshotHeader`
    u64 header length, sha256(header), b"NSIDXEND"   48-byte footer

The header trails the payload so the index streams straight to disk while it is hashed:
no second in-memory copy of a collection that can be gigabytes. A load hashes the whole
payload before FAISS parses a byte of it, because FAISS trusts its input (a corrupt length
field can make it allocate without bound or crash the process).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import faiss
import numpy as np

from service.index.faiss_index import FaissVectorIndex, IndexConfig

FORMAT_VERSION = 1
_MAGIC = b"NSIDX\x00v1"
_END_MAGIC = b"NSIDXEND"
_FOOTER = struct.Struct("<Q32s8s")
_MAX_HEADER_BYTES = 1 << 20
_READ_CHUNK_BYTES = 16 << 20

# faiss-cpu's bundled stubs do not declare the Python callback reader/writer classes.
_faiss: Any = faiss


class SnapshotInvalid(Exception):
    """The snapshot cannot be used; the caller rebuilds the index from the database.

    `reason` is a short machine-readable cause (missing, truncated, checksum, model, dim, ...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class SnapshotHeader:
    format_version: int
    model_ref: str  # "name@version": vectors of different models never share an index
    dim: int
    count: int  # live rows
    sequence_watermark: int  # every DB change with sequence <= this is in the snapshot
    kind: str
    index_bytes: int
    ids_bytes: int
    payload_sha256: str  # over index + ids bytes
    created_unix_s: float


def write_snapshot(
    path: Path, index: FaissVectorIndex, *, model_ref: str, sequence_watermark: int
) -> SnapshotHeader:
    """Write `index` to `path` atomically; the previous snapshot stays until the rename.

    The caller must not apply writes with a sequence above `sequence_watermark` until this
    returns; the index itself holds its writers off while it is serialised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as out, index.frozen() as frozen:
            out.write(_MAGIC)
            digest = hashlib.sha256()
            index_bytes = 0

            def write_chunk(chunk: bytes) -> int:
                nonlocal index_bytes
                digest.update(chunk)
                out.write(chunk)
                index_bytes += len(chunk)
                return len(chunk)

            faiss.write_index(frozen.faiss_index, _faiss.PyCallbackIOWriter(write_chunk))
            ids = np.ascontiguousarray(frozen.position_ids, dtype="<i8").tobytes()
            digest.update(ids)
            out.write(ids)
            header = SnapshotHeader(
                format_version=FORMAT_VERSION,
                model_ref=model_ref,
                dim=int(frozen.faiss_index.d),
                count=frozen.live_rows,
                sequence_watermark=sequence_watermark,
                kind=index.kind,
                index_bytes=index_bytes,
                ids_bytes=len(ids),
                payload_sha256=digest.hexdigest(),
                created_unix_s=time.time(),
            )
            header_json = json.dumps(asdict(header), sort_keys=True).encode()
            out.write(header_json)
            header_sha = hashlib.sha256(header_json).digest()
            out.write(_FOOTER.pack(len(header_json), header_sha, _END_MAGIC))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)  # makes the rename itself durable
    return header


def read_header(path: Path) -> SnapshotHeader:
    """Parse and sanity-check the header alone (no payload hash): cheap, for `index stats`."""
    with _open(Path(path)) as handle:
        return _read_header(handle, os.fstat(handle.fileno()).st_size)


def load_snapshot(
    path: Path, *, model_ref: str, dim: int, config: IndexConfig | None = None
) -> tuple[FaissVectorIndex, SnapshotHeader]:
    """Load and verify; any mismatch or damage raises `SnapshotInvalid`."""
    with _open(Path(path)) as handle:
        size = os.fstat(handle.fileno()).st_size
        header = _read_header(handle, size)
        if header.model_ref != model_ref:
            raise SnapshotInvalid("model", f"snapshot is for {header.model_ref!r}")
        if header.dim != dim:
            raise SnapshotInvalid("dim", f"snapshot dim {header.dim}, expected {dim}")

        handle.seek(len(_MAGIC))
        digest = hashlib.sha256()
        remaining = header.index_bytes + header.ids_bytes
        while remaining:
            chunk = handle.read(min(remaining, _READ_CHUNK_BYTES))
            if not chunk:
                raise SnapshotInvalid("truncated")
            digest.update(chunk)
            remaining -= len(chunk)
        if digest.hexdigest() != header.payload_sha256:
            raise SnapshotInvalid("checksum")

        handle.seek(len(_MAGIC))
        reader = _BoundedReader(handle, header.index_bytes)
        try:
            faiss_index = faiss.read_index(_faiss.PyCallbackIOReader(reader.read))
        except RuntimeError as error:
            raise SnapshotInvalid("faiss", type(error).__name__) from error
        if reader.remaining:
            raise SnapshotInvalid("faiss", "index bytes not fully consumed")
        ids = np.frombuffer(handle.read(header.ids_bytes), dtype="<i8").astype(np.int64)

    if int(faiss_index.d) != dim:
        raise SnapshotInvalid("dim", "FAISS index dim differs from the header")
    try:
        index = FaissVectorIndex.from_faiss(faiss_index, ids, config)
    except ValueError as error:
        raise SnapshotInvalid("contents", str(error)) from error
    if len(index) != header.count:
        raise SnapshotInvalid("contents", "live row count differs from the header")
    return index, header


class _BoundedReader:
    """Feeds FAISS at most `limit` bytes, so a corrupt index cannot read into the trailer."""

    def __init__(self, handle: BinaryIO, limit: int) -> None:
        self._handle = handle
        self.remaining = limit

    def read(self, size: int) -> bytes:
        chunk = self._handle.read(min(size, self.remaining))
        self.remaining -= len(chunk)
        return chunk


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError as error:
        raise SnapshotInvalid("missing") from error
    except OSError as error:
        raise SnapshotInvalid("unreadable", type(error).__name__) from error


def _read_header(handle: BinaryIO, size: int) -> SnapshotHeader:
    if size < len(_MAGIC) + _FOOTER.size:
        raise SnapshotInvalid("truncated")
    if handle.read(len(_MAGIC)) != _MAGIC:
        raise SnapshotInvalid("magic")
    handle.seek(size - _FOOTER.size)
    header_len, header_sha, end_magic = _FOOTER.unpack(handle.read(_FOOTER.size))
    if end_magic != _END_MAGIC:
        raise SnapshotInvalid("truncated", "footer missing")
    if header_len > min(_MAX_HEADER_BYTES, size - len(_MAGIC) - _FOOTER.size):
        raise SnapshotInvalid("header", "length out of range")
    handle.seek(size - _FOOTER.size - header_len)
    header_json = handle.read(header_len)
    if hashlib.sha256(header_json).digest() != header_sha:
        raise SnapshotInvalid("checksum", "header")
    try:
        fields = json.loads(header_json)
        header = SnapshotHeader(**fields)
    except (ValueError, TypeError) as error:
        raise SnapshotInvalid("header", type(error).__name__) from error
    if header.format_version != FORMAT_VERSION:
        raise SnapshotInvalid("version", f"format {header.format_version}")
    ints = (
        header.dim,
        header.count,
        header.sequence_watermark,
        header.index_bytes,
        header.ids_bytes,
    )
    if not all(isinstance(value, int) and value >= 0 for value in ints):
        raise SnapshotInvalid("header", "negative or non-integer size")
    if len(_MAGIC) + header.index_bytes + header.ids_bytes + header_len + _FOOTER.size != size:
        raise SnapshotInvalid("truncated", "sizes do not add up")
    return header


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
