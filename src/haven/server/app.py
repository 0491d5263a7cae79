"""The hub server's application factory (FastAPI).

`create_app(settings)` wires the database, the storage library (bare git repositories and the
LFS object store under `settings.data_dir`) and the route modules in `haven.server.api`.
Optional areas are mounted when their modules exist: `haven.server.api.inference` and
`haven.server.web.routes`, each exposing `setup(app)` or a FastAPI `router` (they are included
after the API routes, so they cannot shadow them).
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
from .api.common import ApiError, NoSuchRoute, error_response
from .settings import Settings

log = logging.getLogger("haven.server")

# storage exception class name -> (HTTP status, X-Error-Code)
STORAGE_ERRORS = {
    "RepoExistsError": (409, None),
    "RepoNotFound": (404, "RepoNotFound"),
    "RevisionNotFound": (404, "RevisionNotFound"),
    "EntryNotFound": (404, "EntryNotFound"),
    "StaleParentError": (412, None),
    "ConcurrentUpdateError": (409, None),
    "InvalidPathError": (400, None),
    "LfsObjectMissing": (422, None),
    "LfsVerifyError": (400, None),
}

MAX_BODY = 16 << 20  # any request body, except the routes below that bound their own
OWN_LIMITS = re.compile(  # LFS object PUT, NDJSON commit, git packs
    r"^/api/lfs/objects/|^/api/(models|datasets)/[^/]+/[^/]+/commit/|/git-(receive|upload)-pack$"
)


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
        limit = self.limit
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                return await error_response(_too_large(limit))(scope, receive, send)
        seen, refused = 0, False

        async def limited_receive():
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not refused:
                # answer now, and show the app a disconnected client (it stops reading)
                refused = True
                await error_response(_too_large(limit))(scope, receive, send)
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
    return ApiError(413, f"request body over {limit >> 20} MB: this route takes small JSON bodies")


API_MODULES = ["docs", "users", "repos", "search", "commits", "lfs", "files", "git"]  # docs before /api/{plural}
OPTIONAL_MODULES = ["haven.server.api.inference", "haven.server.web.routes"]


def storage_error_to_api(err: Exception) -> ApiError:
    message = getattr(err, "message", None) or str(err)
    if isinstance(getattr(err, "status", None), int):
        return ApiError(err.status, message, getattr(err, "code", None))
    for cls in type(err).__mro__:
        if cls.__name__ in STORAGE_ERRORS:
            status, code = STORAGE_ERRORS[cls.__name__]
            break
    else:
        status, code = 400, None
    return ApiError(status, message, code)


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app for `settings` (expects the database to be migrated: see `db.upgrade`)."""
    from . import storage

    settings.prepare()
    app = FastAPI(title="Haven hub", docs_url=None, openapi_url="/api/openapi.json", redoc_url=None)
    app.state.settings = settings
    app.add_middleware(BodyLimit)
    app.state.engine = db.make_engine(settings.db_url)
    app.state.sessionmaker = db.make_sessionmaker(app.state.engine)
    app.state.lfs = storage.LfsStore(settings.data_dir / "lfs")
    app.state.repos = storage.RepoStore(settings.data_dir / "repos", app.state.lfs)
    from .api import lfsrefs

    with app.state.sessionmaker() as session:
        lfsrefs.backfill(session, app.state.repos, settings.data_dir / "lfs")

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError):
        return error_response(err)

    @app.exception_handler(storage.StorageError)
    async def _storage_error(_request: Request, err: Exception):
        return error_response(storage_error_to_api(err))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error_response(ApiError(400, "invalid request: " + "; ".join(parts)))

    @app.exception_handler(NoSuchRoute)
    async def _no_route(request: Request, _err: NoSuchRoute):
        return error_response(unsupported.route_error(request.method, request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        if err.status_code in (404, 405):
            answer = unsupported.route_error(request.method, request.url.path, err.status_code)
            if answer.status == 405:
                answer.headers.update(err.headers or {})  # Allow
            return error_response(answer)
        message = err.detail if isinstance(err.detail, str) else "error"
        return error_response(ApiError(err.status_code, message, headers=dict(err.headers or {})))

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok"}

    for name in API_MODULES:
        module = importlib.import_module(f"haven.server.api.{name}")
        app.include_router(module.router)
    for name in OPTIONAL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and (name == err.name or name.startswith(err.name + ".")):
                continue  # that area (or its package) is not built yet
            log.exception("could not load %s; serving without it", name)
            continue
        except Exception:
            log.exception("could not load %s; serving without it", name)
            continue
        if hasattr(module, "setup"):
            module.setup(app)
        elif hasattr(module, "router"):
            app.include_router(module.router)
    return app
