"""Who is looking at a page, and the guards of the web forms.

- The viewer comes from the session cookie (`haven_session`, HttpOnly, SameSite=Lax, Secure when
  the public URL is https), else from an `Authorization: Bearer` token. Cookies identify a
  viewer to the pages only: the API and git read tokens alone, so no cookie can authorise an
  API write and the API needs no CSRF defence.
- CSRF: every form carries a `csrf` field. A signed-in user's token is an HMAC of their session
  (under the hub's secret); the sign-in and sign-up forms, which have no session yet, use a
  signed double-submit cookie (`haven_csrf`). A form without the right token is refused (403).
- Sign-in is rate-limited: 10 failures per 15 minutes per client address and per user name
  answer 429 until the window has room again. Sign-up too: 40 new accounts per hour per client
  address. The counts live in the server process (each worker process counts on its own, and a
  restart forgets them); behind a reverse proxy every client shares the proxy's address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from .. import auth
from ..api.common import ApiError, NoSuchRoute, get_principal, get_session, load_repo
from ..db import User
from .render import RESERVED, Viewer

SESSION_COOKIE = "haven_session"
CSRF_COOKIE = "haven_csrf"
MAX_FAILURES = 10
WINDOW = 15 * 60  # seconds
MAX_SIGNUPS = 40  # accounts per SIGNUP_WINDOW per client address
SIGNUP_WINDOW = 60 * 60
STALE_FORM = "this form's security token is missing or stale: reload the page and submit the form again"


def _settings(request: Request):
    return request.app.state.settings


def _mac(request: Request, *parts: str) -> str:
    msg = "\n".join(parts).encode()
    return hmac.new(_settings(request).secret.encode(), msg, hashlib.sha256).hexdigest()


@contextmanager
def viewing(request: Request) -> Iterator[tuple[Session, Viewer]]:
    """(database session, viewer) for a page, committed when the page renders without error (the
    API's own request session)."""
    with contextmanager(get_session)(request) as session:
        found = auth.find_session_user(session, request.cookies.get(SESSION_COOKIE))
        if found is not None:
            row, user = found
            principal = auth.principal_for(session, user, role="write")
            viewer = Viewer(principal, csrf=_mac(request, "csrf", row.id_hash), web_session=row)
        else:
            viewer = Viewer(get_principal(request, session))
        request.state.viewer = viewer
        yield session, viewer


def page_repo(session: Session, viewer: Viewer, repo_type: str, owner: str, name: str):
    """The repository a page shows, by the API's own access rule (private = 404); a model URL whose
    owner is a reserved page name (`/models/...`, `/settings/...`) is no repository at all."""
    if repo_type == "model" and owner in RESERVED:
        raise NoSuchRoute()
    return load_repo(session, viewer.principal, repo_type, f"{owner}/{name}")


def require_session(viewer: Viewer, csrf: str) -> None:
    """A form that changes something: the viewer must be signed in with a browser session and the
    form must carry that session's CSRF token."""
    if viewer.web_session is None:
        raise ApiError(401, "sign in first: this form works for a signed-in browser session")
    if not hmac.compare_digest(csrf.encode(), viewer.csrf.encode()):
        raise ApiError(403, STALE_FORM)


# -- the sign-in and sign-up forms: a signed double-submit cookie ------------------------------------


def anonymous_csrf(request: Request) -> tuple[str, str | None]:
    """(token for the form, new cookie value or None when the browser already has one)."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    fresh = None
    if len(cookie) < 32:
        cookie = fresh = secrets.token_urlsafe(32)
    return _mac(request, "anonymous-csrf", cookie), fresh


def check_anonymous_csrf(request: Request, csrf: str) -> None:
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    if len(cookie) < 32 or not hmac.compare_digest(csrf.encode(), _mac(request, "anonymous-csrf", cookie).encode()):
        raise ApiError(403, STALE_FORM)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="lax", secure=_settings(request).secure_cookies,
    )


def start_session(request: Request, response: Response, session: Session, user: User) -> None:
    sid = auth.create_session(session, user)
    set_cookie(request, response, SESSION_COOKIE, sid, auth.SESSION_DAYS * 86400)


def end_session(request: Request, response: Response, session: Session, viewer: Viewer) -> None:
    if viewer.web_session is not None:
        session.delete(viewer.web_session)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=_settings(request).secure_cookies)


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site: no `//host`, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# -- sign-in and sign-up rate limits ---------------------------------------------------------------


class Limiter:
    """Events per key (failed sign-ins per client address and user name; sign-ups per address) in
    a sliding window: `wait` says how long until a key has room, `hit` counts one event."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW):
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def wait(self, keys: list[str]) -> int:
        """Seconds until each key has room for another try (0: go ahead)."""
        now = time.monotonic()
        with self._lock:
            waits = [self._recent(k, now) for k in keys]
            return max((int(t[0] + self.window - now) + 1 for t in waits if len(t) >= self.limit), default=0)

    def hit(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 100_000:  # bound memory: forget what has left the window
                for key in list(self._failures):
                    self._recent(key, now)
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def limiter(request: Request) -> Limiter:
    """The app's sign-in limiter (failed sign-ins)."""
    state = request.app.state
    if not hasattr(state, "login_limiter"):
        state.login_limiter = Limiter()
    return state.login_limiter


def signup_limiter(request: Request) -> Limiter:
    """The app's sign-up limiter (accounts created per client address)."""
    state = request.app.state
    if not hasattr(state, "signup_limiter"):
        state.signup_limiter = Limiter(MAX_SIGNUPS, SIGNUP_WINDOW)
    return state.signup_limiter


def _address(request: Request) -> str:
    return f"ip:{request.client.host if request.client else 'unknown'}"


def login_keys(request: Request, name: str) -> list[str]:
    return [_address(request), f"user:{name.lower()}"]


def signup_keys(request: Request) -> list[str]:
    return [_address(request)]


def retry_message(what: str, wait: int) -> str:
    minutes = (wait + 59) // 60
    return f"too many {what}: try again in {minutes} minute{'s' if minutes > 1 else ''}"


def sign_in_first(request: Request, viewer) -> Response | None:
    """A redirect to the sign-in page (and back here afterwards) when the viewer has no browser
    session; None when they have one."""
    if viewer.web_session is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return None
