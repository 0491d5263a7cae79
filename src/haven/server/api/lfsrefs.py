"""Which LFS objects each repository may serve (the `repo_lfs_objects` table).

The object store is shared and content-addressed, so knowing a sha256 must not be enough to
read an object: a repository serves an object (batch download, verify, object GET, resolve)
only when the object is listed for it. An object gets listed for a repository when
- its bytes were uploaded through that repository's LFS batch (proof of possession), or
- a writer of the repository commits or pushes a pointer to an object they can already read
  through another repository (deduplication without re-upload), or
- the table is first filled for an existing data dir (`backfill`, trusted pre-existing state).
A pointer to any other object lands in git but serves nothing (404 EntryNotFound).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .. import auth
from ..db import Repo, RepoLfsObject

log = logging.getLogger("haven.server.lfsrefs")
BACKFILL_MARKER = "repo-lfs-objects.v1"  # under DATA/lfs: the table was filled from the refs


def listed(session: Session, repo_pk: int, oids: Iterable[str]) -> set[str]:
    """The subset of `oids` listed for the repository with primary key `repo_pk`."""
    oids = list(set(oids))
    found: set[str] = set()
    for i in range(0, len(oids), 500):
        found.update(
            session.scalars(
                select(RepoLfsObject.oid).where(
                    RepoLfsObject.repo_id == repo_pk, RepoLfsObject.oid.in_(oids[i : i + 500])
                )
            )
        )
    return found


def readable(session: Session, p: auth.Principal, oids: Iterable[str]) -> set[str]:
    """The subset of `oids` listed for at least one repository the caller may read."""
    oids = list(set(oids))
    found: set[str] = set()
    for i in range(0, len(oids), 500):
        query = (
            select(RepoLfsObject.oid)
            .join(Repo, Repo.id == RepoLfsObject.repo_id)
            .where(RepoLfsObject.oid.in_(oids[i : i + 500]))
        )
        if p.user is None:
            query = query.where(Repo.private.is_(False))
        elif not p.user.is_admin:
            query = query.where(or_(Repo.private.is_(False), Repo.namespace.in_([p.user.name, *p.orgs])))
        found.update(session.scalars(query.distinct()))
    return found


def grant(session: Session, repo_pk: int, oids: Iterable[str]) -> None:
    """List `oids` for the repository (idempotent, safe under concurrent grants)."""
    rows = [{"repo_id": repo_pk, "oid": oid} for oid in sorted(set(oids))]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = pg_insert(RepoLfsObject).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite_insert(RepoLfsObject).on_conflict_do_nothing()
    else:  # other databases: skip what is there (a concurrent duplicate raises, and is retried)
        have = listed(session, repo_pk, [r["oid"] for r in rows])
        rows = [r for r in rows if r["oid"] not in have]
        if not rows:
            return
        stmt = RepoLfsObject.__table__.insert()
    for i in range(0, len(rows), 500):
        session.execute(stmt, rows[i : i + 500])


def grantable(session: Session, p: auth.Principal, repo_pk: int, oids: Iterable[str]) -> set[str]:
    """The subset of `oids` the caller may reference from this repository without uploading."""
    oids = set(oids)
    ok = listed(session, repo_pk, oids)
    rest = oids - ok
    return ok | (readable(session, p, rest) if rest else set())


def tree_oids(store, repo_type: str, repo_id: str) -> set[str]:
    """The LFS oids in the trees of every branch and tag head of a repository."""
    branches, tags = store.refs(repo_type, repo_id)
    oids: set[str] = set()
    seen: set[str] = set()
    for ref in [*branches, *tags]:
        if ref.target_commit in seen:
            continue
        seen.add(ref.target_commit)
        for entry in store.list_tree(repo_type, repo_id, ref.target_commit, "", recursive=True):
            if entry.type == "file" and entry.lfs is not None:
                oids.add(entry.lfs.oid)
    return oids


def after_push(session: Session, store, p: auth.Principal, repo: Repo) -> set[str]:
    """Scan the pushed refs' trees; list the objects the pusher may reference. Returns the oids
    left unlisted (pointers to objects never uploaded through this repo: they serve nothing)."""
    oids = tree_oids(store, repo.type, repo.repo_id)
    ok = grantable(session, p, repo.id, oids)
    grant(session, repo.id, ok)
    missing = oids - ok
    if missing:
        log.warning(
            "push to %s references %d LFS object(s) never uploaded through it; they are not served",
            repo.repo_id,
            len(missing),
        )
    return missing


def backfill(session: Session, store, lfs_root: Path) -> None:
    """Fill the table once from every repository's refs (data dirs made before the table)."""
    marker = lfs_root / BACKFILL_MARKER
    if marker.exists():
        return
    for repo in session.scalars(select(Repo)):
        try:
            oids = tree_oids(store, repo.type, repo.repo_id)
        except Exception as err:  # a broken repo must not stop the server
            log.warning("LFS objects of %s not listed: %s", repo.repo_id, err)
            continue
        grant(session, repo.id, oids)
    session.commit()
    marker.write_text("repo_lfs_objects filled from the refs of every repository\n")
