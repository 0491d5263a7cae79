"""Templates and the headers every page carries.

Jinja2 with autoescape on for every template: user strings (names, file names, commit messages)
are escaped; only HTML this package built and sanitised (cards, highlighted code) is marked safe.
Every page gets a strict Content-Security-Policy (scripts and styles from the hub itself only, no
inline script, no frames) and `nosniff`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import auth, storage
from ..api.common import ApiError, NoSuchRoute

HERE = Path(__file__).parent
STATIC = HERE / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def human_size(n: int | None) -> str:
    if not n:
        return "0 B"
    units = ["B", "kB", "MB", "GB", "TB"]
    i = min(int(math.log(n, 1000)), len(units) - 1)
    return f"{n} B" if i == 0 else f"{n / 1000**i:.1f} {units[i]}"


def human_count(n: int | None) -> str:
    n = n or 0
    for size, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)


def ago(dt: datetime | None) -> str:
    """'3 days ago' (UTC); naive datetimes are UTC, as the index stores them."""
    if dt is None:
        return "never"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - dt).total_seconds()))
    for size, unit in ((31536000, "year"), (2592000, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def iso_date(dt: datetime | None) -> str:
    if dt is None:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def repo_path(repo) -> str:
    """A repository's page path: /owner/name, or /datasets/owner/name."""
    return f"/datasets/{repo.repo_id}" if repo.type == "dataset" else f"/{repo.repo_id}"


def rev_url(base: str, view: str, rev: str, path: str = "") -> str:
    """`{base}/{view}/{rev}/{path}` with the revision as one segment and the path's slashes kept."""
    tail = f"/{quote(path)}" if path else ""
    return f"{base}/{view}/{quote(rev, safe='')}{tail}"


_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(size=human_size, count=human_count, ago=ago, date=iso_date, quote=quote)
_env.globals.update(repo_path=repo_path, rev_url=rev_url)


RESERVED = {"api"}  # first path segments the API owns: no model page under them


class Viewer:
    """Who is looking: a signed-in browser session (`web_session`, with the CSRF token its forms
    carry), or the `Authorization: Bearer` token through the API's own authentication, or nobody
    (see `sessions.viewing`)."""

    def __init__(self, principal: auth.Principal, *, csrf: str = "", web_session=None):
        self.principal = principal  # for access checks, inside the request's session
        self.name = principal.name  # kept as plain values: error pages render after a rollback
        self.user_id = principal.user.id if principal.user else None
        self.signed_in = not principal.anonymous
        self.is_admin = bool(principal.user and principal.user.is_admin)
        self.csrf = csrf
        self.web_session = web_session


def page(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """Render `template` into an HTML response with the page headers."""
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    context.setdefault("public_url", request.app.state.settings.public_url)
    context.setdefault("signup", request.app.state.settings.signup)
    html = _env.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Not found",
              413: "Too large for a web form", 429: "Too many tries"}
    return page(request, "error.html", status_code=status, status=status, title=titles.get(status, "Error"), message=message)


class WebRoute(APIRoute):
    """A page route: API and storage errors become HTML error pages with the same status."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except NoSuchRoute:
                raise
            except ApiError as err:
                return error_page(request, err.status, err.message)
            except storage.StorageError as err:
                return error_page(request, err.status, getattr(err, "message", None) or str(err))

        return page_handler
