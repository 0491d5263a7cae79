"""Xet hashes (hub-docs `docs/xet/hashing.md`, `api.md`): every hash is 32 bytes.

- chunk hash: BLAKE3 keyed with DATA_KEY over the chunk's bytes;
- xorb hash: the root of a Merkle tree over (chunk hash, chunk length) leaves whose nodes group a
  variable number of children (a child whose hash is 0 mod 4 closes a group; 2..9 per group) and
  hash `"{hex} : {length}\\n"` lines with BLAKE3 keyed with INTERNAL_NODE_KEY;
- file hash: that same root over all of a file's chunks, hashed again keyed with 32 zero bytes;
- term verification hash: BLAKE3 keyed with VERIFICATION_KEY over a run of raw chunk hashes.

Hashes travel as strings in a fixed form: each 8-byte word is read little-endian and printed as 16
hex digits (`to_hex` / `from_hex`), so `bytes.hex()` of a hash is NOT its string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import blake3

DATA_KEY = bytes([
    102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
    157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41,
])
INTERNAL_NODE_KEY = bytes([
    1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
    93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63,
])
VERIFICATION_KEY = bytes([
    127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243,
    164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195,
])
ZERO_KEY = bytes(32)
HEX_RE = re.compile(r"[0-9a-f]{64}")
BRANCHING = 4  # mean children per Merkle node
MAX_GROUP = 2 * BRANCHING + 1


class HashStringError(ValueError):
    """A hash string that is not 64 lowercase hex digits."""


def to_hex(h: bytes) -> str:
    """The protocol's string for a 32-byte hash (each 8-byte word little-endian, as hex)."""
    return b"".join(h[i : i + 8][::-1] for i in range(0, 32, 8)).hex()


def from_hex(text: str) -> bytes:
    """The 32-byte hash a protocol string names; HashStringError for anything else."""
    if not isinstance(text, str) or not HEX_RE.fullmatch(text):
        raise HashStringError(f"{text!r} is not a Xet hash: expected 64 lowercase hex digits")
    raw = bytes.fromhex(text)
    return b"".join(raw[i : i + 8][::-1] for i in range(0, 32, 8))


def chunk_hash(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data, key=DATA_KEY).digest()


def _merge(nodes: Sequence[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{to_hex(h)} : {size}\n" for h, size in nodes)
    return blake3.blake3(text.encode(), key=INTERNAL_NODE_KEY).digest(), sum(size for _, size in nodes)


def _cut(nodes: Sequence[tuple[bytes, int]], start: int) -> int:
    """End (exclusive) of the group of children starting at `start`."""
    left = len(nodes) - start
    if left <= 2:
        return len(nodes)
    end = min(MAX_GROUP, left)
    for i in range(2, end):
        if int.from_bytes(nodes[start + i][0][24:32], "little") % BRANCHING == 0:
            return start + i + 1
    return start + end


def merkle_root(leaves: Sequence[tuple[bytes, int]]) -> bytes:
    """Root of the aggregated Merkle tree over (hash, length) leaves; 32 zero bytes when empty."""
    nodes = list(leaves)
    if not nodes:
        return bytes(32)
    while len(nodes) > 1:
        merged, start = [], 0
        while start < len(nodes):
            end = _cut(nodes, start)
            merged.append(_merge(nodes[start:end]))
            start = end
        nodes = merged
    return nodes[0][0]


def xorb_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    return merkle_root(chunks)


def file_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """A file's Xet hash from its chunks' (hash, length); the empty file's is 32 zero bytes."""
    if not chunks:
        return bytes(32)
    return blake3.blake3(merkle_root(chunks), key=ZERO_KEY).digest()


def verification_hash(chunk_hashes: Sequence[bytes]) -> bytes:
    """The term verification hash over a run of raw chunk hashes."""
    return blake3.blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()


def keyed(h: bytes, key: bytes) -> bytes:
    """A chunk hash protected with a per-answer key (the dedup answer's HMAC)."""
    return blake3.blake3(h, key=key).digest()
