"""The hub server's application factory (FastAPI).

`create_app(settings)` wires the database, the storage library (bare git repositories and the
LFS object store under `settings.data_dir`) and the route modules in `haven.server.api`, each
included explicitly; the web pages (`haven.server.web`) come last, so their `/{owner}/{name}`
routes cannot shadow any other. New API areas (inference) add their router to `API_MODULES`.

Middleware, outermost first: `SecurityHeaders` (nosniff on every response), `CleanPath`
(400 for control characters in a path, before any route or header sees them), `BodyLimit`.
"""

from __future__ import annotations

import importlib
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import db
from .api import unsupported
from .api.bodies import MAX_BODY, MAX_PREUPLOAD_BODY, MAX_YAML_BODY, validation_message
from .api.common import ApiError, NoSuchRoute, error_response
from .settings import Settings

log = logging.getLogger("haven.server")

OWN_LIMITS = re.compile(  # LFS object PUT, NDJSON commit, git packs
    r"^/api/lfs/objects/|^/api/(models|datasets)/[^/]+/[^/]+/commit/|/git-(receive|upload)-pack$"
    r"|^/cas/v1/(xorbs/|shards$)"  # Xet uploads bound their own size (64 MiB)
)
SMALL_LIMITS = (  # routes whose bodies are smaller still
    (re.compile(r"^/api/validate-yaml$"), MAX_YAML_BODY),
    (re.compile(r"^/api/(models|datasets)/[^/]+/[^/]+/preupload/"), MAX_PREUPLOAD_BODY),
)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BodyLimit:
    """ASGI middleware: refuse (413) request bodies over MAX_BODY on routes that read them whole.

    LFS object uploads stream to disk, NDJSON commits are parsed as they stream under their own
    limit, and git packs are spooled to disk; every other body is JSON or a small form."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or OWN_LIMITS.search(scope["path"]):
            return await self.app(scope, receive, send)
        limit = next((small for route, small in SMALL_LIMITS if route.search(scope["path"])), self.limit)
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                return await _refusal(scope, limit)(scope, receive, send)
        seen, refused = 0, False

        async def limited_receive():
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not refused:
                # answer now, and show the app a disconnected client (it stops reading)
                refused = True
                await _refusal(scope, limit)(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        try:
            return await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def _too_large(limit: int) -> ApiError:
    size = f"{limit >> 20} MB" if limit >= 1 << 20 else f"{limit >> 10} KB"
    return ApiError(413, f"request body over {size}: this route takes small JSON bodies")


def _refusal(scope, limit: int):
    """The 413: JSON for clients; for a browser sending a page's form (Accept: text/html, outside
    /api/), the hub's HTML error page with the limit and what to use for larger files."""
    accept = next((v for k, v in scope.get("headers", ()) if k == b"accept"), b"")
    if b"text/html" not in accept or scope["path"].startswith("/api/"):
        return error_response(_too_large(limit))
    from starlette.requests import Request

    from .web.render import error_page

    return error_page(Request(scope), 413, f"this form sends at most {limit >> 20} MB, and nothing was stored. "
                      "Upload larger files with the command line (haven upload, or hf upload from "
                      "huggingface_hub) or with git and Git LFS.")


