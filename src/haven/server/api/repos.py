"""Repositories: create, delete, move, settings, info, tree, paths-info (refs and commits: refs.py).

Two routers: `/api/repos/...` (create, delete, move: the repository is named in the body) and
`/api/{plural}/{ns}/{name}...` (the repository is named in the path); `router` holds both.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import auth, storage
from ..db import Org, Repo, User, utcnow
from . import index
from .bodies import (
    CreateRepoBody,
    MoveRepoBody,
    PathsInfoBody,
    RepoSettingsBody,
    SafeJsonRoute,
    read_json_object,
    validated,
)
from .common import ApiError, find_repo, raw_ref, raw_tail, repo_not_found, repo_url, require_user
from .deps import CallerDep, ReadableRepo, RepoToDelete, RepoToMove, SessionDep, WritableRepo

repos_router = APIRouter(prefix="/api/repos", route_class=SafeJsonRoute)
repo_router = APIRouter(prefix="/api/{plural}/{ns}/{name}", route_class=SafeJsonRoute)
TREE_PAGE = 1000
TREE_PAGE_EXPANDED = 100


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in the Hub's exact form: 2024-01-02T03:04:05.678Z."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def check_repo_id(repo_id: str) -> None:
    ns, _, name = repo_id.partition("/")
    if not (auth.valid_name(ns) and auth.valid_name(name)):
        raise ApiError(
            400,
            f"invalid repository id {repo_id!r}: use 'namespace/name' where each part starts with a letter or "
            "digit and has only letters, digits, '.', '_' or '-' (max 96), no '--' or '..', not ending in '.git'",
        )


def store(request: Request):
    return request.app.state.repos


def refresh_index(request: Request, session: Session, repo: Repo) -> None:
    index.refresh(session, store(request), repo)


# -- create / delete / move / settings ------------------------------------------------------------


def _namespace_exists(session: Session, ns: str) -> bool:
    return bool(
        session.scalar(select(User.id).where(User.name == ns))
        or session.scalar(select(Org.id).where(Org.name == ns))
    )


def create_repository(
    request: Request, session: Session, p: auth.Principal, repo_type: str, repo_id: str, private: bool
) -> Repo:
    """A new repository `repo_id` owned by `p`'s namespace or one of its organisations (the API's
    create and the web's /new): name, namespace, membership and role checked; 409 if it exists."""
    require_user(p)
    ns, _, name = repo_id.partition("/")
    check_repo_id(repo_id)
    if not _namespace_exists(session, ns):
        raise ApiError(404, f"no user or organization named {ns!r}")
    if not auth.is_member(p, ns):
        raise ApiError(
            403,
            f"you ({p.name}) may not create repositories under {ns!r}: only its owner or its "
            "organization's members can",
        )
    if p.role != "write":
        raise ApiError(
            403, "this token is read-only: use a token with the 'write' role to create repositories"
        )
    url = repo_url(request, repo_type, repo_id)
    if find_repo(session, repo_type, repo_id) is not None:
        raise ApiError(409, f"You already created this {repo_type} repo: {repo_id}", extra={"url": url})
    st = store(request)
    # A git directory with no row was left by a crash of a version before the storage journal:
    # adopt it. Otherwise the repository is created and kept only if its row is committed.
    creating = nullcontext() if st.exists(repo_type, repo_id) else st.creating(repo_type, repo_id, author=p.name)
    with creating:
        repo = Repo(type=repo_type, namespace=ns, name=name, private=private, created_at=utcnow(), tags=[])
        session.add(repo)
        index.refresh(session, st, repo)
        session.commit()
    return repo


def require_admin(p: auth.Principal, repo: Repo, action: str) -> None:
    """403 unless `p` may administer `repo` (settings, move, delete): its owner or an org admin."""
    if not auth.can_administer(p, repo.namespace):
        raise ApiError(
            403,
            f"you ({p.name}) may not {action} {repo.repo_id}: only its owner or an admin of the "
            f"organization {repo.namespace!r} can (ask one of them, or for the admin role)",
        )


def delete_repository(request: Request, session: Session, p: auth.Principal, repo: Repo) -> None:
    """Delete `repo` (visible to the caller): its git directory and its row, together."""
    require_admin(p, repo, "delete")
    try:
        with store(request).deleting(repo.type, repo.repo_id):  # put back if the row stays
            session.delete(repo)
            session.commit()
    except storage.RepoNotFound:  # a row without its git directory (left by an older version): drop the row
        session.delete(repo)
        session.commit()


