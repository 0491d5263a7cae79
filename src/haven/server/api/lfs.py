"""Git LFS: the batch API, signed object transfer URLs, verify, and locks (501).

`POST /{[datasets/]}{ns}/{name}[.git]/info/lfs/objects/batch` answers upload/download actions
whose hrefs authorise themselves (HMAC over action, oid, size and expiry), because the Hub
client PUTs the bytes without any auth header. Uploads stream straight into
`LfsStore.put_async`, which hashes while writing and keeps the object only if sha256 and
size match. Anonymous callers of a private or missing repo get 401 (so git-lfs asks for
credentials); signed-in callers who may not see it get 404.
"""

from __future__ import annotations

import hashlib
import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .. import auth
from . import lfsrefs
from .bodies import read_json
from .common import (
    SANDBOX,
    ApiError,
    BigFileResponse,
    find_repo,
    get_principal,
    load_repo,
    repo_url,
    session_scope,
)

router = APIRouter()
LFS_JSON = "application/vnd.git-lfs+json"
OID_RE = re.compile(r"^[0-9a-f]{64}$")
# Signed transfer links (upload/download hrefs) live this long: tokens can be revoked, and a link
# it produced keeps working only until it expires. A transfer that started in time finishes.
HREF_TTL = 15 * 60
HASH_BATCH = 4 << 20


def git_repo_access(request: Request, repo_type: str, ns: str, name: str, *, write: bool):
    """(repo_id, principal, repo primary key) for git/LFS routes. Anonymous callers get 401 for
    anything they cannot read or write (git only sends credentials after a 401); others get
    404/403 as the API does."""
    name = name[:-4] if name.endswith(".git") else name
    with session_scope(request) as (session, p):
        repo = find_repo(session, repo_type, f"{ns}/{name}")
        visible = repo is not None and auth.can_read(p, repo)
        if p.anonymous and (not visible or write):
            raise ApiError(
                401,
                "authentication required: use your Haven token as the password",
                headers={"WWW-Authenticate": 'Basic realm="Haven"'},
            )
        repo = load_repo(session, p, repo_type, f"{ns}/{name}", write=write)
        return repo.repo_id, p, repo.id


def _lfs_error(
    status: int, message: str, headers: dict | None = None, code: str | None = None
) -> JSONResponse:
    headers = dict(headers or {})
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"message": message}, status_code=status, media_type=LFS_JSON, headers=headers)


def _valid(obj) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("oid"), str)
        and OID_RE.fullmatch(obj["oid"]) is not None
        and isinstance(obj.get("size"), int)
        and not isinstance(obj.get("size"), bool)
        and obj["size"] >= 0
    )


def _batch_plan(request: Request, repo_type: str, ns: str, name: str, operation: str, objects: list):
    """(repo_id, repo key, oids this repo may serve or reference) for a batch request.

    Uploads of objects already stored and readable by the caller through any repository are
    listed for this one right away (no re-upload); any other object must be uploaded through
    this repository, which proves the caller has its bytes."""
    repo_id, p, pk = git_repo_access(request, repo_type, ns, name, write=operation == "upload")
    lfs = request.app.state.lfs
    oids = {o["oid"] for o in objects if _valid(o)}
    with session_scope(request) as (session, _p):
        if operation == "download":
            return repo_id, pk, lfsrefs.listed(session, pk, oids)
        stored = {oid for oid in oids if lfs.has(oid)}
        ok = lfsrefs.grantable(session, p, pk, stored)
        lfsrefs.grant(session, pk, ok)
        return repo_id, pk, ok


