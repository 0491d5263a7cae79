"""What every route module shares: errors, the DB session, the caller, repo lookup, URLs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .. import auth
from ..db import Repo

REPO_TYPES = {"models": "model", "datasets": "dataset"}  # URL plural -> repo_type
# On every response that carries user content: nothing in it may run, load or navigate.
SANDBOX = "default-src 'none'; sandbox"


class BigFileResponse(FileResponse):
    """A FileResponse with large reads: far fewer thread hops and ASGI messages per byte."""

    chunk_size = 4 * 1024 * 1024


class ApiError(Exception):
    """An HTTP error answered as `{"error": message}` with `X-Error-Code` when `code` is set."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.extra = extra or {}
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


class NoSuchRoute(ApiError):
    """No route serves this request: the app answers from `unsupported.route_error` (404 naming
    the route, or 501 naming a Hub feature this hub does not implement)."""

    def __init__(self):
        super().__init__(404, "no such route")


def header_safe(text: str, limit: int = 500) -> str:
    """`text` as a header value: printable ASCII only (others become '?'), at most `limit` chars."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def error_response(err: ApiError) -> JSONResponse:
    headers = dict(err.headers)
    if err.code:
        headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = header_safe(err.message)
    return JSONResponse({**err.extra, "error": err.message}, status_code=err.status, headers=headers)


def repo_not_found(repo_type: str, repo_id: str) -> ApiError:
    kind = "Dataset" if repo_type == "dataset" else "Repository"
    return ApiError(
        404,
        f"{kind} not found: {repo_id}. Check the name, and pass a token that may see it if it is private.",
        "RepoNotFound",
    )


def get_session(request: Request) -> Iterator[Session]:
    """A session committed when the route returns. Always depend on it with scope="function":
    the default scope commits after the response is sent, so a client could act on a 200 (a
    created repo) before the row exists, and a failed commit would still have answered 200."""
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_principal(
    request: Request, session: Annotated[Session, Depends(get_session, scope="function")]
) -> auth.Principal:
    """The caller; a wrong token is a 401 on every route. (Routes take it as `deps.CallerDep`.)"""
    try:
        return auth.authenticate(session, request.headers.get("authorization"))
    except auth.AuthError as err:
        raise ApiError(401, str(err), headers={"WWW-Authenticate": 'Bearer realm="haven"'}) from err


def require_user(p: auth.Principal) -> auth.Principal:
    if p.anonymous:
        raise ApiError(
            401,
            "authentication required: pass a token (Authorization: Bearer hv_...)",
            headers={"WWW-Authenticate": 'Bearer realm="haven"'},
        )
    return p


def base_url(request: Request) -> str:
    return request.app.state.settings.public_url


def repo_url(request: Request, repo_type: str, repo_id: str) -> str:
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"{base_url(request)}/{prefix}{repo_id}"


_REPO = select(Repo).where(  # built once: every request that names a repository runs it
    Repo.type == bindparam("type"), Repo.namespace == bindparam("namespace"), Repo.name == bindparam("name")
)


def find_repo(session: Session, repo_type: str, repo_id: str) -> Repo | None:
    ns, _, name = repo_id.partition("/")
    return session.scalar(_REPO, {"type": repo_type, "namespace": ns, "name": name})


def load_repo(
    session: Session, p: auth.Principal, repo_type: str, repo_id: str, *, write: bool = False
) -> Repo:
    """The repo if the caller may see it (and write to it when `write`); else 404 (never 403 for
    a repo the caller cannot see) or 401/403 for a visible repo the caller may not change."""
    repo = find_repo(session, repo_type, repo_id)
    if repo is None or not auth.can_read(p, repo):
        raise repo_not_found(repo_type, repo_id)
    if write:
        if p.anonymous:
            raise ApiError(
                401,
                "authentication required to write: pass a write token",
                headers={"WWW-Authenticate": 'Bearer realm="haven"'},
            )
        if not auth.is_member(p, repo.namespace):
            raise ApiError(
                403,
                f"you ({p.name}) may not write to {repo_id}: only its owner or members of "
                f"its organization can",
            )
        if p.role != "write":
            raise ApiError(
                403, "this token is read-only: use a token with the 'write' role to change repositories"
            )
    return repo


def raw_tail(request: Request, repo_id: str, marker: str) -> tuple[str, str]:
    """Split the raw (still-quoted) URL path after `/{repo_id}/{marker}/` into (revision, rest).

    Revisions arrive quoted with safe="" (`refs%2Fpr%2F1`), so they are one raw segment;
    the rest (a file path) keeps its slashes. Both come back unquoted.
    """
    raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
    key = f"/{repo_id}/{marker}/"
    idx = raw.find(key)
    if idx < 0:
        return "", ""
    rev, _, rest = raw[idx + len(key) :].partition("/")
    return unquote(rev), unquote(rest)


def raw_ref(request: Request, repo_id: str, marker: str) -> str:
    """The revision after `/{repo_id}/{marker}/`, whether it came quoted or with raw slashes."""
    rev, more = raw_tail(request, repo_id, marker)
    return f"{rev}/{more}" if more else rev


def plural(repo_type: str) -> str:
    return repo_type + "s"


# -- helpers for the routes that read their body themselves (bodies.py parses it) -----------------


MAX_JSON_BODY = 16 << 20  # JSON requests (preupload, batch, settings ...) are small


async def read_body(request: Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body over {limit >> 20} MB: send less per request")
    parts, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"request body over {limit >> 20} MB: send less per request")
        parts.append(chunk)
    return b"".join(parts)


class session_scope:
    """`with session_scope(request) as (session, principal)`: commit on success. For code outside
    a route's dependencies (the web pages, git's push hook); routes take `deps.SessionDep`."""

    def __init__(self, request: Request):
        self.request = request

    def __enter__(self):
        self.session = self.request.app.state.sessionmaker()
        try:
            self.principal = get_principal(self.request, self.session)
        except BaseException:
            self.session.close()
            raise
        return self.session, self.principal

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.session.close()
        return False
