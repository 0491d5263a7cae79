"""Storage accounting: per repository and for the hub, logical bytes (the large files users see)
against stored bytes (what the blob store holds).

- logical, per repository: the sizes of the LFS objects it may serve (`repo_lfs_objects`), whether
  their bytes arrived through LFS or through Xet;
- stored, per repository: the xorbs and shards first uploaded with its Xet write tokens, plus the
  LFS-stored objects it lists (an LFS object listed by two repositories counts for both; the hub
  total counts it once);
- the hub: logical is the sum over repositories; stored is what the blob store holds under `lfs/`
  and `xet/`.
Small files live in git and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import Repo, RepoLfsObject
from ..storage.blobs import BlobNotFound, usage
from .models import XetFile, XetShard, XetXorb


@dataclass
class RepoUsage:
    repo: str  # "model alice/bert"
    logical: int = 0
    stored: int = 0
    files: int = 0


@dataclass
class HubUsage:
    repos: list[RepoUsage] = field(default_factory=list)
    logical: int = 0
    stored: int = 0
    lfs_stored: int = 0
    xet_stored: int = 0


def storage_usage(session: Session, blobs) -> HubUsage:
    """Logical and stored bytes per repository and for the hub."""
    xet_sizes = dict(session.execute(select(XetFile.sha256, func.max(XetFile.size)).group_by(XetFile.sha256)).all())
    repos = {r.id: RepoUsage(f"{r.type} {r.repo_id}") for r in session.scalars(select(Repo))}
    lfs_sizes: dict[str, int | None] = {}
    for repo_pk, oid in session.execute(select(RepoLfsObject.repo_id, RepoLfsObject.oid)):
        if oid not in lfs_sizes:
            try:
                lfs_sizes[oid] = blobs.size(f"lfs/{oid}")
            except (BlobNotFound, ValueError):
                lfs_sizes[oid] = None
        size = lfs_sizes[oid] if lfs_sizes[oid] is not None else xet_sizes.get(oid)
        if size is None or repo_pk not in repos:
            continue
        row = repos[repo_pk]
        row.logical += size
        row.files += 1
        if lfs_sizes[oid] is not None:
            row.stored += size
    for table in (XetXorb, XetShard):
        for repo_pk, total in session.execute(select(table.repo_id, func.sum(table.size)).group_by(table.repo_id)):
            if repo_pk in repos:
                repos[repo_pk].stored += int(total or 0)
    hub = HubUsage(sorted(repos.values(), key=lambda u: u.repo))
    hub.logical = sum(u.logical for u in hub.repos)
    hub.lfs_stored = usage(blobs, "lfs/")[1]
    hub.xet_stored = usage(blobs, "xet/")[1]
    hub.stored = hub.lfs_stored + hub.xet_stored
    return hub


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def format_usage(hub: HubUsage) -> str:
    """The table `haven admin storage` prints."""
    width = max([len("repository"), *(len(u.repo) for u in hub.repos)])
    lines = [f"{'repository':<{width}}  {'files':>6}  {'logical':>10}  {'stored':>10}"]
    for u in hub.repos:
        lines.append(f"{u.repo:<{width}}  {u.files:>6}  {human(u.logical):>10}  {human(u.stored):>10}")
    saved = f" ({1 - hub.stored / hub.logical:.0%} saved)" if hub.logical else ""
    lines.append(f"hub: logical {human(hub.logical)}, stored {human(hub.stored)}{saved} "
                 f"[LFS {human(hub.lfs_stored)}, Xet {human(hub.xet_stored)}]")
    return "\n".join(lines)
