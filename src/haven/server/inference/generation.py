"""Text generation requests: the pipeline's parameters and pre/postprocessing around the
continuous batcher (`continuous.Generator`), answered whole or as server-sent events.

A request is prepared by the text-generation pipeline itself (its public `call_parameters`,
`generate_arguments` with its defaults, `preprocess` for a prompt or a chat), decoded in the shared
batch (`decoding_settings` resolves the lengths and sampling as `generate()` does), and its tokens are
turned into the answer by the pipeline's `postprocess`: the JSON answer is what
`pipeline("text-generation", model=repo)(inputs, **parameters)` returns. Streams use the
library's `TextStreamer` rule for releasing text (whole characters only), one event per token in
the shape `InferenceClient` parses (TGI's), the last carrying `generated_text`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...errors import HavenError, PipelineError
from ...generation.streamers import TextStreamer
from . import tasks
from .continuous import new_sequence
from .registry import InferenceError, Served
from .service import model_max_tokens


@dataclass
class Plan:
    features: dict  # the pipeline's preprocess output (input_ids, prompt)
    generate: dict  # generate() keyword arguments, the pipeline's defaults filled in
    post: dict  # the pipeline's postprocess parameters
    seed: int | None
    details: bool = False  # TGI's details: finish reason, token count, and (unstreamed) each token


def prepare(served: Served, inputs: Any, parameters: Any, *, max_new_tokens: int, max_tokens: int,
            extra: dict | None = None) -> Plan:
    """Check and translate a request (400 with the reason). `extra` adds pipeline arguments the
    OpenAI routes use (`return_full_text=False`)."""
    params = tasks.check_parameters("text-generation", parameters)
    seed = params.pop("seed", None)
    details = params.pop("details", False)
    if not isinstance(details, bool):
        raise InferenceError(400, "details must be true or false")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InferenceError(400, "seed must be an integer")
    stop = params.pop("stop", None)
    if stop:
        params["stop_sequence"] = stop if isinstance(stop, str) else list(stop)
    params.update(extra or {})
    pipe = served.pipe
    try:
        pre, fwd, post = pipe.call_parameters(params)
        generate = pipe.generate_arguments(fwd)
    except (PipelineError, ValueError, TypeError) as err:
        raise InferenceError(400, str(err)) from None
    if not isinstance(inputs, str) and not is_chat(inputs):
        raise InferenceError(400, 'text-generation takes "inputs" as a string (or a chat: a list of role/content messages)')
    try:
        features = pipe.preprocess(inputs, **pre)
    except (PipelineError, ValueError) as err:
        raise InferenceError(400, str(err)) from None
    prompt = len(features["input_ids"])
    new = generate.get("max_new_tokens")
    total = getattr(getattr(pipe.model, "generation_config", None), "max_length", None)
    if new is None and "max_length" not in generate and isinstance(total, int):
        # the repo's generation_config names a total length only (the pipeline then adds no
        # max_new_tokens): generate() would stop at that total, so the new tokens are what is left of it
        new = total - prompt
        if new < 1:
            raise InferenceError(400, f"the prompt has {prompt} tokens, as many as this model's max_length ({total}, "
                                 "its generation_config): pass parameters.max_new_tokens")
        generate = {**generate, "max_new_tokens": new}
    if not isinstance(new, int) or isinstance(new, bool) or new < 1:
        raise InferenceError(400, f"max_new_tokens must be a positive integer, got {new!r}")
    if new > max_new_tokens:
        raise InferenceError(400, f"max_new_tokens={new} is over this hub's limit of {max_new_tokens}: ask for fewer")
    if prompt + new > max_tokens:
        raise InferenceError(
            400,
            f"the prompt has {prompt} tokens and max_new_tokens is {new}: together over this model's {max_tokens} "
            "positions; shorten the prompt or ask for fewer tokens",
        )
    return Plan(features, generate, post, seed, details)


def is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


class TokenStream:
    """The tokens of one sequence, handed from the decoding thread to the event loop."""

    def __init__(self, served: Served, plan: Plan, timeout: float, seed_offset: int = 0):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.tokenizer = served.pipe.tokenizer
        seed = None if plan.seed is None else plan.seed + seed_offset
        try:
            self.seq = new_sequence(served, plan.features["input_ids"], plan.generate, self._emit, seed)
        except (HavenError, ValueError) as err:
            raise InferenceError(400, str(err)) from None
        served.runner.submit(self.seq)

    def _emit(self, item: Any) -> None:
        """Called on the decoding thread; must not raise there (it would end decoding for everyone)."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed (shutdown): nobody listens any more
            self.cancel()

    def cancel(self) -> None:
        self.seq.cancelled = True

    def ends_at(self, count: int) -> bool:
        """Whether the `count`-th new token is the sequence's last. Known as soon as that token
        is handed out: the decoding thread appends a token and decides whether it ends the
        sequence before it hands the token over, and appends nothing after the last."""
        seq = self.seq
        return bool(seq.reason) and len(seq.ids) - seq.prompt_length == count

    async def __aiter__(self) -> AsyncIterator[tuple[int, float]]:
        try:
            while True:
                left = self.deadline - time.monotonic()
                try:
                    item = await asyncio.wait_for(self.queue.get(), max(0.001, left))
                except TimeoutError:
                    raise InferenceError(504, f"generation did not finish within {self.timeout:g} s") from None
                if item is None:
                    return
                if isinstance(item, InferenceError):
                    raise item
                if isinstance(item, BaseException):  # the decode step failed: a server error, said as one
                    raise InferenceError(500, f"generation failed: {type(item).__name__}: {item}") from item
                yield item
        finally:
            self.cancel()  # a no-op once finished; frees the row when the client went away

    async def collect(self) -> list[tuple[int, float]]:
        """Every (token, logprob) of the sequence."""
        return [pair async for pair in self]

    async def pieces(self, queue: asyncio.Queue, index: int) -> list[int]:
        """All the tokens; meanwhile each piece of text as it is released goes to `queue` as (index, text)."""
        streamer = _Pieces(self.tokenizer)
        ids = []
        async for token, _ in self:
            ids.append(token)
            streamer.put([token])
            text = streamer.take()
            if text:
                await queue.put((index, text))
        return ids