async def _batch(request: Request, repo_type: str, ns: str, name: str) -> Response:
    try:
        body = await read_json(request)
    except ApiError as err:
        return _lfs_error(err.status, err.message)
    if not isinstance(body, dict) or body.get("operation") not in ("upload", "download"):
        return _lfs_error(400, "'operation' must be 'upload' or 'download'")
    if body.get("hash_algo", "sha256") != "sha256":
        return _lfs_error(409, "only sha256 objects are supported")
    operation = body["operation"]
    requested = body.get("objects") or []
    if not isinstance(requested, list):
        return _lfs_error(400, "'objects' must be a list of {oid, size}")
    try:
        repo_id, pk, known = await run_in_threadpool(
            _batch_plan, request, repo_type, ns, name, operation, requested
        )
    except ApiError as err:
        return _lfs_error(err.status, err.message, err.headers, err.code)
    settings = request.app.state.settings
    lfs = request.app.state.lfs
    base = settings.public_url
    verify_href = f"{repo_url(request, repo_type, repo_id)}.git/info/lfs/verify"
    auth_header = request.headers.get("authorization")
    objects = []
    for obj in requested:
        if not _valid(obj):
            objects.append(
                {
                    "oid": obj.get("oid") if isinstance(obj, dict) else None,
                    "size": obj.get("size") if isinstance(obj, dict) else None,
                    "error": {"code": 422, "message": "invalid oid (64 hex digits) or size"},
                }
            )
            continue
        oid, size = obj["oid"], obj["size"]
        item: dict = {"oid": oid, "size": size, "authenticated": True}
        if operation == "upload" and size > lfs.max_object_size:
            limit = lfs.max_object_size
            item["error"] = {"code": 413, "message": f"object of {size} bytes is over this hub's limit of "
                             f"{limit} bytes per LFS object (HAVEN_MAX_LFS_OBJECT)"}
        elif operation == "upload":
            if not (oid in known and lfs.size(oid) == size):
                query = auth.signed_query(settings.secret, "upload", oid, size, HREF_TTL, repo=pk)
                item["actions"] = {
                    "upload": {
                        "href": f"{base}/api/lfs/objects/{oid}/{size}?{query}",
                        "expires_in": HREF_TTL,
                    },
                    "verify": {"href": verify_href, "expires_in": HREF_TTL},
                }
                if auth_header:
                    item["actions"]["verify"]["header"] = {"Authorization": auth_header}
        elif oid not in known or not lfs.has(oid):
            item["error"] = {"code": 404, "message": f"object {oid} does not exist in {repo_id}"}
        else:
            query = auth.signed_query(settings.secret, "download", oid, size, HREF_TTL, repo=pk)
            item["actions"] = {
                "download": {"href": f"{base}/api/lfs/objects/{oid}/{size}?{query}", "expires_in": HREF_TTL}
            }
        objects.append(item)
    return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, media_type=LFS_JSON)


def _listed(request: Request, repo_pk: int, oid: str) -> bool:
    with request.app.state.sessionmaker() as session:
        return oid in lfsrefs.listed(session, repo_pk, [oid])


def _grant(request: Request, repo_pk: int, oid: str) -> None:
    with request.app.state.sessionmaker() as session:
        lfsrefs.grant(session, repo_pk, [oid])
        session.commit()


async def _verify(request: Request, repo_type: str, ns: str, name: str) -> Response:
    try:
        repo_id, _p, pk = await run_in_threadpool(git_repo_access, request, repo_type, ns, name, write=True)
    except ApiError as err:
        return _lfs_error(err.status, err.message, err.headers, err.code)
    try:
        body = await read_json(request)
    except ApiError as err:
        return _lfs_error(err.status, err.message)
    if not _valid(body):
        return _lfs_error(400, "verify needs a JSON body {oid: 64 hex digits, size: bytes}")
    oid, size = body["oid"], body["size"]
    lfs = request.app.state.lfs
    # one answer whether the object is stored for another repository or nowhere (no oracle)
    if not (await run_in_threadpool(_listed, request, pk, oid) and lfs.has(oid)):
        return _lfs_error(404, f"object {oid} was not uploaded to {repo_id}")
    if lfs.size(oid) != size:
        return _lfs_error(422, f"object {oid} has size {lfs.size(oid)}, not {size}")
    return JSONResponse({"oid": oid, "size": size}, media_type=LFS_JSON)


def _locks() -> Response:
    return _lfs_error(501, "file locking is not supported by this hub")


