"""The LFS object store: content addressed by sha256, verified on arrival, published atomically.

Objects live in a blob store (blobs.py) under the keys `lfs/<sha256>`: by default local files at
`DATA/lfs/objects/ab/cd/<sha256>`, with uploads streamed into `DATA/tmp`; or an S3 bucket
(`--blob-store s3://...`). Uploads are hashed while they stream and published only if hash and
size match. An object may hold at most `max_object_size` bytes (default 50 GB): a larger
announced size is refused (LfsTooLargeError, 413) before anything is written. Uploads cut short by
a killed process leave temporary files (or multipart uploads) behind: `sweep_tmp()` removes them
(call it at start, before serving).

Object sources (`add_source`) answer for objects the store does not hold itself, e.g. files
uploaded through Xet and reconstructed from their xorbs: `has`, `size`, `read` and `open` fall
through to them, so commits, the LFS batch API and `resolve` serve those files too.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from .blobs import BlobIntegrityError, BlobNotFound, BlobStore, LocalBlobStore
from .errors import LfsObjectMissing, LfsTooLargeError, LfsVerifyError

_OID = re.compile(r"[0-9a-f]{64}")
POINTER_VERSION = "https://git-lfs.github.com/spec/v1"
MAX_POINTER_SIZE = 1024  # git-lfs: pointer files are always smaller than this
_FLUSH = 4 << 20  # async uploads: hand the bytes to the writing thread in batches of this many
DEFAULT_MAX_OBJECT_SIZE = 50 * 10**9  # 50 GB, the public Hub's per-file limit


def check_oid(oid: str) -> str:
    if not isinstance(oid, str) or not _OID.fullmatch(oid):
        raise LfsVerifyError(f"Invalid LFS oid {oid!r}: expected 64 lowercase hex digits (sha256).")
    return oid


def format_pointer(oid: str, size: int) -> bytes:
    """The git-lfs pointer blob for an object."""
    return f"version {POINTER_VERSION}\noid sha256:{oid}\nsize {size}\n".encode()


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """(oid, size) if `data` is a git-lfs pointer, else None."""
    if len(data) >= MAX_POINTER_SIZE or not data.startswith(b"version https://git-lfs"):
        return None
    oid = size = None
    for line in data.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "oid" and value.startswith("sha256:"):
            oid = value[7:]
        elif key == "size" and value.isdigit():
            size = int(value)
    if oid is None or size is None or not _OID.fullmatch(oid):
        return None
    return oid, size


class ObjectSource(Protocol):
    """Produces the bytes of LFS objects the store does not hold itself (by sha256 of the file)."""

    def has(self, oid: str) -> bool: ...
    def size(self, oid: str) -> int: ...
    def read(self, oid: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...


def _key(oid: str) -> str:
    return f"lfs/{check_oid(oid)}"


class LfsStore:
    """sha256-addressed objects in a blob store, plus the object sources added to it.

    `LfsStore(DATA / "lfs")` keeps local files under DATA (objects in DATA/lfs/objects, temporary
    files in `tmp_dir`, default DATA/tmp, fsynced before publishing if `fsync`); `blobs=` gives
    another store (such as S3), which has settings of its own."""

    def __init__(
        self,
        root: Path,
        *,
        tmp_dir: Path | None = None,
        fsync: bool = False,
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
        blobs: BlobStore | None = None,
    ):
        self.root = Path(root)
        if blobs is None:
            if self.root.name != "lfs":
                raise ValueError(f"LfsStore({str(root)!r}): local objects live in DATA/lfs; give that folder")
            blobs = LocalBlobStore(self.root.parent, tmp_dir=tmp_dir, fsync=fsync)
        elif tmp_dir is not None or fsync:
            raise ValueError("tmp_dir and fsync are settings of the local store; give them to the blob store")
        self.blobs = blobs
        self.sources: list[ObjectSource] = []
        if not isinstance(max_object_size, int) or max_object_size < 1:
            raise ValueError(f"max_object_size must be a positive number of bytes, not {max_object_size!r}")
        self.max_object_size = max_object_size

    def add_source(self, source: ObjectSource) -> None:
        """Answer also for the objects `source` can produce (asked after the blob store)."""
        self.sources.append(source)

    def check_size(self, size: int) -> int:
        """`size` if an object of that many bytes may be stored; LfsVerifyError (400) for a size that
        is not a non-negative integer, LfsTooLargeError (413) above `max_object_size`."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise LfsVerifyError(f"Invalid LFS size {size!r}: expected a non-negative integer.")
        if size > self.max_object_size:
            raise LfsTooLargeError(
                f"Object of {size} bytes is larger than this hub's limit of {self.max_object_size} bytes per "
                "file: split it (for example into safetensors shards) or ask the admin to raise "
                "HAVEN_MAX_LFS_OBJECT."
            )
        return size

    def sweep_tmp(self) -> int:
        """Remove what uploads of a killed process left (see the blob store's `sweep_tmp`); returns
        how many. Call it at start, before serving: an upload in progress would lose its file."""
        return self.blobs.sweep_tmp()

    def path(self, oid: str) -> Path:
        """Where a local store keeps the object (whether or not it is stored yet)."""
        if not isinstance(self.blobs, LocalBlobStore):
            raise TypeError(f"{self.blobs!r} keeps no local files: read objects with `read` or `open`")
        return self.blobs.path(_key(oid))

    def holds(self, oid: str) -> bool:
        """Whether the blob store itself holds the object (not only a source)."""
        try:
            return self.blobs.exists(_key(oid))
        except LfsVerifyError:
            return False

    def _source(self, oid: str) -> ObjectSource | None:
        return next((s for s in self.sources if s.has(oid)), None)

    def has(self, oid: str) -> bool:
        return self.holds(oid) or (_OID.fullmatch(oid or "") is not None and self._source(oid) is not None)

    def _missing(self, oid: str) -> LfsObjectMissing:
        return LfsObjectMissing(f"LFS object {oid} is not in the store: upload it first.")

    def size(self, oid: str) -> int:
        try:
            return self.blobs.size(_key(oid))
        except BlobNotFound:
            source = self._source(oid)
            if source is None:
                raise self._missing(oid) from None
            return source.size(oid)

    def read(self, oid: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The object's bytes [start, end), from the blob store or a source; LfsObjectMissing."""
        try:
            return self.blobs.read(_key(oid), start, end)
        except BlobNotFound:
            source = self._source(oid)
            if source is None:
                raise self._missing(oid) from None
            return source.read(oid, start, end)

    def open(self, oid: str) -> BinaryIO:
        """Open a stored object for reading (binary); raises LfsObjectMissing."""
        path = self.local_path(oid)
        if path is not None:
            return open(path, "rb")
        return io.BufferedReader(_IterReader(self.read(oid)), buffer_size=1 << 20)

    def local_path(self, oid: str) -> Path | None:
        """The local file holding the object, or None where it is not a local file (an S3 store, a
        source); LfsObjectMissing when no one has it."""
        try:
            return self.blobs.local_path(_key(oid))
        except BlobNotFound:
            if self._source(oid) is None:
                raise self._missing(oid) from None
            return None

    def download_url(self, oid: str, *, expires: int, filename: str | None = None) -> str | None:
        """A URL the client fetches the object from directly (a presigned S3 GET), or None when Haven
        serves the bytes itself."""
        return self.blobs.presigned_url(_key(oid), expires=expires, filename=filename) if self.holds(oid) else None

    def _needed(self, oid: str, size: int) -> bool:
        check_oid(oid)
        self.check_size(size)
        if self.has(oid):
            if self.size(oid) != size:
                raise LfsVerifyError(f"Object {oid} is stored with size {self.size(oid)}, not {size}.")
            return False  # content addressed and verified on arrival: nothing to do
        return True

    def put(self, oid: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an object from a stream of chunks, hashing while writing. Raises LfsVerifyError
        (and stores nothing) if the bytes do not have this sha256 and size."""
        if not self._needed(oid, size):
            return
        try:
            self.blobs.put(_key(oid), _sized(oid, size, chunks), sha256=oid)
        except BlobIntegrityError as err:
            raise LfsVerifyError(str(err)) from None

    async def put_async(self, oid: str, size: int, chunks: AsyncIterable[bytes]) -> None:
        """`put` for a request stream: the blob store writes in a worker thread, which takes the
        bytes in 4 MB batches while the event loop already receives the next batch."""
        if not self._needed(oid, size):
            return
        loop = asyncio.get_running_loop()
        batches = _Prefetch(chunks)

        def pull() -> Iterator[bytes]:
            while parts := asyncio.run_coroutine_threadsafe(batches.next(), loop).result():
                yield from parts

        work = asyncio.ensure_future(asyncio.to_thread(self.put, oid, size, pull()))
        try:
            await asyncio.shield(work)
        finally:
            batches.cancel()  # a worker still waiting for bytes stops, and aborts the upload
            if not work.done():
                await asyncio.wait([work])

    def put_file(self, src: Path) -> tuple[str, int]:
        """Hash and store a local file (used by tests and admin tools); returns (oid, size)."""
        hasher = hashlib.sha256()
        with open(src, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                hasher.update(block)
        oid, size = hasher.hexdigest(), Path(src).stat().st_size
        with open(src, "rb") as f:
            self.put(oid, size, iter(lambda: f.read(1 << 20), b""))
        return oid, size


def _sized(oid: str, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks`, refused (LfsVerifyError, raised into the writer so it stores nothing) as soon as
    they pass `size` bytes, or at the end when they fall short."""
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > size:
            raise LfsVerifyError(f"Upload of {oid} is larger than the announced {size} bytes; nothing stored.")
        yield chunk
    if received != size:
        raise LfsVerifyError(f"Upload of {oid} has {received} bytes, expected {size}; nothing stored.")


class _Prefetch:
    """Batches of about 4 MB from an async stream, the next one read ahead while the last is written."""

    def __init__(self, chunks: AsyncIterable[bytes]):
        self.chunks: AsyncIterator[bytes] = chunks.__aiter__()
        self.ahead: asyncio.Future | None = None

    async def _read(self) -> list[bytes]:
        parts, buffered = [], 0
        while buffered < _FLUSH:
            try:
                chunk = await self.chunks.__anext__()
            except StopAsyncIteration:
                break
            parts.append(chunk)
            buffered += len(chunk)
        return parts

    async def next(self) -> list[bytes]:
        if self.ahead is None:
            self.ahead = asyncio.ensure_future(self._read())
        parts = await self.ahead
        self.ahead = asyncio.ensure_future(self._read()) if parts else None
        return parts

    def cancel(self) -> None:
        if self.ahead is not None:
            self.ahead.cancel()
            self.ahead.add_done_callback(lambda f: f.cancelled() or f.exception())


class _IterReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.pending = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            try:
                self.pending = memoryview(next(self.chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
        super().close()
