"""Listing and search: `GET /api/models`, `GET /api/datasets`."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session

from .. import auth
from ..db import Repo
from .common import REPO_TYPES, ApiError, get_principal, get_session
from .repos import info_payload, repo_summary

router = APIRouter()
MAX_PAGE = 1000
SORTS = {
    "downloads": Repo.downloads,
    "likes": Repo.likes,
    "lastModified": Repo.last_modified,
    "last_modified": Repo.last_modified,
    "createdAt": Repo.created_at,
    "created_at": Repo.created_at,
    "id": Repo.name,
    "trendingScore": Repo.downloads,
}


def _visible(p: auth.Principal):
    if p.user is not None and p.user.is_admin:
        return None
    names = [p.user.name, *p.orgs] if p.user is not None else []
    return or_(Repo.private == false(), Repo.namespace.in_(names)) if names else Repo.private == false()


def _matches_filters(repo: Repo, filters: list[str]) -> bool:
    tags = set(repo.tags or [])
    for f in filters:
        if f in tags or f == repo.pipeline_tag or f == repo.library_name or f == repo.repo_id:
            continue
        return False
    return True


@router.get("/api/{plural}")
def list_repos(
    request: Request,
    plural: str,
    session: Session = Depends(get_session, scope="function"),
    p: auth.Principal = Depends(get_principal),
) -> JSONResponse:
    if plural not in REPO_TYPES:
        raise ApiError(404, f"unknown listing {plural!r}: use /api/models or /api/datasets")
    q = request.query_params
    repo_type = REPO_TYPES[plural]
    filters = [f for value in q.getlist("filter") for f in value.split(",") if f]
    stmt = select(Repo).where(Repo.type == repo_type)
    visible = _visible(p)
    if visible is not None:
        stmt = stmt.where(visible)
    if q.get("author"):
        stmt = stmt.where(Repo.namespace == q["author"])
    if q.get("search"):
        term = q["search"].lower()
        like = f"%{term.replace('%', '').replace('_', '')}%"
        stmt = stmt.where(or_((Repo.namespace + "/" + Repo.name).ilike(like), Repo.name.ilike(like)))
    if q.get("pipeline_tag"):
        stmt = stmt.where(Repo.pipeline_tag == q["pipeline_tag"])
    sort = q.get("sort") or "createdAt"
    if sort not in SORTS:
        raise ApiError(
            400, f"unknown sort {sort!r}: use one of downloads, likes, lastModified, createdAt, id"
        )
    column = SORTS[sort]
    ascending = q.get("direction") in ("1", "asc") or (sort == "id" and q.get("direction") is None)
    stmt = stmt.order_by(column.asc() if ascending else column.desc(), Repo.id.desc())
    try:
        limit = max(1, min(int(q.get("limit") or MAX_PAGE), MAX_PAGE))
        cursor = max(0, int(q.get("cursor") or 0))
    except ValueError as err:
        raise ApiError(400, "limit and cursor must be integers") from err
    full = q.get("full", "").lower() in ("1", "true")
    card = full or q.get("cardData", "").lower() in ("1", "true")
    with_config = q.get("config", "").lower() in ("1", "true")

    # Tag filters are checked in Python (tags are a JSON list): walk matches in order.
    items, seen, more = [], 0, False
    for repo in session.scalars(stmt):
        if filters and not _matches_filters(repo, filters):
            continue
        if seen < cursor:
            seen += 1
            continue
        if len(items) == limit:
            more = True
            break
        items.append(repo)
    out = []
    for repo in items:
        if full:
            try:
                data = info_payload(request, repo, repo.sha or "main", blobs=False)
            except Exception:
                data = repo_summary(repo, full=True)
        else:
            data = repo_summary(repo, full=card)
        if with_config and repo.type == "model":
            data["config"] = repo.config or {}
        out.append(data)
    headers = {}
    if more:
        params = [(k, v) for k, v in q.multi_items() if k != "cursor"] + [("cursor", str(cursor + limit))]
        url = f"{request.app.state.settings.public_url}/api/{plural}?{urlencode(params)}"
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(out, headers=headers)
