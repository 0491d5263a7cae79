"""Review R1: the Xet store under a lost race (two identical uploads at once) and hostile xorb
footers. The store runs in-process over SQLite and a local blob store; the race is forced by
letting the other upload's row land between the store's check and its commit."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import pytest

from haven.server import db
from haven.server.storage.blobs import LocalBlobStore
from haven.server.xet import models  # noqa: F401 - registers the Xet tables
from haven.server.xet.hashing import chunk_hash, file_hash, from_hex, to_hex, verification_hash, xorb_hash
from haven.server.xet.shard import FileInfo, Term, build_shard
from haven.server.xet.store import XetStore
from haven.server.xet.xorb import FOOTER_IDENT, XorbError, XorbReader, encode_chunk


@pytest.fixture()
def store(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path}/haven.db")
    db.Base.metadata.create_all(engine)
    return XetStore(LocalBlobStore(tmp_path / "data"), db.make_sessionmaker(engine))


def _xorb(chunks: list[bytes]) -> tuple[str, bytes]:
    return to_hex(xorb_hash([(chunk_hash(c), len(c)) for c in chunks])), b"".join(encode_chunk(c) for c in chunks)


def _shard(chunks: list[bytes], xorb: str) -> bytes:
    hashes = [chunk_hash(c) for c in chunks]
    data = b"".join(chunks)
    info = FileInfo(file_hash([(h, len(c)) for h, c in zip(hashes, chunks)]),
                    [Term(from_hex(xorb), len(data), 0, len(chunks))],
                    [verification_hash(hashes)], from_hex(hashlib.sha256(data).hexdigest()))
    return build_shard([info], [])


def test_identical_xorb_uploads_racing_both_succeed(store, monkeypatch):
    """The upload that loses the race for the row answers was_inserted False (not a 500)."""
    chunks = [os.urandom(9000), os.urandom(7000)]
    h, body = _xorb(chunks)
    real_has = XetStore.has_xorb
    calls = {"n": 0}

    def has_xorb_then_lose_race(self, session, xh):
        calls["n"] += 1
        if calls["n"] == 1:  # the other upload commits while this one still saw no row
            monkeypatch.setattr(XetStore, "has_xorb", real_has)
            assert self.put_xorb(h, iter([body]), None) is True
            return False
        return real_has(self, session, xh)

    monkeypatch.setattr(XetStore, "has_xorb", has_xorb_then_lose_race)
    assert store.put_xorb(h, iter([body]), None) is False
    with store.sessions() as session:
        assert store.has_xorb(session, h)


def test_identical_shards_racing_both_succeed(store, monkeypatch):
    """Two uploads of the same shard at once: the one that loses the race for the rows (the other
    commits between its check for the file and its insert) reports the shard as already there,
    with the same files, instead of failing with a 500."""
    from sqlalchemy.orm import Session

    from haven.server.xet.models import XetFile

    chunks = [os.urandom(9000), os.urandom(7000)]
    h, body = _xorb(chunks)
    store.put_xorb(h, iter([body]), None)
    shard = _shard(chunks, h)
    real_get = Session.get
    seen, raced = [], {}

    def get(self, entity, ident, *a, **kw):
        if entity is XetFile:
            seen.append(ident)
            if len(seen) == 2 and not raced:  # the record step's check: the other upload lands now
                raced["answer"] = store.register_shard(shard, None)
                return None
        return real_get(self, entity, ident, *a, **kw)

    monkeypatch.setattr(Session, "get", get)
    result, records = store.register_shard(shard, None)
    assert raced["answer"][0] == 1 and result == 0
    assert [r.sha256 for r in records] == [hashlib.sha256(b"".join(chunks)).hexdigest()]
    monkeypatch.setattr(Session, "get", real_get)
    with store.sessions() as session:
        assert store.file(session, records[0].hash).size == 16000


def test_a_footer_larger_than_any_client_writes_is_refused():
    """hf_xet's footer is tens of bytes a chunk; a xorb of one chunk followed by megabytes of
    'footer' was accepted (and re-copied on every part received: quadratic work)."""
    chunk = os.urandom(5000)
    h, body = _xorb([chunk])
    filler = bytes(2 << 20)  # well past any footer hf_xet writes for a full xorb (~400 KB)
    footer = FOOTER_IDENT + filler
    footer += (len(footer)).to_bytes(4, "little")
    reader = XorbReader(from_hex(h))
    with pytest.raises(XorbError, match="footer"):
        reader.feed(body)
        for i in range(0, len(footer), 65536):
            reader.feed(footer[i : i + 65536])
        reader.finish()


def test_a_footer_of_normal_size_fed_in_small_parts_is_accepted():
    chunks = [os.urandom(3000) for _ in range(4)]
    h, body = _xorb(chunks)
    footer = FOOTER_IDENT + bytes(44 * 4)
    footer += len(footer).to_bytes(4, "little")
    reader = XorbReader(from_hex(h))
    data = body + footer
    for i in range(0, len(data), 7):
        reader.feed(data[i : i + 7])
    assert len(reader.finish()) == 4


def test_index_survives_another_thread_emptying_the_cache(store):
    """Shard checks and reads call `index` from several threads; one that empties the full cache
    right after another's insert made the other's lookup a KeyError (a 500 for that upload)."""

    class EmptiedByAnotherThread(dict):
        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            self.clear()

    chunks = [os.urandom(9000)]
    h, body = _xorb(chunks)
    store.put_xorb(h, iter([body]), None)
    store._indexes = EmptiedByAnotherThread()
    with store.sessions() as session:
        assert store.index(session, h).hashes == [chunk_hash(chunks[0])]


def test_a_chunk_that_decompresses_far_past_its_header_is_refused_early():
    """An LZ4 frame of ~130 KB may expand to ~32 MB; the header says 1000 bytes. It is refused,
    and decoding stops at the header's size (a bounded amount of work)."""
    import lz4.frame

    from haven.server.xet.xorb import decode_chunk

    bomb = lz4.frame.compress(bytes(32 << 20))
    assert len(bomb) < 140_000
    tracemalloc.start()
    try:
        with pytest.raises(XorbError, match="more than the 1000 bytes"):
            decode_chunk(1, memoryview(bomb), 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the whole 32 MB was decoded before
    ok = lz4.frame.compress(b"abc" * 1000)
    assert bytes(decode_chunk(1, memoryview(ok), 3000)) == b"abc" * 1000
    with pytest.raises(XorbError, match="3000"):
        decode_chunk(1, ok, 3001)  # says more than the frame holds


def test_a_stored_xorb_of_another_encoding_is_indexed_as_stored(store):
    """The xorb hash names the chunks, not their encoding. A blob a crashed upload published (no
    row) holds the chunks uncompressed; the next upload sends them LZ4-compressed. The row must
    describe the stored bytes, or every read of a file using the xorb decodes garbage."""
    from haven.server.xet.store import xorb_key

    chunks = [b"a" * 9000, b"b" * 7000]
    h = to_hex(xorb_hash([(chunk_hash(c), len(c)) for c in chunks]))
    plain = b"".join(encode_chunk(c, 0) for c in chunks)
    packed = b"".join(encode_chunk(c, 1) for c in chunks)
    assert len(plain) != len(packed)
    store.blobs.put(xorb_key(h), [plain])  # what the crashed upload left
    assert store.put_xorb(h, iter([packed]), None) is True
    terms = [Term(from_hex(h), 16000, 0, 2)]
    assert b"".join(bytes(p) for p in store.read_terms(terms, 0, 16000)) == b"".join(chunks)