class CleanPath:
    """ASGI middleware: a path with a control character (NUL, CR, LF ... once percent-decoded)
    is answered 400 here. No repository, file or branch name holds one, and such a character
    must never reach a response header (the server would drop the connection instead)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and CONTROL.search(scope.get("path", "")):
            err = ApiError(
                400,
                "the URL path holds a control character (NUL, CR, LF ...): no name on this hub has "
                "one; check how the path was built and percent-encoded",
            )
            return await error_response(err)(scope, receive, send)
        return await self.app(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: `X-Content-Type-Options: nosniff` on every response, so no browser
    guesses a runnable type from a body (file routes add their own sandboxing CSP)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


API_MODULES = ["docs", "users", "likes", "repos", "refs", "search", "commits", "lfs", "files", "haven.server.inference.routes", "haven.server.inference.openai", "git"]  # docs before /api/{plural}; likes (/api/users/NAME/likes) before repos (/api/{plural}/{ns}/{name}); inference (POST /models/{ns}/{name}) before git


def storage_error_to_api(err) -> ApiError:
    """Every storage error carries its HTTP status and X-Error-Code."""
    return ApiError(err.status, getattr(err, "message", None) or str(err), err.code)


def _route_error(request: Request, answer: ApiError):
    """No route: JSON for clients, and for a browser asking for a page outside /api/ the hub's
    own HTML error page (same status), so a mistyped link looks like the rest of the site."""
    accept = request.headers.get("accept", "")
    if request.method == "GET" and "text/html" in accept and not request.url.path.startswith("/api/"):
        from .web.render import error_page

        return error_page(request, answer.status, f"there is no page at {request.url.path}")
    return error_response(answer)


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app for `settings` (expects the database to be migrated: see `db.upgrade`)."""
    from . import storage

    settings.prepare()
    app = FastAPI(title="Haven hub", docs_url=None, openapi_url="/api/openapi.json", redoc_url=None)
    app.state.settings = settings
    app.add_middleware(BodyLimit)
    app.add_middleware(CleanPath)
    app.add_middleware(SecurityHeaders)
    app.state.engine = db.make_engine(settings.db_url)
    app.state.sessionmaker = db.make_sessionmaker(app.state.engine)
    from .storage import open_blob_store

    app.state.blobs = open_blob_store(settings.blob_store, settings.data_dir)  # LFS objects and xorbs
    app.state.lfs = storage.LfsStore(
        settings.data_dir / "lfs", max_object_size=settings.max_lfs_object, blobs=app.state.blobs
    )
    app.state.repos = storage.RepoStore(settings.data_dir / "repos", app.state.lfs)
    from .xet import cas as xet_cas

    xet_cas.install(app)  # the Xet store and its routes (first), and the LFS store serving Xet files
    app.state.inference = None
    if settings.inference:
        from .inference.service import Inference

        app.state.inference = Inference(settings, app.state.repos)
    from .api import lfsrefs
    from .api.common import find_repo

    # settle what a killed process left: uploads in progress, and repo creates, deletes and moves
    # half done (the database says which repositories exist)
    app.state.lfs.sweep_tmp()
    with app.state.sessionmaker() as session:
        for line in app.state.repos.recover(lambda t, i: find_repo(session, t, i) is not None):
            log.warning("recovered: %s", line)
        lfsrefs.backfill(session, app.state.repos, settings.data_dir / "lfs")
        from .api import index

        if reindexed := index.reindex_marked(session, app.state.repos):  # after a migration marked them
            log.warning("re-indexed %d repositories", reindexed)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError):
        return error_response(err)

    @app.exception_handler(storage.StorageError)
    async def _storage_error(_request: Request, err: Exception):
        return error_response(storage_error_to_api(err))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, err: RequestValidationError):
        return error_response(ApiError(400, validation_message(err.errors())))

    @app.exception_handler(NoSuchRoute)
    async def _no_route(request: Request, _err: NoSuchRoute):
        return _route_error(request, unsupported.route_error(request.method, request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        if err.status_code in (404, 405):
            answer = unsupported.route_error(request.method, request.url.path, err.status_code)
            if answer.status == 405:
                answer.headers.update(err.headers or {})  # Allow
            return _route_error(request, answer)
        message = err.detail if isinstance(err.detail, str) else "error"
        return error_response(ApiError(err.status_code, message, headers=dict(err.headers or {})))

    @app.get("/api/health")
    async def health() -> dict:  # on the event loop: it answers even when every worker thread is busy
        return {"status": "ok"}

    for name in API_MODULES:
        module = importlib.import_module(name if "." in name else f"haven.server.api.{name}")
        app.include_router(module.router)
    from .web import routes as web_routes

    app.include_router(web_routes.router)  # last: its `/{owner}/{name}` pages must shadow no other route
    return app
