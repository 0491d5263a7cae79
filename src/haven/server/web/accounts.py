"""Account pages: `/join` (sign-up, unless the hub runs with `--no-signup`), `/login`, `/logout`
(POST), `/settings/password` and `/settings/tokens` (create a read or write token, shown once;
list with last use; revoke). Every form is CSRF-guarded and every change goes through `auth`,
the same functions `haven admin` uses; see `sessions` for cookies, CSRF and the sign-in and
sign-up limits.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from .. import auth
from ..api.common import ApiError
from ..db import User
from . import sessions
from .render import Viewer, WebRoute, page
from .sessions import viewing

router = APIRouter(route_class=WebRoute, include_in_schema=False)
TOKEN_NAME_MAX = 100
SIGNUP_OFF = "sign-up is turned off on this hub: ask an administrator to create your account " \
             "(haven admin create-user NAME --password-stdin)"


def _anonymous_form(request: Request, template: str, status_code: int = 200, headers: dict | None = None,
                    **context) -> Response:
    """The sign-in or sign-up page, with a double-submit CSRF cookie when the browser has none."""
    token, fresh = sessions.anonymous_csrf(request)
    response = page(request, template, status_code=status_code, csrf=token, **context)
    if fresh:
        sessions.set_cookie(request, response, sessions.CSRF_COOKIE, fresh, None)
    response.headers.update(headers or {})
    return response


def _signed_in_redirect(request: Request, session, viewer: Viewer, user: User, target: str) -> Response:
    response = RedirectResponse(sessions.safe_next(target), status_code=303)
    if viewer.web_session is not None:  # signing in as someone else ends the session before
        session.delete(viewer.web_session)
    sessions.start_session(request, response, session, user)
    return response


# -- sign-up ---------------------------------------------------------------------------------------


@router.get("/join")
def join_page(request: Request) -> Response:
    with viewing(request):
        if not request.app.state.settings.signup:
            raise ApiError(403, SIGNUP_OFF)
        return _anonymous_form(request, "join.html", name="")


@router.post("/join")
def join(request: Request, name: str = Form(""), password: str = Form(""), password2: str = Form(""),
         csrf: str = Form("")) -> Response:
    with viewing(request) as (session, viewer):
        if not request.app.state.settings.signup:
            raise ApiError(403, SIGNUP_OFF)
        sessions.check_anonymous_csrf(request, csrf)
        limiter, keys = sessions.signup_limiter(request), sessions.signup_keys(request)
        wait = limiter.wait(keys)
        if wait:
            return _anonymous_form(request, "join.html", status_code=429, headers={"Retry-After": str(wait)},
                                   error=sessions.retry_message("new accounts from this address", wait), name=name)
        try:
            if password != password2:
                raise ValueError("the two passwords differ: type the same password twice")
            user = auth.create_user(session, name.strip(), password=password)
        except ValueError as err:  # PasswordError is one
            return _anonymous_form(request, "join.html", status_code=400, error=str(err), name=name)
        limiter.hit(keys)
        return _signed_in_redirect(request, session, viewer, user, "/")


# -- sign-in and sign-out --------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> Response:
    with viewing(request):
        return _anonymous_form(request, "login.html", name="", next=sessions.safe_next(request.query_params.get("next")))


@router.post("/login")
def login(request: Request, name: str = Form(""), password: str = Form(""), csrf: str = Form(""),
          next: str = Form("/")) -> Response:  # noqa: A002 - the form field's name
    with viewing(request) as (session, viewer):
        sessions.check_anonymous_csrf(request, csrf)
        limiter, keys = sessions.limiter(request), sessions.login_keys(request, name.strip())
        wait = limiter.wait(keys)
        if wait:
            message = sessions.retry_message("failed sign-ins for this account or from this address", wait)
            return _anonymous_form(request, "login.html", status_code=429, headers={"Retry-After": str(wait)},
                                   error=message, name=name, next=sessions.safe_next(next))
        user = session.scalar(select(User).where(User.name == name.strip()))
        if not auth.verify_password(user.password_hash if user else None, password):
            limiter.hit(keys)
            return _anonymous_form(request, "login.html", status_code=401, error="wrong user name or password",
                                   name=name, next=sessions.safe_next(next))
        limiter.forget(keys[1])
        if user.disabled:  # the right password, for an account an administrator turned off
            return _anonymous_form(request, "login.html", status_code=403, error=auth.DISABLED,
                                   name=name, next=sessions.safe_next(next))
        return _signed_in_redirect(request, session, viewer, user, next)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    with viewing(request) as (session, viewer):
        response = RedirectResponse("/", status_code=303)
        if viewer.web_session is not None:
            sessions.require_session(viewer, csrf)
            sessions.end_session(request, response, session, viewer)
        return response


# -- settings: password and tokens -----------------------------------------------------------------


@router.get("/settings/password")
def password_page(request: Request) -> Response:
    with viewing(request) as (_session, viewer):
        return sessions.sign_in_first(request, viewer) or page(request, "password.html")


@router.post("/settings/password")
def change_password(request: Request, current: str = Form(""), password: str = Form(""), password2: str = Form(""),
                    csrf: str = Form("")) -> Response:
    with viewing(request) as (session, viewer):
        sessions.require_session(viewer, csrf)
        user = viewer.principal.user
        try:
            if not auth.verify_password(user.password_hash, current):
                raise ValueError("the current password is wrong")
            if password != password2:
                raise ValueError("the two new passwords differ: type the same password twice")
            auth.set_password(session, user, password)
        except ValueError as err:
            return page(request, "password.html", status_code=400, error=str(err))
        auth.end_sessions(session, user, keep=viewer.web_session)  # sign out every other browser
        return page(request, "password.html", done=True)


def _tokens_page(request: Request, session, viewer: Viewer, status_code: int = 200, **context) -> Response:
    tokens = auth.user_tokens(session, viewer.principal.user)
    return page(request, "tokens.html", status_code=status_code, tokens=tokens, **context)


@router.get("/settings/tokens")
def tokens_page(request: Request) -> Response:
    with viewing(request) as (session, viewer):
        return sessions.sign_in_first(request, viewer) or _tokens_page(request, session, viewer)


@router.post("/settings/tokens")
def create_token(request: Request, name: str = Form(""), role: str = Form(""), csrf: str = Form("")) -> Response:
    with viewing(request) as (session, viewer):
        sessions.require_session(viewer, csrf)
        name = name.strip()
        if not name or len(name) > TOKEN_NAME_MAX or not name.isprintable():
            return _tokens_page(request, session, viewer, 400,
                                error=f"give the token a name of 1 to {TOKEN_NAME_MAX} printable characters")
        if role not in ("read", "write"):
            return _tokens_page(request, session, viewer, 400, error="choose the token's role: read or write")
        token = auth.create_token(session, viewer.name, role, name)
        return _tokens_page(request, session, viewer, created=token, created_name=name)


@router.post("/settings/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: int, csrf: str = Form("")) -> Response:
    with viewing(request) as (session, viewer):
        sessions.require_session(viewer, csrf)
        if not auth.revoke_token(session, viewer.principal.user, token_id):
            raise ApiError(404, "you have no token with this id: it may be revoked already")
        return RedirectResponse("/settings/tokens", status_code=303)
