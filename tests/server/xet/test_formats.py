"""Xet formats: hashes against the spec's worked examples and against hf_xet's own hasher
(`hf_xet.hash_files`, the reference client's code), xorb and shard parsing and their refusals."""

from __future__ import annotations

import hashlib
import os

import hf_xet
import pytest

from haven.server.xet import hashing
from haven.server.xet.hashing import chunk_hash, file_hash, from_hex, to_hex, verification_hash, xorb_hash
from haven.server.xet.shard import FileInfo, ShardError, Term, XorbInfo, build_shard, parse_shard
from haven.server.xet.xorb import XorbError, XorbReader, encode_chunk, group4, ungroup4

BLOCK = 128 << 10  # the chunker's maximum chunk: a block of one repeated byte is cut exactly here


def test_hash_strings_follow_the_spec_example():
    # hub-docs api.md "Converting Hashes to Strings": bytes 0..31 are reordered to the list below,
    # then printed as hex (the spec's printed string drops the "10" of byte 16)
    raw = bytes(range(32))
    reordered = [7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
                 23, 22, 21, 20, 19, 18, 17, 16, 31, 30, 29, 28, 27, 26, 25, 24]
    text = bytes(reordered).hex()
    assert text.startswith("07060504030201000f0e0d0c0b0a0908")
    assert to_hex(raw) == text
    assert from_hex(text) == raw
    with pytest.raises(hashing.HashStringError):
        from_hex("ABC")


def _client_hash(tmp_path, data: bytes) -> str:
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    return hf_xet.hash_files([str(path)])[0].hash


def test_single_chunk_file_hash_equals_hf_xet(tmp_path):
    data = b"haven speaks xet\n" * 300  # < 8 KiB: one chunk
    assert to_hex(file_hash([(chunk_hash(data), len(data))])) == _client_hash(tmp_path, data)


def test_many_chunk_file_hash_equals_hf_xet(tmp_path):
    # 37 blocks, each one byte value repeated: the gear hash of a run of one byte is constant, so no
    # content boundary is found inside a block and every chunk is exactly one block; the Merkle
    # tree then has 37 distinct leaves (several levels, groups of 2..9)
    blocks = [bytes([(7 * i + 1) % 256]) * BLOCK for i in range(37)]
    tail = b"end" * 1000
    chunks = [*blocks, tail]
    expected = _client_hash(tmp_path, b"".join(chunks))
    assert to_hex(file_hash([(chunk_hash(c), len(c)) for c in chunks])) == expected


def test_empty_file_hash_is_zero(tmp_path):
    assert to_hex(file_hash([])) == _client_hash(tmp_path, b"")


def test_verification_hash_is_keyed_over_raw_hashes():
    import blake3

    hashes = [chunk_hash(bytes([i]) * 100) for i in range(3)]
    assert verification_hash(hashes) == blake3.blake3(b"".join(hashes), key=hashing.VERIFICATION_KEY).digest()
    assert verification_hash(hashes) != verification_hash(hashes[:2])


def test_byte_grouping_follows_the_spec():
    # xorb.md: [A1 A2 A3 A4 B1 B2 B3 B4 C1 C2] -> groups (A1 B1 C1)(A2 B2 C2)(A3 B3)(A4 B4)
    data = b"ABCDabcdXY"
    assert group4(data) == b"AaXBbYCcDd"
    for n in range(0, 13):
        raw = bytes(range(n))
        assert ungroup4(group4(raw)) == raw


def _xorb(chunks: list[bytes], schemes: list[int]) -> tuple[bytes, bytes]:
    body = b"".join(encode_chunk(c, s) for c, s in zip(chunks, schemes))
    return body, xorb_hash([(chunk_hash(c), len(c)) for c in chunks])


def _feed(body: bytes, expected: bytes, step: int = 1000):
    reader = XorbReader(expected)
    for i in range(0, len(body), step):
        reader.feed(body[i : i + step])
    return reader.finish()


def test_xorb_reader_decodes_every_scheme_in_any_split():
    chunks = [b"float-ish " * 900, bytes(range(256)) * 40, b"plain" * 2000]
    body, h = _xorb(chunks, [1, 2, 0])
    for step in (1, 7, 4096, len(body)):
        index = _feed(body, h, step)
        assert index.hashes == [chunk_hash(c) for c in chunks]
        assert index.unpacked_ends[-1] == sum(map(len, chunks))
        assert index.packed_ends[-1] == len(body)
    footer = b"XETBLOB\x01" + b"\x00" * 40
    footer += (len(footer)).to_bytes(4, "little")
    assert _feed(body + footer, h).packed_ends[-1] == len(body)  # the client's footer is not a chunk


def test_xorb_reader_refuses_bad_xorbs():
    chunks = [b"a" * 9000, b"b" * 9000]
    body, h = _xorb(chunks, [1, 0])
    with pytest.raises(XorbError, match="hash to"):
        _feed(body, chunk_hash(b"other"))
    with pytest.raises(XorbError, match="truncated"):
        _feed(body[:-5], h)
    bad = bytearray(body)
    bad[4] = 9  # compression scheme
    with pytest.raises(XorbError, match="scheme 9"):
        _feed(bytes(bad), h)
    bad = bytearray(body)
    bad[0] = 1  # header version
    with pytest.raises(XorbError, match="version"):
        _feed(bytes(bad), h)
    with pytest.raises(XorbError, match="no chunk"):
        _feed(b"", h)


def test_shard_round_trip_and_refusals():
    h = [hashlib.sha256(bytes([i])).digest() for i in range(4)]
    files = [FileInfo(h[0], [Term(h[1], 100, 0, 2), Term(h[2], 50, 3, 4)], [h[3], h[3]], h[2])]
    xorbs = [XorbInfo(h[1], 2, 100, 120, [(h[0], 0, 60), (h[3], 68, 40)])]
    shard = parse_shard(build_shard(files, xorbs))
    assert shard.files[0].terms == files[0].terms and shard.files[0].sha256 == h[2]
    assert shard.files[0].verification == [h[3], h[3]] and shard.files[0].size == 150
    assert shard.xorbs[0].chunks == xorbs[0].chunks
    data = build_shard(files, xorbs)
    with pytest.raises(ShardError, match="magic"):
        parse_shard(b"X" + data[1:])
    with pytest.raises(ShardError, match="truncated"):
        parse_shard(data[:-10])
    with pytest.raises(ShardError, match="unexpected bytes"):
        parse_shard(data + b"\x00" * 48)


def test_a_full_xorb_with_the_clients_footer_is_accepted():
    # 64 MiB of stored chunks (the spec's limit) plus a footer: hf_xet sends such xorbs for big files
    # (a 500 MB upload was refused with 413 before the limit allowed for the footer)
    chunk = os.urandom((128 << 10) - 8)
    chunks = [chunk] * 512
    body, h = _xorb(chunks, [0] * 512)
    assert len(body) == 64 << 20
    footer = b"XETBLOB\x01" + bytes(44 * 512)
    footer += len(footer).to_bytes(4, "little")
    assert _feed(body + footer, h, step=1 << 20).packed_ends[-1] == len(body)
    with pytest.raises(XorbError, match="at most 64 MiB"):
        _feed(body + encode_chunk(os.urandom(100_000), 0) * 11, h, step=1 << 20)
