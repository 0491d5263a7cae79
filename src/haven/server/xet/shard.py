"""Shards (hub-docs `docs/xet/shard.md`): a 48-byte header (magic tag, version 2, footer size), the
file-info section (per file: a header, its terms, optionally one verification entry per term and
a metadata extension holding the file's sha256; ended by a bookend), the CAS-info section (per
xorb: a header and one entry per chunk; ended by a bookend), and an optional 200-byte footer.
Every entry is 48 bytes, integers little-endian.

`parse_shard` reads an uploaded shard into plain records; `dedup_shard` writes the CAS-info-only
shard the global dedup query answers with.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from .hashing import to_hex

TAG = bytes([72, 70, 82, 101, 112, 111, 77, 101, 116, 97, 68, 97, 116, 97, 0, 85, 105, 103, 69, 106, 123,
             129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169])  # "HFRepoMetaData\0" + fixed bytes
HEADER_VERSION = 2
FOOTER_VERSION = 1
FOOTER_SIZE = 200
ENTRY = 48
BOOKEND = b"\xff" * 32 + b"\x00" * 16
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA = 1 << 30
MAX_SHARD_BYTES = 64 << 20
_HEAD = struct.Struct("<32sQQ")
_FILE = struct.Struct("<32sII8x")
_TERM = struct.Struct("<32sIIII")
_CAS = struct.Struct("<32sIIII")
_CHUNK = struct.Struct("<32sII8x")


class ShardError(ValueError):
    """A shard that cannot be parsed; the message says where."""


@dataclass(frozen=True)
class Term:
    xorb: bytes
    unpacked_bytes: int
    start: int
    end: int  # exclusive chunk index


@dataclass
class FileInfo:
    file_hash: bytes
    terms: list[Term]
    verification: list[bytes] | None
    sha256: bytes | None

    @property
    def size(self) -> int:
        return sum(t.unpacked_bytes for t in self.terms)


@dataclass
class XorbInfo:
    xorb: bytes
    chunk_count: int
    unpacked_bytes: int
    packed_bytes: int
    chunks: list[tuple[bytes, int, int]] = field(default_factory=list)  # hash, packed start, unpacked size


@dataclass
class Shard:
    files: list[FileInfo]
    xorbs: list[XorbInfo]


def _entry(data: bytes, pos: int, what: str) -> bytes:
    if pos + ENTRY > len(data):
        raise ShardError(f"the shard ends inside its {what} (at byte {pos}): it is truncated")
    return data[pos : pos + ENTRY]


def parse_shard(data: bytes) -> Shard:
    """The files and xorbs a serialized shard describes; ShardError for a malformed one."""
    if len(data) > MAX_SHARD_BYTES:
        raise ShardError(f"the shard is over {MAX_SHARD_BYTES >> 20} MiB: split the upload into several shards")
    if len(data) < _HEAD.size:
        raise ShardError("the body is too short to be a shard")
    tag, version, footer_size = _HEAD.unpack_from(data, 0)
    if tag != TAG:
        raise ShardError("the body is not a Xet shard (wrong magic tag)")
    if version != HEADER_VERSION:
        raise ShardError(f"shard header version {version} is not supported: only {HEADER_VERSION}")
    if footer_size not in (0, FOOTER_SIZE):
        raise ShardError(f"shard footer size {footer_size} is invalid: 0 (no footer) or {FOOTER_SIZE}")
    end = len(data) - footer_size
    pos = _HEAD.size
    files: list[FileInfo] = []
    while True:
        head = _entry(data, pos, "file info section")
        pos += ENTRY
        if head == BOOKEND:
            break
        file_hash, flags, count = _FILE.unpack(head)
        terms = []
        for _ in range(count):
            xorb, _flags, unpacked, start, stop = _TERM.unpack(_entry(data, pos, "file terms"))
            if stop <= start:
                raise ShardError(f"a term of file {to_hex(file_hash)} has an empty chunk range [{start}, {stop})")
            terms.append(Term(xorb, unpacked, start, stop))
            pos += ENTRY
        verification = None
        if flags & FLAG_VERIFICATION:
            verification = []
            for _ in range(count):
                verification.append(_entry(data, pos, "verification entries")[:32])
                pos += ENTRY
        sha256 = None
        if flags & FLAG_METADATA:
            sha256 = _entry(data, pos, "file metadata")[:32]
            pos += ENTRY
        files.append(FileInfo(file_hash, terms, verification, sha256))
    xorbs: list[XorbInfo] = []
    while True:
        head = _entry(data, pos, "CAS info section")
        pos += ENTRY
        if head == BOOKEND:
            break
        xorb, _flags, count, unpacked, packed = _CAS.unpack(head)
        info = XorbInfo(xorb, count, unpacked, packed)
        for _ in range(count):
            h, start, size = _CHUNK.unpack(_entry(data, pos, "CAS chunk entries"))
            info.chunks.append((h, start, size))
            pos += ENTRY
        xorbs.append(info)
    if pos > end or (pos != end and not footer_size):  # with a footer, lookup tables may sit between
        raise ShardError(f"the shard has {end - pos} unexpected bytes after its CAS info section")
    return Shard(files, xorbs)


def _truncated(h: bytes) -> int:
    return int.from_bytes(h[:8], "little")


def dedup_shard(xorbs: list[XorbInfo], key: bytes, expiry_s: int = 7 * 86400) -> bytes:
    """The global dedup answer: a shard with no files and these xorbs' chunk lists, chunk hashes
    keyed with `key` (the client keys its own chunk hashes the same way to match them), followed by
    the lookup tables the reference client searches (sorted truncated xorb and chunk hashes, each
    with its entry index in the CAS info section) and the footer."""
    parts = [_HEAD.pack(TAG, HEADER_VERSION, FOOTER_SIZE), BOOKEND]
    cas_offset = _HEAD.size + ENTRY
    xorb_lookup, chunk_lookup, entry = [], [], 0
    for x in sorted(xorbs, key=lambda x: _truncated(x.xorb)):
        xorb_lookup.append((_truncated(x.xorb), entry))
        parts.append(_CAS.pack(x.xorb, 0, len(x.chunks), x.unpacked_bytes, x.packed_bytes))
        for i, (h, start, size) in enumerate(x.chunks):
            parts.append(_CHUNK.pack(h, start, size))
            chunk_lookup.append((_truncated(h), entry, i))
        entry += 1 + len(x.chunks)
    parts.append(BOOKEND)
    pos = sum(map(len, parts))
    file_lookup_at = xorb_lookup_at = pos
    parts.extend(struct.pack("<QI", k, v) for k, v in xorb_lookup)
    chunk_lookup_at = xorb_lookup_at + 12 * len(xorb_lookup)
    parts.extend(struct.pack("<QII", k, v, i) for k, v, i in sorted(chunk_lookup))
    body = b"".join(parts)
    now = int(time.time())
    packed = sum(x.packed_bytes for x in xorbs)
    unpacked = sum(x.unpacked_bytes for x in xorbs)
    footer = struct.pack(
        "<9Q32s2Q6Q4Q", FOOTER_VERSION, _HEAD.size, cas_offset, file_lookup_at, 0, xorb_lookup_at, len(xorb_lookup),
        chunk_lookup_at, len(chunk_lookup), key, now, now + expiry_s, 0, 0, 0, 0, 0, 0, packed, unpacked, unpacked,
        len(body),
    )
    return body + footer


def build_shard(files: list[FileInfo], xorbs: list[XorbInfo]) -> bytes:
    """An upload shard (no footer) for these files and xorbs; used by tests and tools."""
    parts = [_HEAD.pack(TAG, HEADER_VERSION, 0)]
    for f in files:
        flags = (FLAG_VERIFICATION if f.verification is not None else 0) | (FLAG_METADATA if f.sha256 else 0)
        parts.append(_FILE.pack(f.file_hash, flags, len(f.terms)))
        parts.extend(_TERM.pack(t.xorb, 0, t.unpacked_bytes, t.start, t.end) for t in f.terms)
        parts.extend(v + bytes(16) for v in f.verification or [])
        if f.sha256:
            parts.append(f.sha256 + bytes(16))
    parts.append(BOOKEND)
    for x in xorbs:
        parts.append(_CAS.pack(x.xorb, 0, len(x.chunks), x.unpacked_bytes, x.packed_bytes))
        parts.extend(_CHUNK.pack(h, start, size) for h, start, size in x.chunks)
    parts.append(BOOKEND)
    return b"".join(parts)
