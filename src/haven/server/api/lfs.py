"""Git LFS: the batch API, signed object transfer URLs, verify, and locks (501).

`POST /{[datasets/]}{ns}/{name}[.git]/info/lfs/objects/batch` answers upload/download actions
whose hrefs authorise themselves (HMAC over action, oid, size and expiry), because the Hub
client PUTs the bytes without any auth header. Uploads stream straight into
`LfsStore.put_async`, which hashes while writing and keeps the object only if sha256 and
size match (with an S3 blob store: into a multipart upload, completed only then). Downloads of
objects in an S3 blob store are presigned GET URLs of the bucket, so the bytes do not pass
through Haven; objects an object source produces (Xet files) stream through the signed link. Anonymous callers of a private or missing repo get 401 (so git-lfs asks for
credentials); signed-in callers who may not see it get 404.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from .. import auth, storage
from ..db import Repo
from . import lfsrefs
from .bodies import LfsBatchBody, LfsObjectBody, SafeJsonRoute, validation_message
from .common import SANDBOX, ApiError, repo_url, session_scope
from .deps import CallerDep, SessionDep, git_repo
from .files import stream_object

LFS_JSON = "application/vnd.git-lfs+json"
OID_RE = re.compile(r"^[0-9a-f]{64}$")
# Signed transfer links (upload/download hrefs) live this long: tokens can be revoked, and a link
# it produced keeps working only until it expires. A transfer that started in time finishes.
HREF_TTL = 15 * 60
HASH_BATCH = 4 << 20


def git_repo_access(request: Request, repo_type: str, ns: str, name: str, *, write: bool):
    """(repo_id, principal, repo primary key) for git routes, in a session of its own (see
    `deps.git_repo` for the answers to anonymous callers)."""
    with session_scope(request) as (session, p):
        repo = git_repo(session, p, repo_type, ns, name, write=write)
        return repo.repo_id, p, repo.id


def _lfs_error(
    status: int, message: str, headers: dict | None = None, code: str | None = None
) -> JSONResponse:
    headers = dict(headers or {})
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"message": message}, status_code=status, media_type=LFS_JSON, headers=headers)


class LfsRoute(SafeJsonRoute):
    """The batch API, verify and locks answer every error in the Git LFS shape (`{"message"}`,
    `application/vnd.git-lfs+json`), which git-lfs shows to its user: refusals of the caller or
    repository (401 with `WWW-Authenticate`, 403, 404), invalid or too deep JSON and Pydantic
    validation errors (400) alike. Other routes answer `{"error"}` (the app's handlers)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as err:
                return _lfs_error(err.status, err.message, err.headers, err.code)
            except storage.StorageError as err:
                return _lfs_error(err.status, getattr(err, "message", None) or str(err), code=err.code)
            except RequestValidationError as err:
                return _lfs_error(400, validation_message(list(err.errors())))
            except HTTPException as err:
                detail = err.detail if isinstance(err.detail, str) else "error"
                return _lfs_error(err.status_code, detail, dict(err.headers or {}))

        return route_handler


lfs_router = APIRouter(route_class=LfsRoute)  # /{[datasets/]}{ns}/{name}[.git]/info/lfs/...
objects_router = APIRouter(prefix="/api/lfs/objects")  # the signed transfer links


def _valid(obj) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("oid"), str)
        and OID_RE.fullmatch(obj["oid"]) is not None
        and isinstance(obj.get("size"), int)
        and not isinstance(obj.get("size"), bool)
        and obj["size"] >= 0
    )


def _batch_repo(repo_type: str) -> Callable[..., Repo]:
    def batch_repo(ns: str, name: str, body: LfsBatchBody, session: SessionDep, caller: CallerDep) -> Repo:
        return git_repo(session, caller, repo_type, ns, name, write=body.operation == "upload")

    return batch_repo


def _verify_repo(repo_type: str) -> Callable[..., Repo]:
    def verify_repo(ns: str, name: str, session: SessionDep, caller: CallerDep) -> Repo:
        return git_repo(session, caller, repo_type, ns, name, write=True)

    return verify_repo


def _batch(request: Request, repo: Repo, body: LfsBatchBody, session: Session, p: auth.Principal) -> Response:
    """The batch answer. Uploads of objects already stored and readable by the caller through any
    repository are listed for this one right away (no re-upload); any other object must be
    uploaded through this repository, which proves the caller has its bytes."""
    if body.hash_algo != "sha256":
        return _lfs_error(409, "only sha256 objects are supported")
    operation, requested = body.operation, body.objects or []
    lfs = request.app.state.lfs
    oids = {o["oid"] for o in requested if _valid(o)}
    if operation == "download":
        known = lfsrefs.listed(session, repo.id, oids)
    else:
        known = lfsrefs.grantable(session, p, repo.id, {oid for oid in oids if lfs.has(oid)})
        lfsrefs.grant(session, repo.id, known)
    settings = request.app.state.settings
    base = settings.public_url
    verify_href = f"{repo_url(request, repo.type, repo.repo_id)}.git/info/lfs/verify"
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
                query = auth.signed_query(settings.secret, "upload", oid, size, HREF_TTL, repo=repo.id)
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
            item["error"] = {"code": 404, "message": f"object {oid} does not exist in {repo.repo_id}"}
        else:
            href = lfs.download_url(oid, expires=HREF_TTL)
            if href is None:
                query = auth.signed_query(settings.secret, "download", oid, size, HREF_TTL, repo=repo.id)
                href = f"{base}/api/lfs/objects/{oid}/{size}?{query}"
            item["actions"] = {"download": {"href": href, "expires_in": HREF_TTL}}
        objects.append(item)
    return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, media_type=LFS_JSON)


