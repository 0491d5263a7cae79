"""The LFS object store: content addressed by sha256, verified on arrival, moved into place atomically.

Layout: `<root>/objects/ab/cd/<sha256>`; uploads stream into `<tmp_dir>` (default `<root>/../tmp`,
i.e. `DATA/tmp`) while being hashed, and `os.replace` publishes them only if hash and size match.
An object may hold at most `max_object_size` bytes (default 50 GB): a larger announced size is
refused (LfsTooLargeError, 413) before anything is written. Uploads cut short by a killed process
leave their temp file behind: `sweep_tmp()` removes them (call it at start, before serving).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterable, Iterable
from pathlib import Path

from .errors import LfsObjectMissing, LfsTooLargeError, LfsVerifyError

_OID = re.compile(r"[0-9a-f]{64}")
POINTER_VERSION = "https://git-lfs.github.com/spec/v1"
MAX_POINTER_SIZE = 1024  # git-lfs: pointer files are always smaller than this
_FLUSH = 4 << 20  # async uploads: write to disk in batches of this many bytes
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


class _Upload:
    """A temp file being written and hashed; `finish` verifies and publishes it."""

    def __init__(self, store: LfsStore, oid: str, size: int):
        self.store, self.oid, self.size = store, oid, size
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"lfs-{oid[:12]}-", dir=store.tmp_dir)
        self.tmp = Path(name)
        self.file = os.fdopen(fd, "wb", buffering=0)
        self.hasher = hashlib.sha256()
        self.received = 0

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.received += len(chunk)
        if self.received > self.size:
            raise LfsVerifyError(
                f"Upload of {self.oid} is larger than the announced {self.size} bytes; nothing stored."
            )
        self.hasher.update(chunk)
        self.file.write(chunk)

    def write_many(self, parts: list[bytes]) -> None:
        """Write a batch of chunks (from a worker thread: hashing and writing release the GIL)."""
        for part in parts:
            self.write(part)

    def finish(self) -> None:
        if self.received != self.size:
            raise LfsVerifyError(
                f"Upload of {self.oid} has {self.received} bytes, expected {self.size}; nothing stored."
            )
        digest = self.hasher.hexdigest()
        if digest != self.oid:
            raise LfsVerifyError(
                f"Uploaded bytes hash to sha256 {digest}, not the announced {self.oid}; nothing stored."
            )
        if self.store.fsync:
            os.fsync(self.file.fileno())
        self.file.close()
        dest = self.store.path(self.oid)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tmp, 0o444)
        os.replace(self.tmp, dest)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


class LfsStore:
    """sha256-addressed object store under `root` (normally `DATA/lfs`)."""

    def __init__(
        self,
        root: Path,
        *,
        tmp_dir: Path | None = None,
        fsync: bool = False,
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
    ):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.tmp_dir = Path(tmp_dir) if tmp_dir is not None else self.root.parent / "tmp"
        self.fsync = fsync
        if not isinstance(max_object_size, int) or max_object_size < 1:
            raise ValueError(f"max_object_size must be a positive number of bytes, not {max_object_size!r}")
        self.max_object_size = max_object_size

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
        """Empty `tmp_dir` (DATA/tmp: uploads in progress) of what a killed process left there;
        returns how many entries were removed. Call it at start, before serving: an upload in
        progress would lose its file."""
        removed = 0
        if self.tmp_dir.is_dir():
            for leftover in self.tmp_dir.iterdir():
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
                removed += 1
        return removed

    def path(self, oid: str) -> Path:
        """Where the object lives (whether or not it is stored yet)."""
        check_oid(oid)
        return self.objects / oid[:2] / oid[2:4] / oid

    def has(self, oid: str) -> bool:
        try:
            return self.path(oid).is_file()
        except LfsVerifyError:
            return False

    def size(self, oid: str) -> int:
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            raise LfsObjectMissing(f"LFS object {oid} is not in the store: upload it first.") from None

    def open(self, oid: str):
        """Open a stored object for reading (binary); raises LfsObjectMissing."""
        try:
            return open(self.path(oid), "rb")
        except FileNotFoundError:
            raise LfsObjectMissing(f"LFS object {oid} is not in the store: upload it first.") from None

    def _begin(self, oid: str, size: int) -> _Upload | None:
        check_oid(oid)
        self.check_size(size)
        if self.has(oid):
            if self.size(oid) != size:
                raise LfsVerifyError(f"Object {oid} is stored with size {self.size(oid)}, not {size}.")
            return None  # content addressed and verified on arrival: nothing to do
        return _Upload(self, oid, size)

    def put(self, oid: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an object from a stream of chunks, hashing while writing. Raises LfsVerifyError
        (and stores nothing) if the bytes do not have this sha256 and size."""
        upload = self._begin(oid, size)
        if upload is None:
            return
        try:
            for chunk in chunks:
                upload.write(chunk)
            upload.finish()
        except BaseException:
            upload.abort()
            raise

    async def put_async(self, oid: str, size: int, chunks: AsyncIterable[bytes]) -> None:
        """`put` for a request stream. Hashing and disk writes run in a worker thread, one 4 MB
        batch at a time, while the event loop keeps receiving the next batch."""
        upload = self._begin(oid, size)
        if upload is None:
            return
        parts: list[bytes] = []
        buffered = received = 0
        pending: asyncio.Future | None = None
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > size:
                    raise LfsVerifyError(
                        f"Upload of {oid} is larger than the announced {size} bytes; nothing stored."
                    )
                parts.append(chunk)
                buffered += len(chunk)
                if buffered >= _FLUSH:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(asyncio.to_thread(upload.write_many, parts))
                    parts, buffered = [], 0
            if pending is not None:
                await pending
                pending = None
            if parts:
                await asyncio.to_thread(upload.write_many, parts)
            await asyncio.to_thread(upload.finish)
        except BaseException:
            if pending is not None:  # let the worker finish with the file before removing it
                await asyncio.wait([pending])
            upload.abort()
            raise

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
