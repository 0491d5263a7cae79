"""The hub <-> worker protocol: the hub checks access, resolves the commit and relays a request to
the repository's worker (`forward`); the worker accepts only requests carrying the shared secret
and the hub's `X-Haven-*` headers (`forwarded`). See `worker` for the worker process itself.
"""

from __future__ import annotations

import hmac
import re
import zlib
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from .registry import InferenceError

SECRET_HEADER = "x-haven-worker-secret"
PASSED_BACK = ("content-type", "retry-after", "cache-control", "server-timing")
COMMIT = re.compile(r"[0-9a-f]{40}")


def forwarded(request: Request, secret: str, repo_id: str) -> tuple[str, str | None]:
    """(commit, pipeline_tag) the hub named for this request; 401 without the shared secret."""
    given = request.headers.get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        raise InferenceError(401, "this is an inference worker: it answers its hub only (send requests to the hub)")
    commit = request.headers.get("x-haven-commit", "")
    if request.headers.get("x-haven-repo") != repo_id or not COMMIT.fullmatch(commit):
        raise InferenceError(400, "the hub's X-Haven-Repo / X-Haven-Commit headers are missing or do not match")
    return commit, request.headers.get("x-haven-task") or None


async def forward(request: Request, inference: Any, repo_id: str, revision: str | None, body: bytes) -> Response:
    """Hub side: check access, resolve the commit, and relay the request to the repo's worker."""
    import httpx

    commit, tag = await inference.resolve(request, repo_id, revision)
    worker = inference.workers[zlib.crc32(repo_id.encode()) % len(inference.workers)]
    headers = {"content-type": "application/json", SECRET_HEADER: inference.worker_secret,
               "x-haven-repo": repo_id, "x-haven-commit": commit, "x-haven-task": tag or ""}
    client = httpx.AsyncClient(timeout=httpx.Timeout(inference.limits.timeout + inference.limits.load_timeout))
    try:
        answer = await client.send(client.build_request("POST", worker + request.url.path, content=body,
                                                        headers=headers), stream=True)
    except httpx.HTTPError as err:
        await client.aclose()
        raise InferenceError(503, f"the inference worker {worker} cannot be reached ({type(err).__name__}): retry "
                             "later, or ask this hub's admin to start it", headers={"Retry-After": "5"}) from None

    async def relay():
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:
            await answer.aclose()
            await client.aclose()

    kept = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_BACK}
    return StreamingResponse(relay(), status_code=answer.status_code, headers={**kept, "X-Inference-Worker": worker})
