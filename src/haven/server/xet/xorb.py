"""Xorbs (hub-docs `docs/xet/xorb.md`): a run of chunks, each an 8-byte header (version 0, compressed
size u24 LE, scheme, uncompressed size u24 LE) and its bytes, compressed with scheme 0 (none),
1 (LZ4 frame) or 2 (4-byte grouping, then LZ4). The reference client appends a footer after the
last chunk (starting with the ident `XETBLOB`, ending with its own length as u32 LE); chunk
version bytes are 0, so the footer cannot be mistaken for a chunk.

`XorbReader` is fed the upload as it arrives: it decompresses and hashes each chunk as soon as its
bytes are in, holding at most one chunk (the one split between two parts), and `finish()` checks the Merkle root against the hash
the URL names. The stored xorb is the uploaded bytes, unchanged; what the server keeps about it is
`XorbIndex`: per chunk its hash, end offset in the xorb and end offset uncompressed.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import lz4.frame

from .hashing import chunk_hash, to_hex, xorb_hash

# the footer the reference client appends is ~44 bytes a chunk (at most 8192 chunks: ~360 KB)
MAX_FOOTER_BYTES = 1 << 20
# 64 MiB of chunks (the spec's limit) plus that footer
MAX_XORB_BYTES = (64 << 20) + MAX_FOOTER_BYTES
MAX_CHUNK_BYTES = 128 << 10
HEADER = 8
MAX_ENCODED_CHUNK = HEADER + MAX_CHUNK_BYTES + 1024  # header and payload (LZ4 may grow a chunk a little)
FOOTER_IDENT = b"XETBLOB"
_ENTRY = struct.Struct("<32sII")  # chunk hash, packed end, unpacked end


class XorbError(ValueError):
    """A xorb that is malformed or does not match its hash; the message says what is wrong."""


@dataclass(frozen=True)
class XorbIndex:
    """What a verified xorb holds: for chunk i, its hash, and the ends of its bytes in the stored
    xorb (header included) and in the uncompressed concatenation."""

    hashes: list[bytes]
    packed_ends: list[int]
    unpacked_ends: list[int]

    def __len__(self) -> int:
        return len(self.hashes)

    def packed_range(self, start: int, end: int) -> tuple[int, int]:
        """[first byte, last byte + 1) of chunks [start, end) in the stored xorb."""
        return (self.packed_ends[start - 1] if start else 0), self.packed_ends[end - 1]

    def unpacked_length(self, start: int, end: int) -> int:
        return self.unpacked_ends[end - 1] - (self.unpacked_ends[start - 1] if start else 0)

    def to_bytes(self) -> bytes:
        return b"".join(_ENTRY.pack(*e) for e in zip(self.hashes, self.packed_ends, self.unpacked_ends))

    @classmethod
    def from_bytes(cls, data: bytes) -> XorbIndex:
        entries = list(_ENTRY.iter_unpack(data))
        return cls([e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries])


def ungroup4(data: bytes) -> bytes:
    """Undo 4-byte grouping: groups hold bytes 0, 1, 2, 3 of every 4; the first len % 4 groups
    hold one extra byte."""
    n = len(data)
    q, r = divmod(n, 4)
    sizes = [q + (1 if g < r else 0) for g in range(4)]
    out = bytearray(n)
    pos = 0
    for g, size in enumerate(sizes):
        out[g::4] = data[pos : pos + size]
        pos += size
    return bytes(out)


def group4(data: bytes) -> bytes:
    return b"".join(data[g::4] for g in range(4))


def decode_chunk(scheme: int, payload: bytes | memoryview, size: int) -> bytes | memoryview:
    """A chunk's bytes from its stored form (a view of `payload` when stored uncompressed);
    XorbError for an unknown scheme or a bad payload."""
    if scheme == 0:
        raw = payload
    elif scheme in (1, 2):
        raw = _lz4_decompress(payload, size)
        if scheme == 2:
            raw = ungroup4(raw)
    else:
        raise XorbError(f"chunk compression scheme {scheme} is unknown: use 0 (none), 1 (LZ4) or 2 (BG4+LZ4)")
    if len(raw) != size:
        raise XorbError(f"a chunk decompresses to {len(raw)} bytes, its header says {size}")
    return raw


_local = threading.local()


def _lz4_decompress(payload: bytes | memoryview, size: int) -> bytes:
    """An LZ4 frame's bytes, decoded no further than `size` + 1 (the header's size: a frame that
    says more, up to ~250x its own size, stops there instead of costing memory and time)."""
    dec = getattr(_local, "lz4", None)
    if dec is None:
        dec = _local.lz4 = lz4.frame.LZ4FrameDecompressor()  # one a thread: reused, not shared
    dec.reset()
    try:
        raw = dec.decompress(payload, max_length=size + 1)
    except RuntimeError as err:
        raise XorbError(f"a chunk's LZ4 data does not decompress: {err}") from None
    if len(raw) > size or (len(raw) == size and not dec.eof):
        raise XorbError(f"a chunk decompresses to more than the {size} bytes its header says")
    return raw


def encode_chunk(data: bytes, scheme: int = 1) -> bytes:
    """A chunk as stored in a xorb (header + payload); used by tests and tools."""
    if scheme == 0:
        payload = data
    else:
        payload = lz4.frame.compress(group4(data) if scheme == 2 else data)
    return bytes([0]) + len(payload).to_bytes(3, "little") + bytes([scheme]) + len(data).to_bytes(3, "little") + payload


class XorbReader:
    """Verify a xorb while it streams in: `feed(bytes)` as parts arrive, then `finish()`. Whole
    chunks are decoded and hashed in place; only a chunk split between two parts is copied."""

    def __init__(self, expected_hash: bytes):
        self.expected = expected_hash
        self.buffer = bytearray()  # the start of a chunk split between parts, or the footer
        self.received = 0
        self.pos = 0  # offset in the xorb of buffer[0]
        self.hashes: list[bytes] = []
        self.packed_ends: list[int] = []
        self.unpacked_ends: list[int] = []
        self.unpacked = 0
        self.footer = False

    def feed(self, data: bytes | memoryview) -> None:
        self.received += len(data)
        if self.received > MAX_XORB_BYTES:
            raise XorbError("a xorb holds at most 64 MiB of chunks: split it into several xorbs")
        if self.footer:  # the footer is kept whole for finish()
            self._keep(data)
            return
        view = memoryview(data)
        if self.buffer:  # complete the split chunk with at most one chunk's bytes of `data`
            held, taken = len(self.buffer), min(len(view), MAX_ENCODED_CHUNK)
            self.buffer += view[:taken]
            with memoryview(self.buffer) as buffered:
                off = self._parse(buffered)
            if self.footer or off < held:  # the footer began, or the chunk is still incomplete
                del self.buffer[:off]
                self._keep(view[taken:])
                return
            view = view[off - held :]
            self.buffer = bytearray()
        off = self._parse(view)
        self._keep(view[off:])

    def _keep(self, rest: bytes | memoryview) -> None:
        self.buffer += rest
        if self.footer and len(self.buffer) > MAX_FOOTER_BYTES:
            raise XorbError(f"the xorb's footer is over {MAX_FOOTER_BYTES >> 20} MiB: no client writes one "
                            "that large; send the chunks with the footer hf_xet writes, or none")

    def _parse(self, buf: memoryview) -> int:
        """Decode and hash the whole chunks at the start of `buf`; the bytes consumed."""
        off, n = 0, len(buf)
        while not self.footer and n - off >= HEADER:
            if buf[off : off + 7] == FOOTER_IDENT:
                self.footer = True
                break
            version, size, scheme, raw_size = buf[off], _u24(buf, off + 1), buf[off + 4], _u24(buf, off + 5)
            if version != 0:
                raise XorbError(f"chunk {len(self.hashes)} has header version {version}: only 0 exists")
            if raw_size > MAX_CHUNK_BYTES or HEADER + size > MAX_ENCODED_CHUNK:
                raise XorbError(f"chunk {len(self.hashes)} is over {MAX_CHUNK_BYTES >> 10} KiB")
            if n - off < HEADER + size:
                break
            raw = decode_chunk(scheme, buf[off + HEADER : off + HEADER + size], raw_size)
            self.hashes.append(chunk_hash(raw))
            self.unpacked += raw_size
            off += HEADER + size
            self.packed_ends.append(self.pos + off)
            self.unpacked_ends.append(self.unpacked)
        self.pos += off
        return off

    def finish(self) -> XorbIndex:
        """The verified index; XorbError if the bytes end mid-chunk, hold no chunk, carry a broken
        footer, or hash to something other than the expected xorb hash."""
        if self.footer:
            if len(self.buffer) < 4 or int.from_bytes(self.buffer[-4:], "little") != len(self.buffer) - 4:
                raise XorbError("the xorb's footer is truncated: its length field does not match")
        elif self.buffer:
            raise XorbError(f"the xorb ends inside chunk {len(self.hashes)}: the upload is truncated")
        if not self.hashes:
            raise XorbError("the xorb holds no chunk")
        sizes = [b - a for a, b in zip([0, *self.unpacked_ends], self.unpacked_ends)]
        got = xorb_hash(list(zip(self.hashes, sizes)))
        if got != self.expected:
            raise XorbError(
                f"the xorb's chunks hash to {to_hex(got)}, not {to_hex(self.expected)}: nothing stored"
            )
        return XorbIndex(self.hashes, self.packed_ends, self.unpacked_ends)


def _u24(buf, at: int) -> int:
    return buf[at] | buf[at + 1] << 8 | buf[at + 2] << 16


def read_chunks(data: bytes | memoryview, count: int) -> Iterator[bytes | memoryview]:
    """The uncompressed bytes of the first `count` chunks of `data` (a slice of a xorb), one chunk
    at a time; chunks stored uncompressed are views of `data`."""
    pos, view = 0, memoryview(data)
    for _ in range(count):
        if pos + HEADER > len(data):
            raise XorbError("a stored xorb is shorter than its index says")
        size, scheme, raw_size = _u24(view, pos + 1), view[pos + 4], _u24(view, pos + 5)
        yield decode_chunk(scheme, view[pos + HEADER : pos + HEADER + size], raw_size)
        pos += HEADER + size
