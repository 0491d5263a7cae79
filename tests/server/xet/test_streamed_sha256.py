"""The store hashes a fresh upload's sha256 while its xorbs arrive (`xet/runs.py`) and reads back
only what no run covers. Expected sha256s come from hashlib over the test's own bytes; what the
store reads back is counted through `read_terms`. The anti-spoofing check must hold on every
path: a false sha256 is refused with nothing recorded, whether the run covers all of the file,
part of it, or none."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from haven.server import db
from haven.server.storage.blobs import LocalBlobStore
from haven.server.xet import models  # noqa: F401 - registers the Xet tables
from haven.server.xet.hashing import chunk_hash, file_hash, from_hex, to_hex, verification_hash, xorb_hash
from haven.server.xet.models import XetFile, XetShard
from haven.server.xet.shard import FileInfo, ShardError, Term, build_shard
from haven.server.xet.store import XetStore
from haven.server.xet.xorb import XorbError, encode_chunk

REPO, OTHER = 1, 2


@pytest.fixture()
def store(tmp_path, monkeypatch):
    engine = db.make_engine(f"sqlite:///{tmp_path}/haven.db")
    db.Base.metadata.create_all(engine)
    s = XetStore(LocalBlobStore(tmp_path / "data"), db.make_sessionmaker(engine))
    with s.sessions() as session:
        session.add_all([db.Repo(id=REPO, type="model", namespace="a", name="one"),
                         db.Repo(id=OTHER, type="model", namespace="b", name="two")])
        session.commit()
    s.read_back = 0
    real = XetStore.read_terms

    def counted(self, terms, start, end, *, views=False):
        for part in real(self, terms, start, end, views=views):
            self.read_back += len(part)
            yield part

    monkeypatch.setattr(XetStore, "read_terms", counted)
    return s


class Xorb:
    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks
        self.hash = to_hex(xorb_hash([(chunk_hash(c), len(c)) for c in chunks]))
        self.body = b"".join(encode_chunk(c, scheme=i % 3) for i, c in enumerate(chunks))

    def put(self, store: XetStore, repo: int, parts: int = 3) -> bool:
        step = len(self.body) // parts + 1
        return store.put_xorb(self.hash, iter([self.body[i : i + step] for i in range(0, len(self.body), step)]), repo)

    def term(self, start: int = 0, end: int | None = None) -> tuple[Xorb, int, int]:
        return self, start, len(self.chunks) if end is None else end


def new_xorb(n: int = 5) -> Xorb:
    return Xorb([os.urandom(3000 + 997 * i) + bytes(2000) for i in range(n)])


def file_info(terms: list[tuple[Xorb, int, int]], sha256: str | None = None) -> tuple[FileInfo, bytes]:
    """The shard entry for the file these (xorb, start, end) terms make, and its bytes."""
    chunks = [c for x, a, b in terms for c in x.chunks[a:b]]
    data = b"".join(chunks)
    info = FileInfo(
        file_hash([(chunk_hash(c), len(c)) for c in chunks]),
        [Term(from_hex(x.hash), sum(len(c) for c in x.chunks[a:b]), a, b) for x, a, b in terms],
        [verification_hash([chunk_hash(c) for c in x.chunks[a:b]]) for x, a, b in terms],
        from_hex(sha256 or hashlib.sha256(data).hexdigest()),
    )
    return info, data


def nothing_recorded(store: XetStore, info: FileInfo) -> bool:
    with store.sessions() as session:
        return session.get(XetFile, to_hex(info.file_hash)) is None and not session.query(XetShard).count()


def test_a_fresh_upload_is_hashed_as_it_arrives(store):
    xorbs = [new_xorb() for _ in range(3)]
    for x in xorbs:
        assert x.put(store, REPO)
    info, data = file_info([x.term() for x in xorbs])
    result, [record] = store.register_shard(build_shard([info], []), REPO)
    assert result == 1 and record.sha256 == hashlib.sha256(data).hexdigest()
    assert store.read_back == 0  # every byte was hashed on arrival


def test_a_false_sha256_is_refused_when_a_run_covers_the_file(store):
    xorbs = [new_xorb() for _ in range(2)]
    for x in xorbs:
        x.put(store, REPO)
    # the sha256 of other bytes (another repository's LFS object, say)
    info, _ = file_info([x.term() for x in xorbs], sha256=hashlib.sha256(b"another file").hexdigest())
    with pytest.raises(ShardError, match="sha256"):
        store.register_shard(build_shard([info], []), REPO)
    assert nothing_recorded(store, info)
    # the true one is accepted afterwards (read back now: the refused shard ended the run)
    good, data = file_info([x.term() for x in xorbs])
    assert store.register_shard(build_shard([good], []), REPO)[1][0].sha256 == hashlib.sha256(data).hexdigest()


def test_files_inside_xorbs_are_read_back_where_no_run_covers_them(store):
    x1, x2 = new_xorb(6), new_xorb(4)
    x1.put(store, REPO)
    x2.put(store, REPO)
    # a is x1's head, b runs from inside x1 over all of x2: neither starts where a run does
    a, a_data = file_info([x1.term(0, 4)])
    b, b_data = file_info([x1.term(4), x2.term()])
    _, records = store.register_shard(build_shard([a, b], []), REPO)
    assert [r.sha256 for r in records] == [hashlib.sha256(d).hexdigest() for d in (a_data, b_data)]
    assert store.read_back == len(a_data) + len(b_data)

    # a false sha256 on a file only partly covered by a run: x3 whole (covered), x4's head (read back)
    x3, x4 = new_xorb(), new_xorb()
    x3.put(store, OTHER)
    x4.put(store, OTHER)
    store.read_back = 0
    lying, data = file_info([x3.term(), x4.term(0, 2)], sha256=hashlib.sha256(b"x").hexdigest())
    with pytest.raises(ShardError, match="sha256"):
        store.register_shard(build_shard([lying], []), OTHER)
    with store.sessions() as session:
        assert session.get(XetFile, to_hex(lying.file_hash)) is None
    assert store.read_back == len(b"".join(x4.chunks[:2]))  # x3 came from the run
    x5, x6 = new_xorb(), new_xorb()
    x5.put(store, OTHER)
    x6.put(store, OTHER)
    store.read_back = 0
    honest, data = file_info([x5.term(), x6.term(0, 2)])
    assert store.register_shard(build_shard([honest], []), OTHER)[1][0].sha256 == hashlib.sha256(data).hexdigest()
    assert store.read_back == len(b"".join(x6.chunks[:2]))


def test_a_refused_xorb_leaves_the_run_as_it_was(store):
    x1, x2, bad = new_xorb(), new_xorb(), new_xorb()
    x1.put(store, REPO)
    with pytest.raises(XorbError):  # bytes that do not make the xorb they name
        store.put_xorb(bad.hash, iter([x1.body]), REPO)
    with pytest.raises(XorbError):  # an upload cut off mid-chunk
        store.put_xorb(x2.hash, iter([x2.body[:-5]]), REPO)
    x2.put(store, REPO)
    info, data = file_info([x1.term(), x2.term()])
    assert store.register_shard(build_shard([info], []), REPO)[1][0].sha256 == hashlib.sha256(data).hexdigest()
    assert store.read_back == 0


def test_runs_follow_each_repository_and_end_with_its_shard(store):
    x1, y1, x2 = new_xorb(), new_xorb(), new_xorb()
    x1.put(store, REPO)
    y1.put(store, OTHER)  # another repository's upload in between does not break REPO's run
    x2.put(store, REPO)
    info, _ = file_info([x1.term(), x2.term()])
    store.register_shard(build_shard([info], []), REPO)
    assert store.read_back == 0
    # the next upload starts a run of its own (it does not continue after x2)
    x3 = new_xorb()
    x3.put(store, REPO)
    info, _ = file_info([x3.term()])
    store.register_shard(build_shard([info], []), REPO)
    assert store.read_back == 0


def test_xorbs_sent_at_once_are_hashed_in_the_order_they_started(store):
    x1, x2, x3 = new_xorb(), new_xorb(), new_xorb()

    def x1_parts():  # x2 streams in, whole, while x1 is still arriving: x2 is stored first
        yield x1.body[:100]
        assert x2.put(store, REPO)
        yield x1.body[100:]

    assert store.put_xorb(x1.hash, x1_parts(), REPO)
    x3.put(store, REPO)
    info, data = file_info([x1.term(), x2.term(), x3.term()])
    assert store.register_shard(build_shard([info], []), REPO)[1][0].sha256 == hashlib.sha256(data).hexdigest()
    assert store.read_back == 0  # x2 was hashed after x1, in the order the file has them

    # the same with a false sha256 is refused
    y1, y2 = new_xorb(), new_xorb()

    def y1_parts():
        yield y1.body[:100]
        assert y2.put(store, REPO)
        yield y1.body[100:]

    store.put_xorb(y1.hash, y1_parts(), REPO)
    lying, _ = file_info([y1.term(), y2.term()], sha256=hashlib.sha256(b"x").hexdigest())
    with pytest.raises(ShardError, match="sha256"):
        store.register_shard(build_shard([lying], []), REPO)
    assert nothing_recorded_but_the_first(store, lying)


def nothing_recorded_but_the_first(store: XetStore, info: FileInfo) -> bool:
    with store.sessions() as session:
        return session.get(XetFile, to_hex(info.file_hash)) is None and session.query(XetShard).count() == 1


def test_the_run_is_hashed_before_the_shard_arrives(store):
    xorbs = [new_xorb() for _ in range(4)]
    for x in xorbs:
        x.put(store, REPO)
    deadline = time.monotonic() + 10
    run = store.runs._runs[REPO]
    while run.hashed < len(xorbs) and time.monotonic() < deadline:  # a background worker hashes them
        time.sleep(0.01)
    assert run.hashed == len(xorbs)
    info, data = file_info([x.term() for x in xorbs])
    state, covered = store.runs.prefix(REPO, info.terms, wait=0)
    assert covered == len(xorbs) and state.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_run_that_cannot_read_its_xorbs_leaves_the_shard_to_read_back(store, monkeypatch):
    def broken(xorb, chunks):
        raise OSError("disk gone")

    monkeypatch.setattr(store.runs, "read", broken)
    xorbs = [new_xorb() for _ in range(2)]
    for x in xorbs:
        x.put(store, REPO)
    info, data = file_info([x.term() for x in xorbs])
    assert store.register_shard(build_shard([info], []), REPO)[1][0].sha256 == hashlib.sha256(data).hexdigest()
    assert store.read_back == len(data)


def test_stored_xorbs_are_read_back(store):
    x1 = new_xorb()
    x1.put(store, REPO)
    info, _ = file_info([x1.term()])
    store.register_shard(build_shard([info], []), REPO)
    # a file using an already stored xorb (dedup: the client does not send it again)
    store.read_back = 0
    x4 = new_xorb()
    x4.put(store, REPO)
    info, data = file_info([x4.term(), x1.term()])
    assert store.register_shard(build_shard([info], []), REPO)[1][0].sha256 == hashlib.sha256(data).hexdigest()
    assert store.read_back == len(b"".join(x1.chunks))


def test_timings_are_written_where_haven_xet_timings_says(store, tmp_path, monkeypatch):
    import json

    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv("HAVEN_XET_TIMINGS", str(path))
    xorbs = [new_xorb() for _ in range(2)]
    for x in xorbs:
        x.put(store, REPO)
    info, data = file_info([x.term() for x in xorbs])
    store.register_shard(build_shard([info], []), REPO)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    stored = [r for r in rows if r["kind"] == "xorb"]
    assert [r["bytes"] for r in stored] == [len(x.body) for x in xorbs]
    assert sum(r["bytes"] for r in rows if r["kind"] == "run") == len(data)  # hashed in the background
    (shard,) = [r for r in rows if r["kind"] == "shard"]
    assert shard["read_back"] == 0 and shard["files"] == 1
    for r in rows:
        assert r["start"] <= r["end"] and all(r[k] >= 0 for k in ("wait", "verify", "write", "record", "sha256") if k in r)