def _verify(request: Request, repo: Repo, body: LfsObjectBody, session: Session) -> Response:
    oid, size = body.oid, body.size
    lfs = request.app.state.lfs
    # one answer whether the object is stored for another repository or nowhere (no oracle)
    if not (oid in lfsrefs.listed(session, repo.id, [oid]) and lfs.has(oid)):
        return _lfs_error(404, f"object {oid} was not uploaded to {repo.repo_id}")
    if lfs.size(oid) != size:
        return _lfs_error(422, f"object {oid} has size {lfs.size(oid)}, not {size}")
    return JSONResponse({"oid": oid, "size": size}, media_type=LFS_JSON)


def _locks() -> Response:
    return _lfs_error(501, "file locking is not supported by this hub")


# Both URL forms (`name.git/info/lfs` and `name/info/lfs`) reach the same routes: `{name}` keeps
# any `.git` suffix, which deps.git_repo strips.
@lfs_router.post("/datasets/{ns}/{name}/info/lfs/objects/batch")
def batch_dataset(
    request: Request,
    repo: Annotated[Repo, Depends(_batch_repo("dataset"))],
    body: LfsBatchBody,
    session: SessionDep,
    caller: CallerDep,
) -> Response:
    return _batch(request, repo, body, session, caller)


@lfs_router.post("/{ns}/{name}/info/lfs/objects/batch")
def batch_model(
    request: Request,
    repo: Annotated[Repo, Depends(_batch_repo("model"))],
    body: LfsBatchBody,
    session: SessionDep,
    caller: CallerDep,
) -> Response:
    return _batch(request, repo, body, session, caller)


@lfs_router.post("/datasets/{ns}/{name}/info/lfs/verify")
def verify_dataset(
    request: Request, repo: Annotated[Repo, Depends(_verify_repo("dataset"))], body: LfsObjectBody, session: SessionDep
) -> Response:
    return _verify(request, repo, body, session)


@lfs_router.post("/{ns}/{name}/info/lfs/verify")
def verify_model(
    request: Request, repo: Annotated[Repo, Depends(_verify_repo("model"))], body: LfsObjectBody, session: SessionDep
) -> Response:
    return _verify(request, repo, body, session)


@lfs_router.api_route("/datasets/{ns}/{name}/info/lfs/locks{rest:path}", methods=["GET", "POST"])
async def locks_dataset(ns: str, name: str, rest: str) -> Response:
    return _locks()


@lfs_router.api_route("/{ns}/{name}/info/lfs/locks{rest:path}", methods=["GET", "POST"])
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


@objects_router.put("/{oid}/{size}")
async def upload_object(request: Request, oid: str, size: int, session: SessionDep) -> Response:
    """Streams the bytes to disk (async: the body is read as it arrives). The session holds no
    connection until the object is listed for the repository, after the upload."""
    repo_pk = _check(request, "upload", oid, size)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != size:
        raise ApiError(400, f"the upload has {length} bytes but the object has size {size}")
    lfs = request.app.state.lfs
    if lfs.has(oid):
        await _drain_verified(oid, size, request.stream())
    else:
        await lfs.put_async(oid, size, request.stream())
    await run_in_threadpool(lfsrefs.grant, session, repo_pk, [oid])
    return Response(status_code=200)


@objects_router.get("/{oid}/{size}")
def download_object(request: Request, oid: str, size: int, session: SessionDep) -> Response:
    repo_pk = _check(request, "download", oid, size)
    lfs = request.app.state.lfs
    if not lfs.has(oid) or oid not in lfsrefs.listed(session, repo_pk, [oid]):
        raise ApiError(404, f"object {oid} does not exist on this hub", "EntryNotFound")
    headers = {"ETag": f'"{oid}"', "Content-Security-Policy": SANDBOX, "Content-Disposition": "attachment"}
    url = lfs.download_url(oid, expires=HREF_TTL)
    if url is not None:  # a link from before the store moved to S3
        return RedirectResponse(url, status_code=302, headers=headers)
    return stream_object(request, oid, headers, "application/octet-stream")


router = APIRouter()
router.include_router(lfs_router)
router.include_router(objects_router)

__all__ = ["router", "git_repo_access", "LfsRoute"]
