"""Organisation pages and the admin's user list.

- `/organizations/new`: a signed-in user founds an org and becomes its first admin.
- `/organizations/{org}/settings/members`: members and their roles (admin, write, read), seen by
  the org's members and site admins. Org admins (and site admins) add a member by user name,
  change a role and remove a member; any member may leave. The last admin cannot leave, be
  removed or lose the role (the page says so).
- `/admin/users`: site admins (`users.is_admin`) list every user and disable or enable one.

Every form is CSRF-guarded (`sessions.require_session`); every change goes through `auth`, the
same functions `haven admin` and the API's access rules use.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from .. import auth
from ..api.common import ApiError
from ..db import Org, User
from .render import Viewer, WebRoute, page
from .sessions import require_session, sign_in_first, viewing

router = APIRouter(route_class=WebRoute, include_in_schema=False)
FULLNAME_MAX = 200


# -- a new organisation ----------------------------------------------------------------------------


@router.get("/organizations/new")
def new_org_page(request: Request) -> Response:
    with viewing(request) as (_session, viewer):
        return sign_in_first(request, viewer) or page(request, "orgs_new.html", name="", fullname="")


@router.post("/organizations/new")
def new_org(request: Request, name: str = Form(""), fullname: str = Form(""), csrf: str = Form("")) -> Response:
    with viewing(request) as (session, viewer):
        require_session(viewer, csrf)
        name, fullname = name.strip(), fullname.strip()
        try:
            if len(fullname) > FULLNAME_MAX or not fullname.isprintable():
                raise ValueError(f"the full name must be at most {FULLNAME_MAX} printable characters")
            auth.found_org(session, name, viewer.principal.user, fullname)
        except ValueError as err:
            return page(request, "orgs_new.html", status_code=400, error=str(err), name=name, fullname=fullname)
        return RedirectResponse(f"/organizations/{name}/settings/members", status_code=303)


# -- members -----------------------------------------------------------------------------------------


def _org(session, name: str) -> Org:
    org = session.scalar(select(Org).where(Org.name == name))
    if org is None:
        raise ApiError(404, f"no organization named {name!r} on this hub")
    return org


def _members_page(request: Request, session, viewer: Viewer, org: Org, status_code: int = 200,
                  **context) -> Response:
    p = viewer.principal
    if p.user is None:
        raise ApiError(401, f"sign in to see the members of {org.name}")
    if not (p.user.is_admin or org.name in p.orgs):
        raise ApiError(403, f"only members of {org.name} and hub administrators see its members")
    return page(request, "members.html", status_code=status_code, org=org, members=auth.org_members(session, org),
                roles=auth.ORG_ROLES, manage=auth.can_manage_org(p, org.name), member=org.name in p.orgs,
                **context)


@router.get("/organizations/{org_name}/settings/members")
def members_page(request: Request, org_name: str) -> Response:
    with viewing(request) as (session, viewer):
        org = _org(session, org_name)
        return sign_in_first(request, viewer) or _members_page(request, session, viewer, org)


def _change(request: Request, org_name: str, csrf: str, change, *, self_service: bool = False) -> Response:
    """Run `change(session)` for an org admin (or, for `self_service`, any member), then show the
    members page again: with the refusal's message (400) when `auth` refuses the change."""
    with viewing(request) as (session, viewer):
        org = _org(session, org_name)
        require_session(viewer, csrf)
        p = viewer.principal
        if not self_service and not auth.can_manage_org(p, org.name):
            raise ApiError(403, f"only admins of {org.name} manage its members: ask one of them")
        try:
            change(session)
        except auth.MembershipError as err:
            session.rollback()
            return _members_page(request, session, viewer, org, 400, error=str(err))
        if self_service:
            return RedirectResponse(f"/{viewer.name}", status_code=303)
        return RedirectResponse(f"/organizations/{org.name}/settings/members", status_code=303)


@router.post("/organizations/{org_name}/settings/members")
def add_member(request: Request, org_name: str, name: str = Form(""), role: str = Form(""),
               csrf: str = Form("")) -> Response:
    """Add a member by user name, or change a member's role."""
    return _change(request, org_name, csrf, lambda session: auth.add_member(session, org_name, name.strip(), role))


@router.post("/organizations/{org_name}/settings/members/{user_name}/remove")
def remove_member(request: Request, org_name: str, user_name: str, csrf: str = Form("")) -> Response:
    return _change(request, org_name, csrf, lambda session: auth.remove_member(session, org_name, user_name))


@router.post("/organizations/{org_name}/leave")
def leave(request: Request, org_name: str, csrf: str = Form("")) -> Response:
    def change(session) -> None:
        auth.remove_member(session, org_name, request.state.viewer.name)

    return _change(request, org_name, csrf, change, self_service=True)


# -- the admin's user list -----------------------------------------------------------------------------


def _site_admin(viewer: Viewer) -> None:
    if viewer.principal.user is None or not viewer.principal.user.is_admin:
        raise ApiError(403, "only hub administrators see the user list (haven admin create-user NAME --admin)")


@router.get("/admin/users")
def users_page(request: Request) -> Response:
    with viewing(request) as (session, viewer):
        redirect = sign_in_first(request, viewer)
        if redirect:
            return redirect
        _site_admin(viewer)
        users = session.scalars(select(User).order_by(User.name)).all()
        return page(request, "admin_users.html", users=users)


@router.post("/admin/users/{user_name}/{action}")
def disable_user(request: Request, user_name: str, action: str, csrf: str = Form("")) -> Response:
    if action not in ("disable", "enable"):
        raise ApiError(404, f"unknown action {action!r}: use disable or enable")
    with viewing(request) as (session, viewer):
        require_session(viewer, csrf)
        _site_admin(viewer)
        user = session.scalar(select(User).where(User.name == user_name))
        if user is None:
            raise ApiError(404, f"no user named {user_name!r} on this hub")
        if user.id == viewer.user_id:
            raise ApiError(400, "you cannot disable your own account: ask another administrator")
        auth.set_disabled(session, user, action == "disable")
        return RedirectResponse("/admin/users", status_code=303)
