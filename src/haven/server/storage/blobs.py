"""One store for Haven's large bytes (LFS objects, Xet xorbs and shards), with two backends.

Keys are slash-separated names such as `lfs/<sha256>`, `xet/xorbs/<hash>`, `xet/shards/<hash>`.
Every backend streams writes into a temporary object, checks a sha256 when the caller gives one,
and publishes the key only when the bytes are complete and verified: a reader never sees half an
object, and a failed upload leaves nothing behind. Objects are immutable: putting an existing key
is a no-op.

- `LocalBlobStore` (the default): files under the data directory. A key `<area>/<sub...>/<name>`
  lives at `<root>/<area>/objects/<sub...>/<name[:2]>/<name[2:4]>/<name>`, so LFS objects keep the
  layout Haven has always used (`DATA/lfs/objects/ab/cd/<oid>`); uploads stream into a folder of
  this process under `DATA/tmp`, which it holds locked (flock) while it lives: processes sharing a
  data directory (a hub and its CAS, two hubs) sweep only what dead ones left.
- `S3BlobStore` (`s3_blobs.py`): an S3-compatible bucket through boto3; downloads are presigned GET
  URLs so the bytes do not pass through Haven, uploads are multipart uploads.

`open_blob_store(spec, data_dir)` picks one from the `--blob-store` setting; `usage(store, prefix)`
sums what a prefix holds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

READ_BLOCK = 1 << 20  # bytes per chunk yielded by `read`
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class BlobEntry(NamedTuple):
    key: str
    size: int
    modified: float  # seconds since the epoch: when the object was stored


class BlobNotFound(KeyError):
    """The key is not in the store."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else "blob not found"


class BlobIntegrityError(ValueError):
    """The bytes of a `put` do not hash to the sha256 the caller announced; nothing was stored."""


class BlobStoreError(RuntimeError):
    """The store cannot be used as configured (a bad `--blob-store` value, a missing bucket,
    rejected credentials); the message names the setting to fix."""


@runtime_checkable
class BlobStore(Protocol):
    def put(self, key: str, chunks: Iterable[bytes], *, sha256: str | None = None) -> int: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...
    def presigned_url(self, key: str, *, expires: int, filename: str | None = None) -> str | None: ...
    def local_path(self, key: str) -> Path | None: ...
    def entries(self, prefix: str) -> Iterator[BlobEntry]: ...
    def sweep_tmp(self) -> int: ...


def usage(store: BlobStore, prefix: str) -> tuple[int, int]:
    """(objects, bytes) stored under `prefix`."""
    count = total = 0
    for entry in store.entries(prefix):
        count += 1
        total += entry.size
    return count, total


def check_key(key: str) -> str:
    """`key` if it is a valid store key (segments of letters, digits, '.', '_', '-', not starting
    with '.'), else ValueError."""
    if not isinstance(key, str) or not key or not all(_SEGMENT.fullmatch(s) for s in key.split("/")):
        raise ValueError(f"Invalid blob key {key!r}: use slash-separated names such as 'lfs/<sha256>'.")
    return key


def check_range(start: int, end: int | None, size: int, key: str) -> int:
    """The exclusive end of a read of [start, end) from an object of `size` bytes (ValueError when
    the range is not inside the object)."""
    end = size if end is None else end
    if not 0 <= start <= end <= size:
        raise ValueError(f"Range [{start}, {end}) is outside {key} ({size} bytes).")
    return end


class _Hashing:
    """Counts and (when a sha256 is expected) hashes the chunks of a put."""

    def __init__(self, key: str, sha256: str | None):
        self.key, self.expected = key, sha256
        self.hasher = hashlib.sha256() if sha256 is not None else None
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.hasher is not None:
            self.hasher.update(chunk)

    def verify(self) -> None:
        if self.hasher is not None and self.hasher.hexdigest() != self.expected:
            raise BlobIntegrityError(
                f"The bytes for {self.key} hash to sha256 {self.hasher.hexdigest()}, not the announced "
                f"{self.expected}; nothing stored."
            )