def open_streams(served: Served, plans: list[Plan], n: int, timeout: float) -> list[TokenStream]:
    """`n` streams per plan (seeds `seed`, `seed + 1` ...), all submitted or none: when one is refused
    (429, a full queue) the ones already submitted are cancelled, not left decoding for nobody."""
    streams: list[TokenStream] = []
    try:
        for plan in plans:
            streams.extend(TokenStream(served, plan, timeout, seed_offset=i) for i in range(n))
    except BaseException:
        for stream in streams:
            stream.cancel()
        raise
    return streams


async def collect_all(streams: list[TokenStream]) -> list[list[tuple[int, float]]]:
    """Every stream's (token, logprob) pairs. When one fails, the others are cancelled at once (their
    rows are freed at the next decode step, not decoded for nobody) and its error is raised."""
    tasks = [asyncio.ensure_future(stream.collect()) for stream in streams]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for stream in streams:
            stream.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def answer(served: Served, plan: Plan, tokens: list[int]) -> Any:
    """The pipeline's answer for these new tokens."""
    return tasks.plain(served.pipe.postprocess(plan.features, [tokens], **plan.post))


async def respond(inference: Any, served: Served, inputs: Any, parameters: Any, stream: bool) -> Response:
    limits = inference.limits
    with served.runner.arrival():
        plan = await run_in_threadpool(
            prepare, served, inputs, parameters, max_new_tokens=limits.max_new_tokens, max_tokens=model_max_tokens(served)
        )
        tokens = TokenStream(served, plan, limits.timeout)
    if not stream:
        pairs = await tokens.collect()
        records = answer(served, plan, [t for t, _ in pairs])
        if plan.details:
            records[0]["details"] = {**_details(plan, tokens, [t for t, _ in pairs]), "prefill": [], "tokens": [
                _token(served.pipe.tokenizer, t, lp, served.pipe.tokenizer.decode([t])) for t, lp in pairs]}
        return JSONResponse(records)
    return StreamingResponse(_events(served, plan, tokens), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


class _Pieces(TextStreamer):
    """TextStreamer's release rule, collecting the released text instead of printing it."""

    def __init__(self, tokenizer: Any):
        super().__init__(tokenizer, skip_special_tokens=True)
        self.out: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.out.append(text)

    def take(self) -> str:
        text, self.out = "".join(self.out), []
        return text


async def _events(served: Served, plan: Plan, tokens: TokenStream) -> AsyncIterator[bytes]:
    """One TGI-shaped event per token, sent as soon as the token is chosen; the last one also
    carries `generated_text`."""
    tokenizer = served.pipe.tokenizer
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pieces = _Pieces(tokenizer)
    ids: list[int] = []
    try:
        async for token, logprob in tokens:
            pieces.put([token])
            ids.append(token)
            event = {"index": len(ids) - 1, "token": _token(tokenizer, token, logprob, pieces.take(), special),
                     "generated_text": None, "details": None}
            if tokens.ends_at(len(ids)):
                pieces.end()
                event["token"]["text"] += pieces.take()
                records = answer(served, plan, ids)
                event["generated_text"] = records[0].get("generated_text") if records else ""
                if plan.details:
                    event["details"] = {**_details(plan, tokens, ids), "input_length": len(plan.features["input_ids"])}
            yield _event(event)
    except InferenceError as err:
        yield _event({"error": err.message, "error_type": "generation"})


def _token(tokenizer: Any, token: int, logprob: float, text: str, special: set | None = None) -> dict:
    special = special if special is not None else set(getattr(tokenizer, "all_special_ids", []) or [])
    return {"id": token, "text": text, "logprob": logprob, "special": token in special}


def _details(plan: Plan, stream: TokenStream, tokens: list[int]) -> dict:
    return {"finish_reason": stream.seq.reason, "generated_tokens": len(tokens), "seed": plan.seed}


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
