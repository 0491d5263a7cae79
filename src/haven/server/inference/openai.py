"""OpenAI-compatible routes: `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`,
`POST /v1/embeddings`, so the `openai` client works with `base_url="<hub>/v1"` and a Haven token
as `api_key`.

`model` is a repository id, optionally `id@revision`. Completions and chat run on the same
continuous batcher as `/models` (chat renders the tokenizer's chat template through the pipeline);
OpenAI's defaults apply (`max_tokens` 16 for completions, `temperature` 1, `top_p` 1;
`temperature` 0 is greedy). `stop` strings end a choice and are cut from its text; `n` choices
are decoded side by side (seeds `seed`, `seed + 1` ...); when one fails, the others are cancelled
and the request answers the error. Usage counts prompt and completion
tokens. Embeddings are the sentence embeddings of a sentence-transformers (or
sentence-similarity) repository, as floats or base64 (little-endian float32), as asked.
Errors use OpenAI's shape: `{"error": {"message", "type", "code"}}`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from .. import auth
from ..api.common import ApiError, get_principal
from ..db import Repo
from . import generation
from .registry import InferenceError, Served
from .relay import forward
from .service import json_body, model_max_tokens, service
from .tasks import embedding_request

router = APIRouter(prefix="/v1")

GENERATIVE = ("text-generation",)
EMBEDDING = ("feature-extraction", "sentence-similarity")
COMMON = {"model", "stream", "max_tokens", "temperature", "top_p", "stop", "n", "seed", "stream_options"}
COMPLETION_KEYS = frozenset(COMMON | {"prompt"})
CHAT_KEYS = frozenset(COMMON | {"messages", "max_completion_tokens"})
EMBEDDING_KEYS = frozenset({"model", "input", "encoding_format"})


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers or {})


async def _guarded(call) -> Response:
    try:
        return await call
    except ApiError as err:
        return _error(err.status, err.message, err.headers)


def _check(body: dict, keys: frozenset[str]) -> None:
    unknown = sorted(set(body) - keys)
    if unknown:
        raise InferenceError(400, f"unsupported parameter(s) {', '.join(unknown)}; this route takes {', '.join(sorted(keys))}")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InferenceError(400, '"model" must be a repository id, e.g. "alice/tiny-gpt2" (optionally "id@revision")')


def _strings(body: dict, key: str) -> list[str]:
    """`body[key]` as a non-empty list of strings (one string is a list of one)."""
    value = body.get(key)
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
        raise InferenceError(400, f'"{key}" must be a string or a non-empty list of strings (token arrays are not taken)')
    return value


def _model(body: dict) -> tuple[str, str | None]:
    repo_id, _, revision = body["model"].partition("@")
    if repo_id.count("/") != 1:
        raise InferenceError(404, f"model {body['model']!r} is not a repository id like 'namespace/name'")
    return repo_id, revision or None


async def _forward(request: Request, inference, body: dict) -> Response:
    repo_id, revision = _model(body)
    return await forward(request, inference, repo_id, revision, json.dumps(body).encode())


async def _served(request: Request, body: dict, tasks_allowed: tuple[str, ...]) -> Served:
    repo_id, revision = _model(body)
    served = await service(request).served(request, repo_id, revision, wait=True)
    if served.task not in tasks_allowed:
        raise InferenceError(400, f"{repo_id} is a {served.task} model; this route serves {', '.join(tasks_allowed)} models")
    return served


# -- GET /v1/models ----------------------------------------------------------------------------------


@router.get("/models")
async def list_models(request: Request) -> Response:
    return await _guarded(_models(request))


async def _models(request: Request) -> Response:
    if service(request).storage is None:
        raise InferenceError(404, "an inference worker lists no models: ask its hub (GET <hub>/v1/models)")
    return await run_in_threadpool(_list_models, request)


def _list_models(request: Request) -> Response:
    with request.app.state.sessionmaker() as session:
        caller = get_principal(request, session)
        rows = session.scalars(
            select(Repo).where(Repo.type == "model", Repo.pipeline_tag.in_(GENERATIVE + EMBEDDING)).order_by(Repo.id)
        ).all()
        data = [
            {"id": r.repo_id, "object": "model", "created": int(r.created_at.timestamp()), "owned_by": r.namespace}
            for r in rows if auth.can_read(caller, r)
        ]
    return JSONResponse({"object": "list", "data": data})


# -- completions and chat -----------------------------------------------------------------------------


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await _guarded(_generate(request, chat=False))


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _guarded(_generate(request, chat=True))


def _parameters(body: dict, chat: bool) -> dict:
    """OpenAI's sampling fields as the pipeline's parameters."""
    max_tokens = body.get("max_completion_tokens") if chat else None
    max_tokens = max_tokens if max_tokens is not None else body.get("max_tokens")
    temperature = body.get("temperature")
    temperature = 1.0 if temperature is None else temperature
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise InferenceError(400, "temperature must be a number >= 0")
    params: dict[str, Any] = {"max_new_tokens": max_tokens if max_tokens is not None else (None if chat else 16)}
    if temperature == 0:
        params["do_sample"] = False
    else:
        params.update(do_sample=True, temperature=float(temperature))
        if body.get("top_p") is not None:
            params["top_p"] = body["top_p"]
    if body.get("seed") is not None:
        params["seed"] = body["seed"]
    stop = body.get("stop")
    if stop:
        params["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return {k: v for k, v in params.items() if v is not None}


async def _generate(request: Request, *, chat: bool) -> Response:
    inference = service(request)
    body = await json_body(request, inference.limits.max_body)
    _check(body, CHAT_KEYS if chat else COMPLETION_KEYS)
    if inference.workers:
        return await _forward(request, inference, body)
    served = await _served(request, body, GENERATIVE)
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 8:
        raise InferenceError(400, "n must be an integer from 1 to 8")
    if chat:
        prompts = [body.get("messages")]
        if not generation.is_chat(prompts[0]):
            raise InferenceError(400, '"messages" must be a list of {"role": ..., "content": "..."} messages')
    else:
        prompts = _strings(body, "prompt")
    if len(prompts) * n > inference.limits.max_queue:  # it could never be queued whole: 429 would mislead
        raise InferenceError(400, f"{len(prompts)} prompt(s) x n={n} choices is over this hub's {inference.limits.max_queue} "
                             "queued sequences per model: send fewer prompts per request")
    params = _parameters(body, chat)
    plans = []
    with served.runner.arrival():
        for prompt in prompts:
            plans.append(await run_in_threadpool(
                generation.prepare, served, prompt, params, max_new_tokens=inference.limits.max_new_tokens,
                max_tokens=model_max_tokens(served), extra={"return_full_text": False},
            ))
        streams = generation.open_streams(served, plans, n, inference.limits.timeout)
    stop = params.get("stop") or []
    meta = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
            "model": body["model"]}
    if body.get("stream"):
        options = body.get("stream_options") or {}
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise InferenceError(400, "stream_options takes only include_usage")
        usage = bool(options.get("include_usage"))
        return StreamingResponse(_stream(served, plans, streams, n, stop, chat, meta, usage),
                                 media_type="text/event-stream")
    results = [[t for t, _ in pairs] for pairs in await generation.collect_all(streams)]
    choices = []
    for i, tokens in enumerate(results):
        text, reason = _finish(served, plans[i // n], streams[i], tokens, stop)
        if chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
                            "logprobs": None})
        else:
            choices.append({"index": i, "text": text, "finish_reason": reason, "logprobs": None})
    prompt_tokens = sum(len(p.features["input_ids"]) for p in plans)
    completion_tokens = sum(len(t) for t in results)
    return JSONResponse({
        **meta, "object": "chat.completion" if chat else "text_completion", "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def _finish(served: Served, plan: generation.Plan, stream: generation.TokenStream, tokens: list[int],
            stop: list[str]) -> tuple[str, str]:
    """(text, finish_reason) of one choice: the pipeline's new text, cut at a stop string."""
    records = generation.answer(served, plan, tokens)
    text = records[0]["generated_text"] if records else ""
    if isinstance(text, list):  # a chat answer: the assistant's message
        text = text[-1]["content"]
    for s in stop:
        at = text.find(s)
        if at >= 0:
            return text[:at], "stop"
    return text, "length" if stream.seq.reason == "length" else "stop"


