"""The request's database session, caller and repository, declared once as `Annotated`
dependencies. A route names what it needs:

    def delete_tag(repo: WritableRepo, session: SessionDep, caller: CallerDep) -> dict: ...

`ReadableRepo` / `WritableRepo` read the `{plural}/{ns}/{name}` path parameters and answer 404
for a repository the caller may not see (never 403), and 401/403 for a visible one the caller
may not change (see `common.load_repo`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from .. import auth
from ..db import Repo
from .common import REPO_TYPES, NoSuchRoute, get_principal, get_session, load_repo

SessionDep = Annotated[Session, Depends(get_session, scope="function")]
CallerDep = Annotated[auth.Principal, Depends(get_principal)]


def repo_type_of(plural: str) -> str:
    """`models` -> `model`, `datasets` -> `dataset`; anything else is no route of this hub."""
    if plural not in REPO_TYPES:
        raise NoSuchRoute()  # /api/spaces/..., /api/users/NAME/likes ...
    return REPO_TYPES[plural]


def readable_repo(plural: str, ns: str, name: str, session: SessionDep, caller: CallerDep) -> Repo:
    return load_repo(session, caller, repo_type_of(plural), f"{ns}/{name}")


def writable_repo(plural: str, ns: str, name: str, session: SessionDep, caller: CallerDep) -> Repo:
    return load_repo(session, caller, repo_type_of(plural), f"{ns}/{name}", write=True)


ReadableRepo = Annotated[Repo, Depends(readable_repo)]
WritableRepo = Annotated[Repo, Depends(writable_repo)]

__all__ = ["SessionDep", "CallerDep", "ReadableRepo", "WritableRepo", "repo_type_of"]
