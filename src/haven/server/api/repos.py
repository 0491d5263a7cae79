"""Repositories: create, delete, move, settings, info, tree, paths-info (refs and commits: refs.py)."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Body, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import auth, storage
from ..db import Org, Repo, User, utcnow
from . import index
from .bodies import SafeJsonRoute, read_json_object
from .common import (
    ApiError,
    find_repo,
    get_principal,
    get_session,
    load_repo,
    raw_ref,
    raw_tail,
    repo_not_found,
    repo_url,
    require_user,
)
from .deps import repo_type_of

router = APIRouter(route_class=SafeJsonRoute)
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


def _visibility(body: dict) -> bool:
    private = body.get("private")
    visibility = body.get("visibility")
    if visibility is not None:
        if visibility not in ("public", "private"):
            raise ApiError(400, f"invalid visibility {visibility!r}: use 'public' or 'private'")
        return visibility == "private"
    return bool(private)


def _namespace_exists(session: Session, ns: str) -> bool:
    return bool(
        session.scalar(select(User.id).where(User.name == ns))
        or session.scalar(select(Org.id).where(Org.name == ns))
    )


@router.post("/api/repos/create")
def create_repo(
    request: Request,
    body: dict = Body(...),
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> dict:
    require_user(p)
    repo_type = body.get("type") or "model"
    if repo_type not in ("model", "dataset"):
        raise ApiError(
            400, f"unsupported repository type {repo_type!r}: this hub serves 'model' and 'dataset'"
        )
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "missing 'name': the repository name")
    ns = body.get("organization") or p.name
    if "/" in name:
        ns, _, name = name.partition("/")
    repo_id = f"{ns}/{name}"
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
    private = _visibility(body)
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
    return {"url": url, "name": repo_id, "id": repo_id}


@router.delete("/api/repos/delete")
def delete_repo(
    request: Request,
    body: dict = Body(...),
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> Response:
    repo_type = body.get("type") or "model"
    name = body.get("name") or ""
    ns = body.get("organization") or p.name
    if "/" in name:
        ns, _, name = name.partition("/")
    repo = load_repo(session, p, repo_type, f"{ns}/{name}", write=True)
    try:
        with store(request).deleting(repo_type, repo.repo_id):  # put back if the row stays
            session.delete(repo)
            session.commit()
    except storage.RepoNotFound:  # a row without its git directory (left by an older version): drop the row
        session.delete(repo)
        session.commit()
    return Response(status_code=200)


@router.post("/api/repos/move")
def move_repo(
    request: Request,
    body: dict = Body(...),
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> dict:
    repo_type = body.get("type") or "model"
    src, dst = body.get("fromRepo") or "", body.get("toRepo") or ""
    repo = load_repo(session, p, repo_type, src, write=True)
    check_repo_id(dst)
    new_ns, _, new_name = dst.partition("/")
    if not auth.can_write_namespace(p, new_ns):
        raise ApiError(403, f"you ({p.name}) may not move repositories into {new_ns!r}")
    if find_repo(session, repo_type, dst) is not None:
        raise ApiError(409, f"a {repo_type} repo named {dst} already exists")
    with store(request).moving(repo_type, src, dst):  # renamed back if the row is not
        repo.namespace, repo.name = new_ns, new_name
        session.commit()
    return {"url": repo_url(request, repo_type, dst)}


@router.put("/api/{plural}/{ns}/{name}/settings")
def update_settings(
    plural: str,
    ns: str,
    name: str,
    body: dict = Body(...),
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> dict:
    repo = load_repo(session, p, repo_type_of(plural), f"{ns}/{name}", write=True)
    if "private" in body or "visibility" in body:
        repo.private = _visibility(body)
    if body.get("gated") not in (None, False):
        raise ApiError(400, "gated repositories are not supported by this hub")
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


@router.get("/api/{plural}/{ns}/{name}")
def repo_info(
    request: Request,
    plural: str,
    ns: str,
    name: str,
    blobs: bool = False,
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> dict:
    return repo_info_at(request, plural, ns, name, None, blobs, session, p)


@router.get("/api/{plural}/{ns}/{name}/revision/{rest:path}")
def repo_info_at(
    request: Request,
    plural: str,
    ns: str,
    name: str,
    rest: str | None,
    blobs: bool = False,
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> dict:
    """Repo info at a revision; `rest` None means the default branch (and refreshes the index)."""
    repo = load_repo(session, p, repo_type_of(plural), f"{ns}/{name}")
    if rest is None:
        refresh_index(request, session, repo)
        rev = "main"
    else:
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


@router.get("/api/{plural}/{ns}/{name}/tree/{rest:path}")
def list_tree(
    request: Request,
    plural: str,
    ns: str,
    name: str,
    rest: str,
    recursive: bool = False,
    expand: bool = False,
    cursor: int = 0,
    limit: int | None = None,
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> Response:
    repo = load_repo(session, p, repo_type_of(plural), f"{ns}/{name}")
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
    from fastapi.responses import JSONResponse

    return JSONResponse(items, headers=headers)


def repo_url_api(request: Request, repo: Repo) -> str:
    return f"{request.app.state.settings.public_url}/api/{repo.type}s/{repo.repo_id}"


@router.post("/api/{plural}/{ns}/{name}/paths-info/{rest:path}")
async def paths_info(request: Request, plural: str, ns: str, name: str, rest: str) -> list:
    """Reads a JSON or form body (the client sends a form), then works in a worker thread."""
    from starlette.concurrency import run_in_threadpool

    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        body = await read_json_object(request)
        paths, expand = body.get("paths", []), bool(body.get("expand"))
    else:
        form = await request.form()
        paths = form.getlist("paths")
        expand = str(form.get("expand", "")).lower() in ("1", "true")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(x, str) for x in paths):
        raise ApiError(400, "'paths' must be a list of file paths (strings)")
    return await run_in_threadpool(_paths_info, request, plural, ns, name, paths, expand)


def _paths_info(request: Request, plural: str, ns: str, name: str, paths: list[str], expand: bool) -> list:
    session: Session = request.app.state.sessionmaker()
    try:
        p = get_principal(request, session)
        repo = load_repo(session, p, repo_type_of(plural), f"{ns}/{name}")
        rev, _ = raw_tail(request, repo.repo_id, "paths-info")
        st = store(request)
        sha = st.resolve(repo.type, repo.repo_id, rev)
        found = []
        for path in paths:
            try:
                found.append(st.entry(repo.type, repo.repo_id, sha, path.strip("/")))
            except (storage.EntryNotFound, storage.InvalidPathError):
                continue
        last = (
            st.last_commit_for(repo.type, repo.repo_id, sha, [e.path for e in found])
            if expand and found
            else None
        )
        return [tree_item(e, last) for e in found]
    finally:
        session.close()


__all__ = [
    "router", "repo_not_found", "iso", "repo_summary", "check_repo_id", "refresh_index", "transformers_info",
]