async def _stream(served: Served, plans, streams, n: int, stop: list[str], chat: bool, meta: dict,
                  usage: bool) -> AsyncIterator[bytes]:
    """Chunks as each choice's text grows (whole characters), then one chunk with finish_reason
    (and, with stream_options.include_usage, a last chunk with the usage and no choices). A choice
    that fails ends the stream with an error chunk, and the other choices are cancelled."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(index: int, text: str | None, reason: str | None, first: bool = False) -> bytes:
        if chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}
        return f"data: {json.dumps({**meta, 'object': kind, 'choices': [choice]})}\n\n".encode()

    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: generation.TokenStream) -> None:
        try:
            await queue.put((index, await stream.pieces(queue, index)))
        except ApiError as err:
            await queue.put((index, err))

    for index in range(len(streams)):
        if chat:
            yield chunk(index, None, None, first=True)
    tasks_ = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    sent = [""] * len(streams)  # text each choice has been sent
    seen = [""] * len(streams)  # text each choice has produced
    done = generated = 0
    try:
        while done < len(streams):
            index, item = await queue.get()
            if isinstance(item, ApiError):  # the client stops at an error: the other choices would decode for nobody
                yield f"data: {json.dumps({'error': {'message': item.message, 'code': item.status}})}\n\n".encode()
                return
            if isinstance(item, str):  # a text piece: send what is new, held back near a stop string
                seen[index] += item
                full = seen[index]
                if any(s in full for s in stop) or any(full.endswith(s[:k]) for s in stop for k in range(1, len(s))):
                    continue
                yield chunk(index, full[len(sent[index]):], None)
                sent[index] = full
                continue
            text, reason = _finish(served, plans[index // n], streams[index], item, stop)
            if len(text) > len(sent[index]):
                yield chunk(index, text[len(sent[index]):], None)
            yield chunk(index, None, reason)
            generated += len(item)
            done += 1
        if usage:
            prompt = sum(len(p.features["input_ids"]) for p in plans)
            counts = {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}
            yield f"data: {json.dumps({**meta, 'object': kind, 'choices': [], 'usage': counts})}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        for task in tasks_:
            task.cancel()
        for stream in streams:
            stream.cancel()


# -- embeddings ---------------------------------------------------------------------------------------


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await _guarded(_embeddings(request))


async def _embeddings(request: Request) -> Response:
    inference = service(request)
    body = await json_body(request, inference.limits.max_body)
    _check(body, EMBEDDING_KEYS)
    if inference.workers:
        return await _forward(request, inference, body)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InferenceError(400, 'encoding_format must be "float" or "base64"')
    texts = _strings(body, "input")
    served = await _served(request, body, EMBEDDING)
    if not hasattr(served.pipe, "encode"):
        raise InferenceError(400, f"{served.repo_id} answers token-level features, not sentence embeddings: "
                             "use a sentence-transformers repository (with modules.json)")
    limit = model_max_tokens(served)
    counts = await run_in_threadpool(lambda: [len(x) for x in served.pipe.tokenizer(texts)["input_ids"]])
    job = embedding_request(texts, min(max(counts), limit))
    vectors = await served.runner.submit(job, job.kwargs, size=job.rows, tokens=job.tokens)
    data = []
    for i, vector in enumerate(vectors):
        value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if fmt == "base64" else vector
        data.append({"object": "embedding", "index": i, "embedding": value})
    total = sum(counts)
    return JSONResponse({"object": "list", "data": data, "model": body["model"],
                         "usage": {"prompt_tokens": total, "total_tokens": total}})
