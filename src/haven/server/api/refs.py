"""Refs of a repository: list refs, create/delete branches and tags, list commits."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from .bodies import CreateBranchBody, CreateTagBody, SafeJsonRoute
from .common import ApiError, raw_ref
from .deps import ReadableRepo, WritableRepo
from .repos import iso, repo_url_api, store

router = APIRouter(prefix="/api/{plural}/{ns}/{name}", route_class=SafeJsonRoute)
COMMITS_PAGE = 50


def ref_item(r) -> dict:
    return {"name": r.name, "ref": r.ref, "targetCommit": r.target_commit}


@router.get("/refs")
def list_refs(request: Request, repo: ReadableRepo, include_prs: bool = False) -> dict:
    branches, tags = store(request).refs(repo.type, repo.repo_id)
    data = {"branches": [ref_item(b) for b in branches], "converts": [], "tags": [ref_item(t) for t in tags]}
    if include_prs:
        data["pullRequests"] = []
    return data


@router.post("/branch/{rest:path}")
def create_branch(
    request: Request, repo: WritableRepo, rest: str, body: Annotated[CreateBranchBody | None, Body()] = None
) -> dict:
    branch = raw_ref(request, repo.repo_id, "branch")
    st = store(request)  # an existing branch: storage's RefExistsError, 409
    start = st.resolve(repo.type, repo.repo_id, (body and body.startingPoint) or "main")
    st.create_branch(repo.type, repo.repo_id, branch, start)
    return {}


@router.delete("/branch/{rest:path}")
def delete_branch(request: Request, repo: WritableRepo, rest: str) -> dict:
    branch = raw_ref(request, repo.repo_id, "branch")
    if branch == "main":
        raise ApiError(400, "the main branch cannot be deleted")
    store(request).delete_branch(repo.type, repo.repo_id, branch)
    return {}


@router.post("/tag/{rest:path}")
def create_tag(request: Request, repo: WritableRepo, rest: str, body: CreateTagBody) -> dict:
    rev = raw_ref(request, repo.repo_id, "tag")
    st = store(request)  # an existing tag: storage's RefExistsError, 409
    sha = st.resolve(repo.type, repo.repo_id, rev)
    st.create_tag(repo.type, repo.repo_id, body.tag, sha, body.message)
    return {}


@router.delete("/tag/{rest:path}")
def delete_tag(request: Request, repo: WritableRepo, rest: str) -> dict:
    store(request).delete_tag(repo.type, repo.repo_id, raw_ref(request, repo.repo_id, "tag"))
    return {}


@router.get("/commits/{rest:path}")
def list_commits(request: Request, repo: ReadableRepo, rest: str, limit: int = COMMITS_PAGE) -> JSONResponse:
    rev = raw_ref(request, repo.repo_id, "commits")
    page = request.query_params.get("p", "0") or "0"
    if not page.isdigit():
        raise ApiError(400, f"invalid page p={page!r}: use a non-negative integer")
    page = int(page)
    limit = max(1, min(limit, 1000))
    commits = store(request).log(repo.type, repo.repo_id, rev, skip=page * limit, limit=limit + 1)
    items = [
        {
            "id": c.id,
            "authors": [{"user": a} for a in c.authors],
            "date": iso(c.date),
            "title": c.title,
            "message": c.message,
            "parents": list(c.parents),
        }
        for c in commits[:limit]
    ]
    headers = {}
    if len(commits) > limit:
        url = f"{repo_url_api(request, repo)}/commits/{quote(rev, safe='')}?{urlencode({'p': page + 1, 'limit': limit})}"
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(items, headers=headers)


__all__ = ["router"]
