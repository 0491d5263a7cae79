"""git smart HTTP: clone, fetch and push through `git http-backend`, behind Haven's auth.

`GET /{[datasets/]}{ns}/{name}[.git]/info/refs?service=...`, `POST .../git-upload-pack` and
`POST .../git-receive-pack`. git authenticates with HTTP Basic (any user name, the token as
password); anonymous callers are asked for credentials with 401 + `WWW-Authenticate`.
Pushed LFS pointers are checked against the hub's LFS store (`app.state.lfs`: the blob store it
serves from, local or S3, and files uploaded through Xet). After a push the repo index is refreshed.
"""

from __future__ import annotations

import tempfile

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..storage import githttp
from . import index, lfsrefs
from .common import ApiError, find_repo
from .lfs import git_repo_access

router = APIRouter()
SPOOL_MEMORY = 16 << 20
CHUNK = 1 << 20
SERVICES = ("git-upload-pack", "git-receive-pack")


def _on_push(request: Request, pusher):
    sessionmaker = request.app.state.sessionmaker
    store = request.app.state.repos

    def refresh_sync(repo_type: str, repo_id: str) -> None:
        with sessionmaker() as session:
            repo = find_repo(session, repo_type, repo_id)
            if repo is not None:
                lfsrefs.after_push(session, store, pusher, repo)
                index.refresh(session, store, repo)
                session.commit()

    async def refresh(repo_type: str, repo_id: str) -> None:
        await run_in_threadpool(refresh_sync, repo_type, repo_id)

    return refresh


async def _git(request: Request, repo_type: str, ns: str, name: str, action: str) -> Response:
    if action == "info/refs":
        service = request.query_params.get("service", "")
        if service not in SERVICES:
            raise ApiError(403, "only smart HTTP is served: use git >= 1.6.6 (service=git-upload-pack)")
    else:
        service = action
    write = service == "git-receive-pack"
    repo_id, p, _pk = await run_in_threadpool(git_repo_access, request, repo_type, ns, name, write=write)
    body = await _spool(request) if request.method == "POST" else b""
    status, headers, stream = await githttp.run_http_backend(
        request.app.state.settings.data_dir / "repos",
        githttp.git_path_info(repo_type, repo_id, action),
        request.method,
        request.url.query,
        dict(request.headers),
        body,
        remote_user=p.name or "anonymous",
        allow_push=write,
        on_push=_on_push(request, p) if write else None,
        lfs=request.app.state.lfs,  # its blob store and object sources (Xet) answer the push check
    )
    return StreamingResponse(stream, status_code=status, headers=headers)


async def _spool(request: Request):
    """Receive the whole request body (to disk past SPOOL_MEMORY) before the response starts.

    A streaming response listens for the client's disconnect on the same ASGI channel the body
    arrives on; reading the body lazily while the response streams would let that listener
    swallow body chunks and hang `git http-backend` waiting for input."""
    spool = tempfile.SpooledTemporaryFile(
        max_size=SPOOL_MEMORY, dir=request.app.state.settings.data_dir / "tmp"
    )
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)

    async def chunks():
        try:
            while chunk := spool.read(CHUNK):
                yield chunk
        finally:
            spool.close()

    return chunks()


def _endpoint(repo_type: str, action: str):
    async def endpoint(request: Request, ns: str, name: str) -> Response:
        return await _git(request, repo_type, ns, name, action)

    return endpoint


# Only the smart-HTTP paths: other POSTs under a repo-shaped path (`/models/{id}`, `/v1/...`)
# belong to other routes, or to none. Datasets first: `/datasets/x/info/refs` is not a model.
for _prefix, _type in (("/datasets", "dataset"), ("", "model")):
    router.add_api_route(
        f"{_prefix}/{{ns}}/{{name}}/info/refs", _endpoint(_type, "info/refs"), methods=["GET"],
        name=f"git_refs_{_type}",
    )
    for _service in SERVICES:
        router.add_api_route(
            f"{_prefix}/{{ns}}/{{name}}/{_service}", _endpoint(_type, _service), methods=["POST"],
            name=f"git_{_service.removeprefix('git-').replace('-', '_')}_{_type}",
        )


__all__ = ["router"]