def move_repository(request: Request, session: Session, p: auth.Principal, repo: Repo, dst: str) -> None:
    """Rename `repo` (visible to the caller) to `dst`, in a namespace `p` may write to."""
    require_admin(p, repo, "move")
    check_repo_id(dst)
    new_ns, _, new_name = dst.partition("/")
    if not auth.can_write_namespace(p, new_ns):
        raise ApiError(403, f"you ({p.name}) may not move repositories into {new_ns!r}")
    if find_repo(session, repo.type, dst) is not None:
        raise ApiError(409, f"a {repo.type} repo named {dst} already exists")
    with store(request).moving(repo.type, repo.repo_id, dst):  # renamed back if the row is not
        repo.namespace, repo.name = new_ns, new_name
        session.commit()


def set_visibility(p: auth.Principal, repo: Repo, private: bool) -> None:
    """Make `repo` (visible to the caller) private or public."""
    require_admin(p, repo, "change the visibility of")
    repo.private = private


@repos_router.post("/create")
def create_repo(request: Request, body: CreateRepoBody, session: SessionDep, p: CallerDep) -> dict:
    repo_type = body.type or "model"
    repo_id = body.repo_id(require_user(p).name)
    create_repository(request, session, p, repo_type, repo_id, body.is_private())
    return {"url": repo_url(request, repo_type, repo_id), "name": repo_id, "id": repo_id}


@repos_router.delete("/delete")
def delete_repo(request: Request, repo: RepoToDelete, session: SessionDep, p: CallerDep) -> Response:
    delete_repository(request, session, p, repo)
    return Response(status_code=200)


@repos_router.post("/move")
def move_repo(request: Request, repo: RepoToMove, body: MoveRepoBody, session: SessionDep, p: CallerDep) -> dict:
    move_repository(request, session, p, repo, body.toRepo)
    return {"url": repo_url(request, repo.type, body.toRepo)}


@repo_router.put("/settings")
def update_settings(repo: WritableRepo, body: RepoSettingsBody, p: CallerDep) -> dict:
    if body.gated not in (None, False):
        raise ApiError(400, "gated repositories are not supported by this hub")
    if body.model_fields_set & {"private", "visibility"}:
        set_visibility(p, repo, body.is_private())
    return {"private": repo.private}


# -- info -----------------------------------------------------------------------------------------


def sibling(entry) -> dict:
    item = {"rfilename": entry.path, "size": entry.size, "blobId": entry.oid}
    if entry.lfs is not None:
        item["lfs"] = {"size": entry.lfs.size, "sha256": entry.lfs.oid, "pointerSize": entry.lfs.pointer_size}
    return item


def repo_summary(repo: Repo, *, full: bool = False) -> dict:
    """The fields listing shows for every repo."""
    data = {
        "_id": str(repo.id),
        "id": repo.repo_id,
        "author": repo.namespace,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": repo.downloads,
        "likes": repo.likes,
        "tags": list(repo.tags or []),
        "lastModified": iso(repo.last_modified),
        "createdAt": iso(repo.created_at),
        "sha": repo.sha or None,
    }
    if repo.type == "model":
        data["modelId"] = repo.repo_id
        data["pipeline_tag"] = repo.pipeline_tag
        data["library_name"] = repo.library_name
    if full:
        data["cardData"] = repo.card_data
    return data


def info_payload(request: Request, repo: Repo, sha: str, *, blobs: bool) -> dict:
    st = store(request)
    data = repo_summary(repo, full=True)
    data["sha"] = sha
    entries = st.list_tree(repo.type, repo.repo_id, sha, "", recursive=True)
    files = [e for e in entries if e.type == "file"]
    data["siblings"] = [sibling(e) if blobs else {"rfilename": e.path} for e in files]
    if blobs:
        data["usedStorage"] = sum(e.size for e in files)
    if repo.type == "model":
        data["config"] = repo.config or {}
        if repo.safetensors:
            data["safetensors"] = repo.safetensors
        info = transformers_info(repo, [e.path for e in files])
        if info is not None:
            data["transformersInfo"] = info
    return data


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")


def transformers_info(repo: Repo, files: list[str]) -> dict | None:
    """`transformersInfo` as the Hub gives it for a transformers model: the Auto class of the head
    named in config.json `architectures`, that head's task and the tokenizer's Auto class."""
    if repo.type != "model" or repo.library_name != "transformers" or not repo.config:
        return None
    architectures = repo.config.get("architectures")
    auto = index.auto_model_from_architectures(architectures)
    if auto is None:
        return None
    info = {"auto_model": auto, "pipeline_tag": index.pipeline_from_architectures(architectures)}
    if any(f in TOKENIZER_FILES for f in files):
        info["processor"] = "AutoTokenizer"
    return info


