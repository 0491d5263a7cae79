"""Garbage collection of large files: the bytes no repository can serve any more.

A repository serves the LFS objects listed for it (`repo_lfs_objects`, see `api/lfsrefs.py`),
whether their bytes arrived through LFS or through Xet; deleting the repository deletes its rows.
`collect` then removes what nothing lists, among what is older than `grace`:

- Xet files whose sha256 no repository lists; then the xorbs that no remaining file uses (their
  chunk index and dedup entries go with them), and the shards whose repository is gone (what they
  said lives on in the tables);
- blobs with nothing to serve them: LFS objects (`lfs/<sha256>`) no repository lists, and xorb
  and shard blobs without a row (the rows above, or an upload that failed between storing its
  bytes and recording them).

`grace` protects uploads in flight: an LFS object is listed as it is uploaded, but a xorb is
recorded before the shard and commit that make it part of a file. A xorb's grace counts from the
last time a client was told it may name it in a shard without sending it (`referenced_at`: its
upload, an upload answered "already stored", a dedup answer), so an old xorb that a new upload
deduplicates against stays until that upload's shard uses it. Rows go before their bytes, so a
reader finds no record rather than a record without bytes. `dry_run` counts the same without
removing anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ..db import RepoLfsObject
from .accounting import human
from .models import XetFile, XetFileXorb, XetShard, XetXorb

DEFAULT_GRACE = 24 * 3600.0  # seconds: younger objects are kept (uploads whose commit has not landed)
_AREAS = ("lfs/", "xet/xorbs/", "xet/shards/")


@dataclass
class Collected:
    """What a collection removed (or, dry, would remove): counts and bytes."""

    files: int = 0  # Xet file records
    lfs_objects: int = 0
    xorbs: int = 0
    shards: int = 0
    bytes: int = 0

    def __str__(self) -> str:
        return (f"{self.lfs_objects} LFS objects, {self.xorbs} xorbs, {self.shards} shards and {self.files} Xet "
                f"file records: {human(self.bytes)}")


def collect(sessions: sessionmaker, blobs, *, grace: float = DEFAULT_GRACE, dry_run: bool = False) -> Collected:
    """Remove (or with `dry_run`, count) what no repository can serve and is older than `grace` s."""
    if grace < 0:
        raise ValueError(f"grace must be at least 0 seconds, not {grace}")
    cutoff = time.time() - grace
    before = datetime.fromtimestamp(cutoff, UTC).replace(tzinfo=None)  # the tables keep naive UTC
    out = Collected()
    with sessions() as session:
        files, xorbs, shards = _dead_rows(session, before)
        out.files = len(files)
        if not dry_run:
            for table, column, keys in ((XetFile, XetFile.hash, files), (XetXorb, XetXorb.hash, xorbs),
                                        (XetShard, XetShard.sha256, shards)):
                for i in range(0, len(keys), 500):
                    session.execute(delete(table).where(column.in_(keys[i : i + 500])))
            session.commit()
        live = set(session.scalars(select(RepoLfsObject.oid).distinct()))
        recorded = {
            "xet/xorbs/": set(session.scalars(select(XetXorb.hash))) - set(xorbs),
            "xet/shards/": set(session.scalars(select(XetShard.sha256))) - set(shards),
            "lfs/": live,
        }
    for area in _AREAS:
        for entry in blobs.entries(area):
            if entry.modified >= cutoff or entry.key[len(area):] in recorded[area]:
                continue
            if area == "lfs/":
                out.lfs_objects += 1
            elif area == "xet/xorbs/":
                out.xorbs += 1
            else:
                out.shards += 1
            out.bytes += entry.size
            if not dry_run:
                blobs.delete(entry.key)
    return out


def _dead_rows(session: Session, before: datetime) -> tuple[list[str], list[str], list[str]]:
    """(Xet files, xorbs, shards) to remove: files no repository lists, xorbs no other file uses,
    shards of deleted repositories; all recorded (xorbs: last referenced) before `before`."""
    listed = exists().where(RepoLfsObject.oid == XetFile.sha256)
    files = list(session.scalars(select(XetFile.hash).where(XetFile.created_at < before, ~listed)))
    kept_file = (
        select(XetFileXorb.file)
        .join(XetFile, XetFile.hash == XetFileXorb.file)
        .where(XetFileXorb.xorb == XetXorb.hash, or_(XetFile.created_at >= before, listed))
    )
    xorbs = list(session.scalars(select(XetXorb.hash).where(XetXorb.referenced_at < before, ~kept_file.exists())))
    shards = list(session.scalars(select(XetShard.sha256).where(XetShard.created_at < before,
                                                                XetShard.repo_id.is_(None))))
    return files, xorbs, shards
