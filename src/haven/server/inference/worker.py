"""Inference workers: `haven worker --hub URL` runs the inference API in a process of its own (on the
machine with the accelerator), and a hub started with `--inference-worker URL` sends it the work.

- The hub keeps every access rule: it checks the caller (token or web session), resolves the
  revision to a commit and forwards the request body to a worker (a repository always goes to the
  same worker, so its model is loaded once), with the repo, commit and task in `X-Haven-*`
  headers and the shared secret (`HAVEN_WORKER_SECRET`, set on both) in
  `X-Haven-Worker-Secret`. The worker's answer (JSON or the event stream) is passed back as it
  comes, with `X-Inference-Worker` naming the worker.
- The worker answers only requests carrying the secret (401 otherwise), downloads a commit's
  files from the hub with its own token (`HAVEN_WORKER_TOKEN`: an admin's read token, so private
  repositories load too) into `--data`, and serves them with the same registry, batchers and
  routes as an embedded hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from .registry import OTHER_WEIGHTS


class HubFiles:
    """A commit's files downloaded from the hub with the worker's token (the Registry's `files`)."""

    def __init__(self, hub: str, token: str | None, folder: Path):
        self.hub = hub.rstrip("/")
        self.token = token
        self.folder = folder

    def estimate(self, repo_id: str, commit: str) -> float:
        return 5.0  # the worker cannot list the hub's storage cheaply; a download plus a load

    def snapshot(self, repo_id: str, commit: str) -> Path:
        from ...hub.client import HubClient

        target = self.folder / repo_id / commit
        with HubClient(self.hub, self.token) as hub:
            hub.snapshot_download(repo_id, revision=commit, local_dir=str(target),
                                  ignore_patterns=[f"*{ext}" for ext in OTHER_WEIGHTS if ext != ".bin"])
        return target


def create_worker_app(settings: Any, hub: str, token: str | None) -> FastAPI:
    """The ASGI app of `haven worker`: the inference routes, a health check, no hub pages or database."""
    from ..api.bodies import validation_message
    from ..api.common import ApiError, error_response
    from . import openai, routes
    from .service import Inference

    if not settings.worker_secret:
        raise SystemExit("haven worker: set HAVEN_WORKER_SECRET (the same value as the hub's) so that only "
                         "the hub can send it work")
    app = FastAPI(title="Haven inference worker", docs_url=None, openapi_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.inference = Inference(settings, None, files=HubFiles(hub, token, settings.data_dir / "inference"))

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError):
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, err: RequestValidationError):
        return error_response(ApiError(400, validation_message(err.errors())))

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok", "role": "inference-worker"}

    app.include_router(routes.router)
    app.include_router(openai.router)
    return app