@repo_router.get("")
def repo_info(request: Request, repo: ReadableRepo, session: SessionDep, blobs: bool = False) -> dict:
    """Repo info at the head of main (and a refresh of the index, should a push have outrun it)."""
    refresh_index(request, session, repo)
    sha = store(request).resolve(repo.type, repo.repo_id, "main")
    return info_payload(request, repo, sha, blobs=blobs)


@repo_router.get("/revision/{rest:path}")
def repo_info_at(request: Request, repo: ReadableRepo, rest: str, blobs: bool = False) -> dict:
    rev = raw_ref(request, repo.repo_id, "revision")  # quoted, or with its slashes unquoted
    sha = store(request).resolve(repo.type, repo.repo_id, rev)
    return info_payload(request, repo, sha, blobs=blobs)


# -- tree / paths-info ----------------------------------------------------------------------------


def tree_item(entry, last: dict | None = None) -> dict:
    if entry.type == "directory":
        item = {"type": "directory", "oid": entry.oid, "size": 0, "path": entry.path}
    else:
        item = {"type": "file", "oid": entry.oid, "size": entry.size, "path": entry.path}
        if entry.lfs is not None:
            item["lfs"] = {
                "oid": entry.lfs.oid,
                "size": entry.lfs.size,
                "pointerSize": entry.lfs.pointer_size,
            }
    if last is not None and entry.path in last:
        c = last[entry.path]
        item["lastCommit"] = {"id": c.id, "title": c.title, "date": iso(c.date)}
    return item


@repo_router.get("/tree/{rest:path}")
def list_tree(
    request: Request,
    repo: ReadableRepo,
    rest: str,
    recursive: bool = False,
    expand: bool = False,
    cursor: int = 0,
    limit: int | None = None,
) -> Response:
    rev, path = raw_tail(request, repo.repo_id, "tree")
    st = store(request)
    sha = st.resolve(repo.type, repo.repo_id, rev)
    path = path.strip("/")
    entries = st.list_tree(repo.type, repo.repo_id, sha, path, recursive=recursive)
    page = max(1, min(limit or (TREE_PAGE_EXPANDED if expand else TREE_PAGE), TREE_PAGE))
    chunk = entries[cursor : cursor + page]
    last = (
        st.last_commit_for(repo.type, repo.repo_id, sha, [e.path for e in chunk])
        if expand and chunk
        else None
    )
    items = [tree_item(e, last) for e in chunk]
    headers = {}
    if cursor + page < len(entries):
        query = {"recursive": str(recursive).lower(), "expand": str(expand).lower(), "cursor": cursor + page}
        if limit:
            query["limit"] = limit
        tail = f"/{quote(path)}" if path else ""
        url = f"{repo_url_api(request, repo)}/tree/{quote(rev, safe='')}{tail}?{urlencode(query)}"
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(items, headers=headers)


def repo_url_api(request: Request, repo: Repo) -> str:
    return f"{request.app.state.settings.public_url}/api/{repo.type}s/{repo.repo_id}"


async def paths_info_body(request: Request) -> PathsInfoBody:
    """The paths-info body: a form (huggingface_hub sends `paths=a&paths=b&expand=True`) or JSON,
    read on the event loop and checked as `PathsInfoBody` (400 naming the field)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        data = await read_json_object(request)
    else:
        form = await request.form()
        data = {"paths": form.getlist("paths")}
        if "expand" in form:
            data["expand"] = form["expand"]
    if isinstance(data.get("paths"), str):
        data["paths"] = [data["paths"]]
    return validated(PathsInfoBody, data)


@repo_router.post("/paths-info/{rest:path}", openapi_extra={"requestBody": {"content": {
    "application/x-www-form-urlencoded": {"schema": PathsInfoBody.model_json_schema()},
    "application/json": {"schema": PathsInfoBody.model_json_schema()},
}}})
def paths_info(
    request: Request, repo: ReadableRepo, rest: str, body: Annotated[PathsInfoBody, Depends(paths_info_body)]
) -> list:
    rev, _ = raw_tail(request, repo.repo_id, "paths-info")
    st = store(request)
    sha = st.resolve(repo.type, repo.repo_id, rev)
    found = []
    for path in body.paths:
        try:
            found.append(st.entry(repo.type, repo.repo_id, sha, path.strip("/")))
        except (storage.EntryNotFound, storage.InvalidPathError):
            continue
    last = (
        st.last_commit_for(repo.type, repo.repo_id, sha, [e.path for e in found])
        if body.expand and found
        else None
    )
    return [tree_item(e, last) for e in found]


router = APIRouter()
router.include_router(repos_router)
router.include_router(repo_router)

__all__ = [
    "router", "repo_not_found", "iso", "repo_summary", "check_repo_id", "refresh_index", "transformers_info",
]
