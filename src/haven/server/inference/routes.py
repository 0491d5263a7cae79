"""`POST /models/{ns}/{name}` and `POST /models/{ns}/{name}/revision/{rev}`: the hosted inference API.

Body: `{"inputs": ..., "parameters": {...}, "options": {"wait_for_model": bool, "use_cache": bool}}`
and, for text generation, a top-level `"stream": true` (as `InferenceClient` sends it). The answer
is the pipeline's output for the repo's `pipeline_tag` (see `tasks`); errors are
`{"error": ...}` with 400 (bad input or parameters, a task Haven cannot run), 404 (no such model,
or a private one the caller may not read), 413 (body too large), 429 (queue full, Retry-After),
503 (loading, with `estimated_time`) and 504 (timed out). `use_cache` is accepted: answers are
never cached, so every answer is computed fresh, which both values allow.

Encoder answers carry a `Server-Timing` header: milliseconds spent checking and tokenizing the
request ("tokenize"), waiting for its batch ("queue"), and the batch's "pad", "forward" and
"postprocess", with the batch's rows as `batch;desc="N rows"`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ...errors import HavenError
from . import generation, tasks
from .registry import InferenceError
from .relay import forward
from .service import json_body, model_max_tokens, service


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown, unload the models: the decoding and batching threads end, waiting requests hear 503."""
    yield
    inference = getattr(app.state, "inference", None)
    if inference is not None:
        inference.close()


router = APIRouter(lifespan=_lifespan)  # the hub and `haven worker` both include it

BODY_KEYS = frozenset({"inputs", "parameters", "options", "stream"})
OPTION_KEYS = frozenset({"wait_for_model", "use_cache"})


def check_body(body: dict) -> tuple[Any, dict, bool, bool]:
    """(inputs, parameters, wait_for_model, stream) of a /models body; 400 for anything unknown."""
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        raise InferenceError(400, f"unknown key(s) {', '.join(unknown)}: the body takes {', '.join(sorted(BODY_KEYS))}")
    if "inputs" not in body:
        raise InferenceError(400, 'the body needs "inputs"')
    options = body.get("options") or {}
    if not isinstance(options, dict) or set(options) - OPTION_KEYS:
        raise InferenceError(400, f'"options" takes only {", ".join(sorted(OPTION_KEYS))}')
    for key in ("wait_for_model", "use_cache"):
        if not isinstance(options.get(key, False), bool):
            raise InferenceError(400, f"options.{key} must be true or false")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InferenceError(400, '"stream" must be true or false')
    return body["inputs"], body.get("parameters") or {}, bool(options.get("wait_for_model")), stream


@router.post("/models/{ns}/{name}")
async def infer(request: Request, ns: str, name: str) -> Response:
    return await _infer(request, f"{ns}/{name}", None)


@router.post("/models/{ns}/{name}/revision/{revision:path}")
async def infer_revision(request: Request, ns: str, name: str, revision: str) -> Response:
    return await _infer(request, f"{ns}/{name}", revision)


async def _infer(request: Request, repo_id: str, revision: str | None) -> Response:
    inference = service(request)
    body = await json_body(request, inference.limits.max_body)
    inputs, parameters, wait, stream = check_body(body)
    if inference.workers:  # a hub that hands the work to `haven worker` processes
        return await forward(request, inference, repo_id, revision, json.dumps(body).encode())
    served = await inference.served(request, repo_id, revision, wait=wait)
    if served.task == "text-generation":
        return await generation.respond(inference, served, inputs, parameters, stream)
    if stream:
        raise InferenceError(400, f'"stream" is for text generation; {repo_id} is a {served.task} model')
    timing: dict = {}
    try:
        began = time.perf_counter()
        checked = await run_in_threadpool(tasks.prepare, served, inputs, parameters, model_max_tokens(served))
        timing["tokenize"] = time.perf_counter() - began
        answer = await served.runner.submit(checked, checked.kwargs, size=checked.rows, tokens=checked.tokens,
                                            timing=timing)
    except (HavenError, ValueError, TypeError) as err:  # the pipeline refused the input or a parameter
        raise InferenceError(400, str(err)) from None
    return JSONResponse(answer, headers={"Server-Timing": tasks.server_timing(timing)})
