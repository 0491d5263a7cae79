"""Git LFS: the batch API, signed object transfer URLs, verify, and locks (501).

`POST /{[datasets/]}{ns}/{name}[.git]/info/lfs/objects/batch` answers upload/download actions
whose hrefs authorise themselves (HMAC over action, oid, size and expiry), because the Hub
client PUTs the bytes without any auth header. Uploads stream straight into
`LfsStore.put_async`, which hashes while writing and keeps the object only if sha256 and
size match. Anonymous callers of a private or missing repo get 401 (so git-lfs asks for
credentials); signed-in callers who may not see it get 404.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .. import auth
from .common import ApiError, BigFileResponse, find_repo, get_principal, load_repo, repo_url, session_scope

router = APIRouter()
LFS_JSON = "application/vnd.git-lfs+json"
OID_RE = re.compile(r"^[0-9a-f]{64}$")
HREF_TTL = 3600


def git_repo_access(request: Request, repo_type: str, ns: str, name: str, *, write: bool):
    """(repo_id, principal) for git/LFS routes. Anonymous callers get 401 for anything they cannot
    read or write (git only sends credentials after a 401); others get 404/403 as the API does."""
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
        load_repo(session, p, repo_type, f"{ns}/{name}", write=write)
        return f"{ns}/{name}", p


def _lfs_error(
    status: int, message: str, headers: dict | None = None, code: str | None = None
) -> JSONResponse:
    headers = dict(headers or {})
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"message": message}, status_code=status, media_type=LFS_JSON, headers=headers)


async def _batch(request: Request, repo_type: str, ns: str, name: str) -> Response:
    try:
        body = await request.json()
    except ValueError:
        return _lfs_error(400, "the batch request is not valid JSON")
    if not isinstance(body, dict) or body.get("operation") not in ("upload", "download"):
        return _lfs_error(400, "'operation' must be 'upload' or 'download'")
    if body.get("hash_algo", "sha256") != "sha256":
        return _lfs_error(409, "only sha256 objects are supported")
    operation = body["operation"]
    try:
        repo_id, _p = await run_in_threadpool(
            git_repo_access, request, repo_type, ns, name, write=operation == "upload"
        )
    except ApiError as err:
        return _lfs_error(err.status, err.message, err.headers, err.code)
    settings = request.app.state.settings
    lfs = request.app.state.lfs
    base = settings.public_url
    verify_href = f"{repo_url(request, repo_type, repo_id)}.git/info/lfs/verify"
    auth_header = request.headers.get("authorization")
    objects = []
    for obj in body.get("objects") or []:
        oid, size = (
            obj.get("oid") if isinstance(obj, dict) else None,
            obj.get("size") if isinstance(obj, dict) else None,
        )
        if not isinstance(oid, str) or not OID_RE.match(oid) or not isinstance(size, int) or size < 0:
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "error": {"code": 422, "message": "invalid oid (64 hex digits) or size"},
                }
            )
            continue
        item: dict = {"oid": oid, "size": size, "authenticated": True}
        have = lfs.has(oid)
        if operation == "upload":
            if not (have and lfs.size(oid) == size):
                query = auth.signed_query(settings.secret, "upload", oid, size, HREF_TTL)
                item["actions"] = {
                    "upload": {
                        "href": f"{base}/api/lfs/objects/{oid}/{size}?{query}",
                        "expires_in": HREF_TTL,
                    },
                    "verify": {"href": verify_href, "expires_in": HREF_TTL},
                }
                if auth_header:
                    item["actions"]["verify"]["header"] = {"Authorization": auth_header}
        else:
            if not have:
                item["error"] = {"code": 404, "message": f"object {oid} does not exist on this hub"}
            else:
                query = auth.signed_query(settings.secret, "download", oid, size, HREF_TTL)
                item["actions"] = {
                    "download": {
                        "href": f"{base}/api/lfs/objects/{oid}/{size}?{query}",
                        "expires_in": HREF_TTL,
                    }
                }
        objects.append(item)
    return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, media_type=LFS_JSON)


async def _verify(request: Request, repo_type: str, ns: str, name: str) -> Response:
    try:
        await run_in_threadpool(git_repo_access, request, repo_type, ns, name, write=True)
    except ApiError as err:
        return _lfs_error(err.status, err.message, err.headers, err.code)
    try:
        body = await request.json()
        oid, size = body["oid"], int(body["size"])
    except (ValueError, KeyError, TypeError):
        return _lfs_error(400, "verify needs a JSON body {oid, size}")
    lfs = request.app.state.lfs
    if not (isinstance(oid, str) and OID_RE.match(oid) and lfs.has(oid)):
        return _lfs_error(404, f"object {oid} was not uploaded")
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


def _check(request: Request, action: str, oid: str, size: int) -> None:
    q = request.query_params
    if not OID_RE.match(oid) or not auth.check_signature(
        request.app.state.settings.secret, action, oid, size, q.get("exp", ""), q.get("sig", "")
    ):
        raise ApiError(403, "this transfer link is invalid or expired: ask the batch API for a new one")


@router.put("/api/lfs/objects/{oid}/{size}")
async def upload_object(request: Request, oid: str, size: int) -> Response:
    _check(request, "upload", oid, size)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != size:
        raise ApiError(400, f"the upload has {length} bytes but the object has size {size}")
    lfs = request.app.state.lfs
    if not lfs.has(oid):
        await lfs.put_async(oid, size, request.stream())
    return Response(status_code=200)


@router.get("/api/lfs/objects/{oid}/{size}")
async def download_object(request: Request, oid: str, size: int) -> Response:
    _check(request, "download", oid, size)
    lfs = request.app.state.lfs
    if not lfs.has(oid):
        raise ApiError(404, f"object {oid} does not exist on this hub", "EntryNotFound")
    return BigFileResponse(lfs.path(oid), media_type="application/octet-stream", headers={"ETag": f'"{oid}"'})


__all__ = ["router", "git_repo_access", "get_principal"]