# Both URL forms (`name.git/info/lfs` and `name/info/lfs`) reach the same routes: `{name}` keeps
# any `.git` suffix, which git_repo_access strips.
@router.post("/datasets/{ns}/{name}/info/lfs/objects/batch")
async def batch_dataset(request: Request, ns: str, name: str) -> Response:
    return await _batch(request, "dataset", ns, name)


@router.post("/{ns}/{name}/info/lfs/objects/batch")
async def batch_model(request: Request, ns: str, name: str) -> Response:
    return await _batch(request, "model", ns, name)


@router.post("/datasets/{ns}/{name}/info/lfs/verify")
async def verify_dataset(request: Request, ns: str, name: str) -> Response:
    return await _verify(request, "dataset", ns, name)


@router.post("/{ns}/{name}/info/lfs/verify")
async def verify_model(request: Request, ns: str, name: str) -> Response:
    return await _verify(request, "model", ns, name)


@router.api_route("/datasets/{ns}/{name}/info/lfs/locks{rest:path}", methods=["GET", "POST"])
async def locks_dataset(ns: str, name: str, rest: str) -> Response:
    return _locks()


@router.api_route("/{ns}/{name}/info/lfs/locks{rest:path}", methods=["GET", "POST"])
async def locks_model(ns: str, name: str, rest: str) -> Response:
    return _locks()


# -- signed transfers -----------------------------------------------------------------------------


def _check(request: Request, action: str, oid: str, size: int) -> int:
    """The repository key a transfer link was signed for; 403 for a bad or expired link."""
    q = request.query_params
    if not OID_RE.fullmatch(oid) or not auth.check_signature(
        request.app.state.settings.secret,
        action,
        oid,
        size,
        q.get("exp", ""),
        q.get("sig", ""),
        repo=q.get("repo", ""),
    ):
        raise ApiError(403, "this transfer link is invalid or expired: ask the batch API for a new one")
    return int(q["repo"])


async def _drain_verified(oid: str, size: int, chunks) -> None:
    """Hash an upload of an object the store already has: the uploader proves they hold it."""
    hasher, received, parts, buffered = hashlib.sha256(), 0, [], 0
    async for chunk in chunks:
        received += len(chunk)
        if received > size:
            raise ApiError(400, f"the upload of {oid} is larger than the announced {size} bytes")
        parts.append(chunk)
        buffered += len(chunk)
        if buffered >= HASH_BATCH:
            await run_in_threadpool(_update_all, hasher, parts)
            parts, buffered = [], 0
    await run_in_threadpool(_update_all, hasher, parts)
    if received != size or hasher.hexdigest() != oid:
        raise ApiError(400, f"the uploaded bytes do not match sha256 {oid} and size {size}")


def _update_all(hasher, parts: list[bytes]) -> None:
    for part in parts:
        hasher.update(part)


@router.put("/api/lfs/objects/{oid}/{size}")
async def upload_object(request: Request, oid: str, size: int) -> Response:
    repo_pk = _check(request, "upload", oid, size)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != size:
        raise ApiError(400, f"the upload has {length} bytes but the object has size {size}")
    lfs = request.app.state.lfs
    if lfs.has(oid):
        await _drain_verified(oid, size, request.stream())
    else:
        await lfs.put_async(oid, size, request.stream())
    await run_in_threadpool(_grant, request, repo_pk, oid)
    return Response(status_code=200)


@router.get("/api/lfs/objects/{oid}/{size}")
async def download_object(request: Request, oid: str, size: int) -> Response:
    repo_pk = _check(request, "download", oid, size)
    lfs = request.app.state.lfs
    if not lfs.has(oid) or not await run_in_threadpool(_listed, request, repo_pk, oid):
        raise ApiError(404, f"object {oid} does not exist on this hub", "EntryNotFound")
    headers = {"ETag": f'"{oid}"', "Content-Security-Policy": SANDBOX, "Content-Disposition": "attachment"}
    return BigFileResponse(lfs.path(oid), media_type="application/octet-stream", headers=headers)


__all__ = ["router", "git_repo_access", "get_principal"]
