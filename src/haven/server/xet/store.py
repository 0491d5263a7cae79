"""The Xet store: xorbs and shards in the BlobStore (`xet/xorbs/<hash>`, `xet/shards/<sha256>`),
what they hold in the database (`models`), files reconstructed from xorbs, and the object source
that lets the LFS store serve a Xet-uploaded file by its sha256 (so git-lfs, the LFS batch API and
resolve serve it with no Xet code of their own, and no second copy of the bytes is kept).

Everything the server records is verified from bytes it holds: a xorb's hash from its chunks, a
file's hash, each term's verification hash and size from the xorbs' chunk index, and the file's
sha256 from its bytes: hashed as its xorbs arrived where they came in file order (`runs`), read
back from the xorbs when its shard arrives for the rest.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..db import utcnow
from .hashing import file_hash, from_hex, to_hex, verification_hash
from .models import XetDedupChunk, XetFile, XetFileXorb, XetShard, XetXorb
from .runs import Runs
from .shard import Shard, ShardError, Term, XorbInfo, parse_shard
from .timing import Laps
from .xorb import XorbError, XorbIndex, XorbReader, read_chunks

DEDUP_MODULUS = 1024  # a chunk whose hash is 0 mod this is answered by the global dedup query
DEDUP_XORBS = 64  # xorbs in one dedup answer (about 4 GB of content, ~3 MB of shard)
_TERM = struct.Struct("<32sIII")  # xorb hash, start, end, unpacked bytes


def xorb_key(h: str) -> str:
    return f"xet/xorbs/{h}"


def pack_terms(terms: list[Term]) -> bytes:
    return b"".join(_TERM.pack(t.xorb, t.start, t.end, t.unpacked_bytes) for t in terms)


def unpack_terms(data: bytes) -> list[Term]:
    return [Term(x, size, start, end) for x, start, end, size in _TERM.iter_unpack(data)]


def dedup_eligible(h: bytes) -> bool:
    return int.from_bytes(h[24:32], "little") % DEDUP_MODULUS == 0


@dataclass(frozen=True)
class FileRecord:
    hash: str
    sha256: str
    size: int
    terms: list[Term]


class XetStore:
    """Xorbs, shards and files over a BlobStore and the database."""

    def __init__(self, blobs, sessions: sessionmaker):
        self.blobs, self.sessions = blobs, sessions
        self._indexes: dict[str, XorbIndex] = {}
        self.runs = Runs(self._xorb_bytes)

    # -- xorbs --------------------------------------------------------------------------------

    def has_xorb(self, session: Session, h: str) -> bool:
        return session.get(XetXorb, h) is not None

    def referenced(self, session: Session, hashes: list[str]) -> None:
        """Note that a client was just told it may name these xorbs in a shard without sending
        them: `haven admin gc` keeps them for its grace period from now (`referenced_at`)."""
        if hashes:
            session.execute(update(XetXorb).where(XetXorb.hash.in_(hashes)).values(referenced_at=utcnow()))
            session.commit()

    def put_xorb(self, h: str, parts: Iterator[bytes], repo_pk: int | None) -> bool:
        """Verify a xorb while streaming it into the blob store, then record it; False if it was
        already here. XorbError (nothing published) when the bytes do not make the xorb `h`.
        The xorb then continues the sha256 of the repository's run (`runs`), in the background."""
        link, laps = self.runs.claim(repo_pk, from_hex(h)), Laps()
        try:
            index, size = self._put_xorb(h, parts, laps)
            inserted = self._record_xorb(h, index, size, repo_pk)
        except BaseException:
            self.runs.release(link)
            raise
        self.runs.stored(link, len(index))
        laps.lap("record")
        laps.report("xorb", xorb=h, bytes=size, chunks=len(index))
        return inserted

    def _put_xorb(self, h: str, parts: Iterator[bytes], laps: Laps) -> tuple[XorbIndex, int]:
        """Stream a xorb into the blob store, verified: (its index, its stored size). `laps` gets
        the time spent waiting for the body, verifying it and writing it."""
        reader, verified = XorbReader(from_hex(h)), {}

        def checked() -> Iterator[bytes]:
            for part in parts:
                laps.lap("wait")
                reader.feed(part)
                laps.lap("verify")
                yield part
                laps.lap("write")
            verified["index"] = reader.finish()  # raising here aborts the put: nothing published
            laps.lap("verify")

        stream = checked()
        size = self.blobs.put(xorb_key(h), stream)
        for _ in stream:  # the key was there already (a lost race): still verify what was sent
            pass
        laps.lap("write")
        index = verified["index"]
        if size != reader.received:  # the key holds another encoding of these chunks (a crashed
            index = self._stored_index(h)  # upload's bytes): index what is stored, not what was sent
        return index, size

    def _record_xorb(self, h: str, index: XorbIndex, size: int, repo_pk: int | None) -> bool:
        def record(session: Session) -> bool:
            if self.has_xorb(session, h):  # a concurrent upload recorded it first
                self.referenced(session, [h])
                return False
            session.add(XetXorb(hash=h, size=size, chunk_count=len(index), unpacked_bytes=index.unpacked_ends[-1],
                                chunk_index=index.to_bytes(), repo_id=repo_pk))
            for ch in index.hashes:
                if dedup_eligible(ch):
                    session.merge(XetDedupChunk(chunk=to_hex(ch), xorb=h))
            session.commit()
            return True

        return self._recording(record)

    def _stored_index(self, h: str) -> XorbIndex:
        reader = XorbReader(from_hex(h))
        for part in self.blobs.read(xorb_key(h)):
            reader.feed(part)
        return reader.finish()

    def _recording(self, record):
        """`record(session)`, checking then inserting; an identical upload that inserted the same
        rows in between (IntegrityError) makes it run once more, and its checks now see them."""
        for attempt in (1, 2):
            with self.sessions() as session:
                try:
                    return record(session)
                except IntegrityError:
                    session.rollback()
                    if attempt == 2:
                        raise

    def index(self, session: Session, h: str) -> XorbIndex | None:
        """A stored xorb's chunk index (cached; threads share the cache, so another may empty it
        between this one's insert and its return: the index returned is the local one)."""
        index = self._indexes.get(h)
        if index is None:
            row = session.get(XetXorb, h)
            if row is None:
                return None
            index = XorbIndex.from_bytes(row.chunk_index)
            if len(self._indexes) > 256:
                self._indexes.clear()
            self._indexes[h] = index
        return index

    # -- shards -------------------------------------------------------------------------------

    def register_shard(self, data: bytes, repo_pk: int) -> tuple[int, list[FileRecord]]:
        """Verify a shard and record its files: (1 registered | 0 already here, the files).
        ShardError for anything wrong, with nothing recorded."""
        try:
            return self._register_shard(data, repo_pk)
        finally:
            self.runs.end(repo_pk)  # the upload is complete: its runs are of no further use

    def _register_shard(self, data: bytes, repo_pk: int) -> tuple[int, list[FileRecord]]:
        laps = Laps()
        shard = parse_shard(data)
        digest = hashlib.sha256(data).hexdigest()
        with self.sessions() as session:
            records = [self._verify_file(session, f) for f in shard.files]
            self._verify_xorb_infos(session, shard)
            new = []
            for r in records:
                known = session.get(XetFile, r.hash)
                if known is None:
                    new.append(r)
                elif known.sha256 != r.sha256:  # the bytes are known: so is their sha256
                    raise ShardError(f"file {r.hash} has sha256 {known.sha256}, not the {r.sha256} its metadata names")
        laps.lap("verify")
        if len(new) > 1:  # sha256 and LZ4 release the GIL: check several files at once
            with ThreadPoolExecutor(min(4, len(new))) as pool:
                read_back = sum(pool.map(lambda r: self._check_sha256(r, repo_pk), new))
        else:
            read_back = sum(self._check_sha256(r, repo_pk) for r in new)
        laps.lap("sha256")

        def record(session: Session) -> bool:
            for r in new:
                if session.get(XetFile, r.hash) is None:
                    session.add(XetFile(hash=r.hash, sha256=r.sha256, size=r.size, terms=pack_terms(r.terms)))
                    session.add_all(XetFileXorb(file=r.hash, xorb=x) for x in {to_hex(t.xorb) for t in r.terms})
                    first = self.index(session, to_hex(r.terms[0].xorb)).hashes[r.terms[0].start] if r.terms else None
                    if first is not None:
                        session.merge(XetDedupChunk(chunk=to_hex(first), xorb=to_hex(r.terms[0].xorb)))
            fresh = session.get(XetShard, digest) is None
            if fresh:
                self.blobs.put(f"xet/shards/{digest}", [data])
                session.add(XetShard(sha256=digest, size=len(data), repo_id=repo_pk))
            session.commit()
            return fresh

        result = 1 if self._recording(record) else 0
        laps.lap("record")
        laps.report("shard", bytes=len(data), files=len(records), read_back=read_back)
        return result, records

    def _verify_file(self, session: Session, f) -> FileRecord:
        name = to_hex(f.file_hash)
        if f.sha256 is None:
            raise ShardError(f"file {name} has no sha256 metadata: repositories on this hub store files as "
                             "LFS pointers, which name the sha256")
        if f.terms and (f.verification is None or len(f.verification) != len(f.terms)):
            raise ShardError(f"file {name} has no verification entries: every term needs one")
        leaves: list[tuple[bytes, int]] = []
        for i, term in enumerate(f.terms):
            xh = to_hex(term.xorb)
            index = self.index(session, xh)
            if index is None:
                raise ShardError(f"file {name} names xorb {xh}, which is not on this hub: upload the xorb first")
            if term.end > len(index):
                raise ShardError(f"file {name} names chunks [{term.start}, {term.end}) of xorb {xh}, which has "
                                 f"{len(index)}")
            hashes = index.hashes[term.start : term.end]
            if verification_hash(hashes) != f.verification[i]:
                raise ShardError(f"term {i} of file {name}: the verification hash does not match xorb {xh}'s "
                                 "chunks")
            if index.unpacked_length(term.start, term.end) != term.unpacked_bytes:
                raise ShardError(f"term {i} of file {name} says {term.unpacked_bytes} bytes; those chunks of "
                                 f"xorb {xh} hold {index.unpacked_length(term.start, term.end)}")
            for c in range(term.start, term.end):
                leaves.append((index.hashes[c], index.unpacked_length(c, c + 1)))
        if file_hash(leaves) != f.file_hash:
            raise ShardError(f"file {name}: its chunks hash to {to_hex(file_hash(leaves))}, not the file hash named")
        return FileRecord(name, to_hex(f.sha256), sum(t.unpacked_bytes for t in f.terms), list(f.terms))

    def _verify_xorb_infos(self, session: Session, shard: Shard) -> None:
        for info in shard.xorbs:
            if not self.has_xorb(session, to_hex(info.xorb)):
                raise ShardError(f"the shard lists xorb {to_hex(info.xorb)}, which is not on this hub: upload it first")

    def _check_sha256(self, record: FileRecord, repo_pk: int) -> int:
        """Refuse the file unless its bytes hash to the sha256 its metadata names: the whole xorbs
        the repository's run hashed as they arrived (`runs`) count as hashed, the rest is read
        back (the bytes read back)."""
        hasher, covered = self.runs.prefix(repo_pk, record.terms)
        rest = record.terms[covered:]
        size = sum(t.unpacked_bytes for t in rest)
        for part in self.read_terms(rest, 0, size, views=True):
            hasher.update(part)
        if hasher.hexdigest() != record.sha256:
            raise ShardError(f"file {record.hash}: its bytes hash to sha256 {hasher.hexdigest()}, not the "
                             f"{record.sha256} its metadata names")
        return size

    # -- files --------------------------------------------------------------------------------

    def file(self, session: Session, file_hex: str) -> FileRecord | None:
        row = session.get(XetFile, file_hex)
        return None if row is None else FileRecord(row.hash, row.sha256, row.size, unpack_terms(row.terms))

    def file_by_sha256(self, session: Session, oid: str) -> FileRecord | None:
        row = session.scalars(select(XetFile).where(XetFile.sha256 == oid).limit(1)).first()
        return None if row is None else FileRecord(row.hash, row.sha256, row.size, unpack_terms(row.terms))

    def read_terms(self, terms: list[Term], start: int, end: int, *, views: bool = False) -> Iterator[bytes]:
        """Bytes [start, end) of the file these terms make, decoded from the stored xorbs (with
        `views`, memoryviews valid until the next item)."""
        offset = 0
        with self.sessions() as session:
            indexes = {t.xorb: self.index(session, to_hex(t.xorb)) for t in terms}
        for term in terms:
            t_end = offset + term.unpacked_bytes
            if t_end > start and offset < end:
                index = indexes[term.xorb]
                data = self._packed(to_hex(term.xorb), *index.packed_range(term.start, term.end))
                pos = offset
                for chunk in read_chunks(data, term.end - term.start):
                    c_end = pos + len(chunk)
                    if c_end > start and pos < end:
                        piece = chunk[max(0, start - pos) : min(len(chunk), end - pos)]
                        yield piece if views else bytes(piece)
                    pos = c_end
            offset = t_end
            if offset >= end:
                break

    def _xorb_bytes(self, xorb: bytes, chunks: int) -> Iterator[bytes | memoryview]:
        """The decoded bytes of the first `chunks` chunks of a stored xorb, chunk by chunk."""
        h = to_hex(xorb)
        return read_chunks(self._packed(h, 0, self.blobs.size(xorb_key(h))), chunks)

    def _packed(self, h: str, first: int, last: int) -> bytes | memoryview:
        """Bytes [first, last) of a stored xorb: a view of the mapped file when the blob store is
        local (no copy), else read from the store."""
        path = self.blobs.local_path(xorb_key(h))
        if path is None:
            return b"".join(self.blobs.read(xorb_key(h), first, last))
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return memoryview(mapped)[first:last]

    def dedup_xorbs(self, session: Session, chunk_hex: str) -> list[XorbInfo]:
        """The xorb holding a dedup-eligible chunk, then the other xorbs of files that use it (the
        protocol lets the answer list xorbs the client likely shares content with), at most
        DEDUP_XORBS."""
        row = session.get(XetDedupChunk, chunk_hex)
        if row is None:
            return []
        files = select(XetFileXorb.file).where(XetFileXorb.xorb == row.xorb)
        companions = session.scalars(
            select(XetFileXorb.xorb).where(XetFileXorb.file.in_(files), XetFileXorb.xorb != row.xorb).distinct()
            .limit(DEDUP_XORBS - 1)
        ).all()
        infos = []
        for h in [row.xorb, *companions]:
            xorb, index = session.get(XetXorb, h), self.index(session, h)
            if xorb is None or index is None:
                continue
            info = XorbInfo(from_hex(h), len(index), xorb.unpacked_bytes, xorb.size)
            starts = [0, *index.packed_ends[:-1]]
            info.chunks = [(c, s, index.unpacked_length(i, i + 1)) for i, (c, s) in enumerate(zip(index.hashes, starts))]
            infos.append(info)
        return infos


class XetObjectSource:
    """Xet-uploaded files as LFS objects, by sha256 (the LFS store's ObjectSource protocol)."""

    def __init__(self, store: XetStore):
        self.store = store

    def _record(self, oid: str) -> FileRecord | None:
        with self.store.sessions() as session:
            return self.store.file_by_sha256(session, oid)

    def has(self, oid: str) -> bool:
        return self._record(oid) is not None

    def size(self, oid: str) -> int:
        record = self._record(oid)
        if record is None:
            raise KeyError(oid)
        return record.size

    def read(self, oid: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        record = self._record(oid)
        if record is None:
            raise KeyError(oid)
        return self.store.read_terms(record.terms, start, record.size if end is None else end)


__all__ = ["XetStore", "XetObjectSource", "FileRecord", "XorbError", "ShardError", "XorbReader"]
