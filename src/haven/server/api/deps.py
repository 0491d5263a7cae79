"""The request's database session, caller and repository, declared once as `Annotated`
dependencies. A route names what it needs:

    def delete_tag(repo: WritableRepo, session: SessionDep, caller: CallerDep) -> dict: ...

`ReadableRepo` / `WritableRepo` read the `{plural}/{ns}/{name}` path parameters and answer 404
for a repository the caller may not see (never 403), and 401/403 for a visible one the caller
may not change (see `common.load_repo`). Routes whose URL names the type instead of `{plural}`
(`/{ns}/{name}/resolve/...`, `/datasets/{ns}/{name}/resolve/...`) take `ReadableModel` /
`ReadableDataset`; `/api/repos/delete` and `/move` name the repository in their body
(`RepoToDelete`, `RepoToMove`). Git and LFS routes answer anonymous callers differently
(`git_repo`). FastAPI caches each dependency per request: a route that asks for `SessionDep`
next to a repo gets the very session the repo was loaded in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from .. import auth
from ..db import Repo
from .bodies import DeleteRepoBody, MoveRepoBody
from .common import REPO_TYPES, ApiError, NoSuchRoute, find_repo, get_principal, get_session, load_repo

SessionDep = Annotated[Session, Depends(get_session, scope="function")]
CallerDep = Annotated[auth.Principal, Depends(get_principal)]


def repo_type_of(plural: str) -> str:
    """`models` -> `model`, `datasets` -> `dataset`; anything else is no route of this hub."""
    if plural not in REPO_TYPES:
        raise NoSuchRoute()  # /api/spaces/..., /api/kernels/...
    return REPO_TYPES[plural]


def readable_repo(plural: str, ns: str, name: str, session: SessionDep, caller: CallerDep) -> Repo:
    return load_repo(session, caller, repo_type_of(plural), f"{ns}/{name}")


def writable_repo(plural: str, ns: str, name: str, session: SessionDep, caller: CallerDep) -> Repo:
    return load_repo(session, caller, repo_type_of(plural), f"{ns}/{name}", write=True)


def _readable(repo_type: str) -> Callable[..., Repo]:
    def readable(ns: str, name: str, session: SessionDep, caller: CallerDep) -> Repo:
        return load_repo(session, caller, repo_type, f"{ns}/{name}")

    readable.__name__ = f"readable_{repo_type}"
    return readable


def repo_to_delete(body: DeleteRepoBody, session: SessionDep, caller: CallerDep) -> Repo:
    return load_repo(session, caller, body.type or "model", body.repo_id(caller.name), write=True)


def repo_to_move(body: MoveRepoBody, session: SessionDep, caller: CallerDep) -> Repo:
    return load_repo(session, caller, body.type or "model", body.fromRepo, write=True)


def git_repo(session: Session, caller: auth.Principal, repo_type: str, ns: str, name: str, *, write: bool) -> Repo:
    """The repository of a git or LFS URL (`name` may end in `.git`). Anonymous callers get 401
    with `WWW-Authenticate: Basic` for anything they cannot read, or for any write (git and
    git-lfs send credentials only after a 401); signed-in callers get the API's 404/403."""
    name = name.removesuffix(".git")
    repo = find_repo(session, repo_type, f"{ns}/{name}")
    visible = repo is not None and auth.can_read(caller, repo)
    if caller.anonymous and (not visible or write):
        raise ApiError(
            401,
            "authentication required: use your Haven token as the password",
            headers={"WWW-Authenticate": 'Basic realm="Haven"'},
        )
    return load_repo(session, caller, repo_type, f"{ns}/{name}", write=write)


ReadableRepo = Annotated[Repo, Depends(readable_repo)]
WritableRepo = Annotated[Repo, Depends(writable_repo)]
ReadableModel = Annotated[Repo, Depends(_readable("model"))]
ReadableDataset = Annotated[Repo, Depends(_readable("dataset"))]
RepoToDelete = Annotated[Repo, Depends(repo_to_delete)]
RepoToMove = Annotated[Repo, Depends(repo_to_move)]

__all__ = [
    "SessionDep", "CallerDep", "ReadableRepo", "WritableRepo", "ReadableModel", "ReadableDataset",
    "RepoToDelete", "RepoToMove", "git_repo", "repo_type_of",
]
