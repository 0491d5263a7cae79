"""The Xet store's tables (migrations 0007, 0008): verified xorbs with their chunk index, files with their
terms and the xorbs they use, the chunks the global dedup query can answer for, and the shards
received."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, utcnow


class XetXorb(Base):
    __tablename__ = "xet_xorbs"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # protocol hex string
    size: Mapped[int] = mapped_column(BigInteger)  # bytes stored (the upload, as sent)
    chunk_count: Mapped[int] = mapped_column(Integer)
    unpacked_bytes: Mapped[int] = mapped_column(BigInteger)
    chunk_index: Mapped[bytes] = mapped_column(LargeBinary)  # xorb.XorbIndex.to_bytes()
    # the repository whose write token first uploaded it (accounting); NULL once that repo is gone
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # when a client was last told it may name this xorb in a shard without sending it (its upload,
    # an upload answered "already stored", a dedup answer): `haven admin gc`'s grace counts from here
    referenced_at: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow, nullable=True)


class XetFile(Base):
    __tablename__ = "xet_files"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # Xet file hash, hex string
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    terms: Mapped[bytes] = mapped_column(LargeBinary)  # store.pack_terms
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class XetDedupChunk(Base):
    """A chunk eligible for the global dedup query (its hash is 0 mod 1024) and a xorb holding it."""

    __tablename__ = "xet_dedup_chunks"
    chunk: Mapped[str] = mapped_column(String(64), primary_key=True)
    xorb: Mapped[str] = mapped_column(ForeignKey("xet_xorbs.hash", ondelete="CASCADE"))


class XetFileXorb(Base):
    """A xorb a file's terms use: the dedup query answers with a xorb's companions in files."""

    __tablename__ = "xet_file_xorbs"
    file: Mapped[str] = mapped_column(ForeignKey("xet_files.hash", ondelete="CASCADE"), primary_key=True)
    xorb: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class XetShard(Base):
    __tablename__ = "xet_shards"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