class LocalBlobStore:
    """Files under `root` (the data directory); temporary files in `tmp_dir` (default root/tmp)."""

    def __init__(self, root: Path, *, tmp_dir: Path | None = None, fsync: bool = False):
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir) if tmp_dir is not None else self.root / "tmp"
        self.fsync = fsync
        self._own_tmp: Path | None = None
        self._own_lock = threading.Lock()
        self._own_fd: int | None = None  # holds the flock on `_own_tmp` for the process's life

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Where `key` lives, whether or not it is stored yet."""
        parts = check_key(key).split("/")
        if len(parts) < 2:
            raise ValueError(f"Invalid blob key {key!r}: it needs an area, as in 'lfs/<sha256>'.")
        area, *sub, name = parts
        return self.root.joinpath(area, "objects", *sub, name[:2], name[2:4], name)

    def put(self, key: str, chunks: Iterable[bytes], *, sha256: str | None = None) -> int:
        dest = self.path(key)
        if dest.is_file():
            return dest.stat().st_size
        fd, name = tempfile.mkstemp(prefix="blob-", dir=self._process_tmp())
        tmp, state = Path(name), _Hashing(key, sha256)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                for chunk in chunks:
                    state.update(chunk)
                    f.write(chunk)
                state.verify()
                if self.fsync:
                    os.fsync(f.fileno())
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            if not _publish(tmp, dest):  # another put of the key published first: its bytes stay
                return dest.stat().st_size
        finally:
            tmp.unlink(missing_ok=True)
        return state.size

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except ValueError:
            return False

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"{key} is not in the blob store.") from None

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end) of `key` in chunks. Opens the file now (BlobNotFound, ValueError for
        a range outside the object), reads it as the iterator is consumed."""
        try:
            f = open(self.path(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise BlobNotFound(f"{key} is not in the blob store.") from None
        try:
            stop = check_range(start, end, os.fstat(f.fileno()).st_size, key)
        except BaseException:
            f.close()
            raise
        return _read_file(f, start, stop)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def presigned_url(self, key: str, *, expires: int, filename: str | None = None) -> str | None:
        return None  # Haven serves local bytes itself

    def local_path(self, key: str) -> Path | None:
        """The file holding `key` (BlobNotFound if it is not stored)."""
        path = self.path(key)
        if not path.is_file():
            raise BlobNotFound(f"{key} is not in the blob store.")
        return path

    def entries(self, prefix: str) -> Iterator[BlobEntry]:
        """Every stored key starting with `prefix` (which names at least an area, e.g. 'lfs/' or
        'xet/xorbs/'), with its size and time stored."""
        area = prefix.split("/", 1)[0]
        if not area:
            raise ValueError(f"entries({prefix!r}): the prefix must start with an area such as 'lfs/'.")
        base = self.root / area / "objects"
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(base).parts[:-2]  # drop the two fan-out levels
            for name in files:
                key = "/".join((area, *rel, name))
                if key.startswith(prefix):
                    st = os.stat(os.path.join(dirpath, name))
                    yield BlobEntry(key, st.st_size, st.st_mtime)

    def _process_tmp(self) -> Path:
        """This process's folder under `tmp_dir`, made and locked on first use. It is made under a
        `.new-` name and renamed once locked, so no sweep can take it for a dead process's."""
        with self._own_lock:
            if self._own_tmp is None or not self._own_tmp.is_dir():
                self.tmp_dir.mkdir(parents=True, exist_ok=True)
                fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=self.tmp_dir))
                fd = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                own = fresh.with_name(PROCESS_TMP_PREFIX + fresh.name[len(".new-"):])
                fresh.rename(own)
                if self._own_fd is not None:
                    os.close(self._own_fd)
                self._own_tmp, self._own_fd = own, fd
            return self._own_tmp

    def sweep_tmp(self) -> int:
        """Remove what killed processes left in `tmp_dir`; returns how many entries went: the
        folders of processes that no longer hold their lock, `.new-` folders older than an hour
        (a process died making one), and loose files (uploads of versions before per-process
        folders). Folders of live processes sharing the data directory are left alone, so an
        upload in progress never loses its file."""
        removed = 0
        if not self.tmp_dir.is_dir():
            return 0
        for entry in self.tmp_dir.iterdir():
            if entry == self._own_tmp:
                continue
            if entry.name.startswith(PROCESS_TMP_PREFIX) and entry.is_dir() and not entry.is_symlink():
                if not _abandoned(entry):
                    continue
            elif entry.name.startswith(".new-"):
                try:
                    if time.time() - entry.lstat().st_mtime < STALE_NEW_TMP:
                        continue
                except FileNotFoundError:
                    continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        return removed


PROCESS_TMP_PREFIX = "proc-"
STALE_NEW_TMP = 3600  # seconds after which sweep_tmp takes a `.new-` folder for a dead process's


def _abandoned(folder: Path) -> bool:
    """Whether no live process holds `folder`'s lock (its owner died)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True


def _publish(tmp: Path, dest: Path) -> bool:
    """Link `tmp` at `dest` unless `dest` exists (False then). Never replacing matters where one key
    may hold several encodings of the same content (a xorb's hash names its chunks, not their
    compression): the row recorded for the first must keep describing the stored bytes."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: replace (the same bytes in every other case)
        os.replace(tmp, dest)
    return True


def _read_file(f, start: int, stop: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        left = stop - start
        while left > 0:
            block = f.read(min(READ_BLOCK, left))
            if not block:
                raise OSError(f"{f.name} ended {left} bytes early (changed while read?)")
            left -= len(block)
            yield block
