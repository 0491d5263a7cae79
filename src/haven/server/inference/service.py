"""The inference service of one hub: its registry, its limits, and the way to a served model.

`app.state.inference` holds an `Inference` (None with `--no-inference`). Routes call
`await inference.served(request, repo_id, revision, wait=...)`, which checks access (the caller's
token, or the web page's session cookie: private repositories are 404 to anyone else), resolves
the revision to a commit and answers the loaded model, or raises 503 while it loads.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..api.common import load_repo, read_body
from .registry import InferenceError, ModelLoading, Registry, Served, StoreFiles, unsupported_task


@dataclass
class Limits:
    max_body: int = 1 << 20  # bytes of one request body (413 above)
    max_new_tokens: int = 1024  # the most a generation request may ask for (400 above)
    max_queue: int = 256  # waiting requests per model (429 above)
    timeout: float = 120.0  # seconds a request may wait for its answer (504); --inference-timeout
    batch_tokens: int = 16384  # padded tokens per encoder batch
    batch_rows: int = 64  # rows per encoder batch
    generation_rows: int = 16  # sequences decoded together
    load_timeout: float = 600.0  # seconds a wait_for_model request waits for the load


def model_max_tokens(served: Served) -> int:
    """The longest input the model takes: the tokenizer's model_max_length or the positions."""
    limit = getattr(served.pipe.tokenizer, "model_max_length", None)
    config = served.pipe.model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    candidates = [x for x in (limit, positions) if isinstance(x, int) and 0 < x < 1_000_000]
    return min(candidates) if candidates else 4096


def service(request: Request) -> Inference:
    """The app's inference service (404 on a hub started with --no-inference). The inference routes
    take no query parameters: one is a 400, not ignored."""
    if request.query_params:
        name = next(iter(request.query_params))
        raise InferenceError(400, f"unknown query parameter {name!r} for {request.url.path}: it takes none "
                             "(options go in the JSON body)")
    inference = getattr(request.app.state, "inference", None)
    if inference is None:
        raise InferenceError(404, "this hub serves no inference API (it was started with --no-inference)")
    return inference


async def json_body(request: Request, limit: int) -> dict:
    """The request's JSON object (413 over `limit` bytes, 400 if not JSON or not an object)."""
    raw = await read_body(request, limit)
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InferenceError(400, f"the body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InferenceError(400, 'the body must be a JSON object: {"inputs": ..., "parameters": {...}}')
    return body


class Inference:
    def __init__(self, settings: Any, storage: Any, files: Any = None, limits: Limits | None = None):
        self.limits = limits or Limits(max_queue=settings.inference_queue, timeout=settings.inference_timeout)
        self.storage = storage  # the hub's RepoStore; None in a worker
        files = files or StoreFiles(storage, settings.data_dir / "inference")
        self.registry = Registry(files, settings.inference_memory, self._runner, settings.inference_model_options())
        self.workers: list[str] = list(getattr(settings, "inference_workers", None) or [])
        self.worker_secret: str = getattr(settings, "worker_secret", "") or ""

    def _runner(self, served: Served) -> Any:
        if served.task == "text-generation":
            from .continuous import Generator

            return Generator(served, rows=self.limits.generation_rows, max_queue=self.limits.max_queue)
        from . import tasks
        from .batching import Batcher

        return Batcher(
            lambda jobs: tasks.run_batch(served, jobs), name=served.repo_id, max_tokens=self.limits.batch_tokens,
            max_rows=self.limits.batch_rows, max_queue=self.limits.max_queue, timeout=self.limits.timeout,
        )

    async def resolve(self, request: Request, repo_id: str, revision: str | None) -> tuple[str, str | None]:
        """(commit, pipeline_tag) of a model the caller may read; 404 otherwise, 400 for a task
        Haven cannot run."""
        from ...pipelines import TASKS

        def look_up() -> tuple[str, str | None]:  # one trip to a thread for both
            tag, default_branch = _readable_model(request, repo_id)
            if tag not in TASKS:  # None: neither the card nor config.json names a task
                raise InferenceError(400, unsupported_task(repo_id, tag))
            return self.storage.resolve("model", repo_id, revision or default_branch), tag

        return await run_in_threadpool(look_up)

    async def served(self, request: Request, repo_id: str, revision: str | None, *, wait: bool) -> Served:
        if self.storage is None:  # a worker: the hub checked access and names the commit
            from .relay import forwarded

            commit, tag = forwarded(request, self.worker_secret, repo_id)
        else:
            commit, tag = await self.resolve(request, repo_id, revision)
        found = self.registry.lookup(repo_id, commit, tag)
        if isinstance(found, Served):
            return found
        if not wait and not found.done():
            raise ModelLoading(repo_id, self.registry.eta(repo_id, commit))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(found), self.limits.load_timeout)
        except InferenceError:
            raise
        except TimeoutError:
            raise ModelLoading(repo_id, self.registry.eta(repo_id, commit)) from None
        except Exception as err:  # noqa: BLE001 - the load's own failure, said plainly
            raise InferenceError(500, f"loading {repo_id} failed: {err}") from err

    def close(self) -> None:
        self.registry.close()


def _readable_model(request: Request, repo_id: str) -> tuple[str | None, str]:
    """(pipeline_tag, default branch) of a model the caller may read (404 otherwise). The caller is
    the web session's user when the page's cookie is there, else the request's token."""
    from ..web.sessions import viewing

    with viewing(request) as (session, viewer):
        repo = load_repo(session, viewer.principal, "model", repo_id)
        return repo.pipeline_tag, "main"
