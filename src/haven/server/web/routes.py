"""The hub's web pages: home, lists, repository pages, files, history, profiles, the like button;
the account pages come from `accounts` (included before the repository routes).

Included after the API, git, resolve and LFS routes, and using their access rules and storage
calls: a page loads a repository through `api.common.load_repo` (a private
repo is a 404 to whoever may not see it) and lists through `api.search`. Errors become HTML
pages with the API's status and message. Paths under `/api/` are left to the API's own
"no such route" answer. Static assets live under `/-/static/`, a path no user name can take.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from ..api.common import SANDBOX, ApiError, NoSuchRoute, raw_ref, raw_tail
from ..api.likes import likes_of, set_like
from ..api.repos import store, transformers_info
from ..db import Org, User
from . import accounts, listing, orgs, publish, tensorboard, widgets
from .cardinfo import card_info
from .diff import commit_changes
from .markdown import highlight_file, pygments_css, render_card
from .render import RESERVED, STATIC, WebRoute, page, repo_path, rev_url
from .sessions import page_repo, require_session, viewing
from .snippets import snippets

MAX_VIEW_BYTES = 1 << 20  # larger text files are offered as raw downloads, not rendered
COMMITS_PAGE = 30
MAX_LAST_COMMITS = 200  # tree entries that get their last commit looked up


router = APIRouter(route_class=WebRoute, include_in_schema=False)


# -- static assets, home, lists, profiles --------------------------------------------------------


@router.get("/-/static/{name}")
def static(name: str) -> Response:
    headers = {"Cache-Control": "public, max-age=3600"}  # nosniff: app.SecurityHeaders, on every response
    if name == "pygments.css":
        return Response(pygments_css(), media_type="text/css", headers=headers)
    files = {p.name: p for p in STATIC.iterdir()}
    if name not in files:
        raise ApiError(404, f"no static asset named {name!r}")
    media = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}.get(files[name].suffix, "text/plain")
    return Response(files[name].read_bytes(), media_type=media, headers=headers)


@router.get("/")
def home(request: Request) -> Response:
    with viewing(request) as (session, viewer):
        trending = listing.top(session, viewer.principal, "models", "downloads")
        recent = listing.top(session, viewer.principal, "models", "lastModified")
        datasets = listing.top(session, viewer.principal, "datasets", "lastModified", limit=5)
        mine = []
        if viewer.signed_in:
            mine = [repo for plural in ("models", "datasets")
                    for repo in listing.owned(session, viewer.principal, viewer.name, plural)]
        return page(request, "home.html", trending=trending, recent=recent, datasets=datasets, mine=mine)


def _list_page(request: Request, plural: str) -> Response:
    with viewing(request) as (session, viewer):
        result = listing.list_repos(session, viewer.principal, plural, request.query_params)
        return page(
            request, "list.html", plural=plural, result=result, params=request.query_params,
            filters=listing.FILTERS, sorts=listing.SORTS, url_with=listing.url_with,
        )


@router.get("/models")
def models(request: Request) -> Response:
    return _list_page(request, "models")


@router.get("/datasets")
def datasets(request: Request) -> Response:
    return _list_page(request, "datasets")


# -- repository pages (models at /{owner}/{name}, datasets under /datasets/) --------------------


def _refs(request: Request, repo) -> dict:
    branches, tags = store(request).refs(repo.type, repo.repo_id)
    return {"branches": [b.name for b in branches], "tags": [t.name for t in tags]}


def card_page(request: Request, repo_type: str, owner: str, name: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, repo_type, owner, name)
        st = store(request)
        sha = st.resolve(repo.type, repo.repo_id, "main")
        files = [e for e in st.list_tree(repo.type, repo.repo_id, sha, "", recursive=True) if e.type == "file"]
        readme = next((e for e in files if e.path == "README.md"), None)
        card = card_info(st.read_blob(repo.type, repo.repo_id, sha, "README.md") if readme else None)
        base = repo_path(repo)
        html = render_card(card.text, base) if card.text else ""
        info = transformers_info(repo, [e.path for e in files])
        tags = [(tag, listing.tag_link(repo, tag)) for tag in repo.tags or []]
        liked = viewer.user_id is not None and likes_of(session, viewer.user_id, repo.id)
        return page(
            request, "repo.html", repo=repo, base=base, tab="card", card=card, card_html=html, tags=tags,
            like={"liked": liked, "viewer": viewer, "next": base},
            snippets=snippets(repo, request.app.state.settings.public_url, (info or {}).get("auto_model")),
            file_count=len(files), used=sum(e.size for e in files), metrics=tensorboard.has_event_files(files),
            widget=widgets.widget_for(request, repo, st, sha, files, card.meta),
        )


def tree_page(request: Request, repo_type: str, owner: str, name: str, rest: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, repo_type, owner, name)
        rev, path = raw_tail(request, repo.repo_id, "tree")
        path = path.strip("/")
        st = store(request)
        sha = st.resolve(repo.type, repo.repo_id, rev)
        entries = st.list_tree(repo.type, repo.repo_id, sha, path)
        entries.sort(key=lambda e: (e.type != "directory", e.path.lower()))
        last = st.last_commit_for(repo.type, repo.repo_id, sha, [e.path for e in entries[:MAX_LAST_COMMITS]])
        head = st.log(repo.type, repo.repo_id, sha, limit=1)[0]
        return page(
            request, "tree.html", repo=repo, base=repo_path(repo), tab="files", rev=rev, sha=sha, path=path,
            entries=entries, last=last, head=head, crumbs=_crumbs(path), **_refs(request, repo),
        )


def _crumbs(path: str) -> list[tuple[str, str]]:
    """(name, path) for each folder down to `path`."""
    parts = [p for p in path.split("/") if p]
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def _is_text(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def blob_page(request: Request, repo_type: str, owner: str, name: str, rest: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, repo_type, owner, name)
        rev, path = raw_tail(request, repo.repo_id, "blob")
        st = store(request)
        sha = st.resolve(repo.type, repo.repo_id, rev)
        entry = st.entry(repo.type, repo.repo_id, sha, path)
        if entry.type == "directory":
            return RedirectResponse(rev_url(repo_path(repo), "tree", rev, entry.path), status_code=302)
        code, kind = "", "lfs" if entry.lfs else "text"
        if entry.lfs is None:
            if entry.size > MAX_VIEW_BYTES:
                kind = "large"
            else:
                data = st.read_blob(repo.type, repo.repo_id, sha, entry.path)
                kind = "text" if _is_text(data) else "binary"
                code = highlight_file(entry.path, data.decode("utf-8")) if kind == "text" else ""
        last = st.last_commit_for(repo.type, repo.repo_id, sha, [entry.path]).get(entry.path)
        return page(
            request, "blob.html", repo=repo, base=repo_path(repo), tab="files", rev=rev, sha=sha, path=entry.path,
            entry=entry, kind=kind, code=code, last=last, crumbs=_crumbs(entry.path), **_refs(request, repo),
        )


def raw_file(request: Request, repo_type: str, owner: str, name: str, rest: str) -> Response:
    """The file's git blob (an LFS file's pointer; `/resolve/` serves its content) as plain text,
    or as a download when it is not text. Sandboxed: nothing in it runs on the hub's origin."""
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, repo_type, owner, name)
        rev, path = raw_tail(request, repo.repo_id, "raw")
        data = store(request).read_blob(repo.type, repo.repo_id, rev, path)
    headers = {"Content-Security-Policy": SANDBOX}
    if _is_text(data):
        return Response(data, media_type="text/plain; charset=utf-8", headers=headers)
    filename = quote(path.rsplit("/", 1)[-1], safe="")
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{filename}"
    return Response(data, media_type="application/octet-stream", headers=headers)


def commits_page(request: Request, repo_type: str, owner: str, name: str, rest: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, repo_type, owner, name)
        rev = raw_ref(request, repo.repo_id, "commits")
        raw_page = request.query_params.get("p") or "1"
        if not raw_page.isdigit() or int(raw_page) < 1:
            raise ApiError(400, f"page p={raw_page!r} is not a page number: use 1, 2, ...")
        number = int(raw_page)
        st = store(request)
        found = st.log(repo.type, repo.repo_id, rev, skip=(number - 1) * COMMITS_PAGE, limit=COMMITS_PAGE + 1)
        if not found and number > 1:
            raise ApiError(404, f"the history of {rev!r} has no page {number}: go back to page 1")
        return page(
            request, "commits.html", repo=repo, base=repo_path(repo), tab="files", rev=rev,
            commits=found[:COMMITS_PAGE], number=number, more=len(found) > COMMITS_PAGE, **_refs(request, repo),
        )


def commit_page(request: Request, repo_type: str, owner: str, name: str, sha: str) -> Response:
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, repo_type, owner, name)
        st = store(request)
        info = st.log(repo.type, repo.repo_id, sha, limit=1)[0]
        parent = info.parents[0] if info.parents else None
        changes, total = commit_changes(st, repo.type, repo.repo_id, info.id, parent)
        return page(
            request, "commit.html", repo=repo, base=repo_path(repo), tab="files", commit=info, parent=parent,
            changes=changes, total=total,
        )


def like_form(request: Request, repo_type: str, owner: str, name: str, csrf: str, action: str) -> Response:
    """The like button: a CSRF-guarded form POST by a signed-in user; back to the repo page."""
    if action not in ("like", "unlike"):
        raise ApiError(400, f"unknown action {action!r}: the like button sends 'like' or 'unlike'")
    with viewing(request) as (session, viewer):
        repo = page_repo(session, viewer, repo_type, owner, name)
        require_session(viewer, csrf)
        set_like(session, viewer.principal.user, repo, action == "like")
        return RedirectResponse(repo_path(repo), status_code=303)


def _register() -> None:
    """The repository routes, datasets first (so /datasets/... never reads as a model's owner)."""
    views = [
        ("", card_page),
        ("/tree/{rest:path}", tree_page),
        ("/blob/{rest:path}", blob_page),
        ("/raw/{rest:path}", raw_file),
        ("/commits/{rest:path}", commits_page),
        ("/commit/{sha}", commit_page),
    ]
    for prefix, repo_type in (("/datasets", "dataset"), ("", "model")):
        for suffix, view in views:
            params = "rest" if "{rest" in suffix else "sha" if "{sha}" in suffix else None
            router.add_api_route(
                f"{prefix}/{{owner}}/{{name}}{suffix}", _bind(view, repo_type, params), methods=["GET"],
                name=f"{repo_type}_{view.__name__}",
            )
        router.add_api_route(f"{prefix}/{{owner}}/{{name}}/like", _bind_like(repo_type), methods=["POST"],
                             name=f"{repo_type}_like")


def _bind_like(repo_type: str) -> Callable:
    def post_like(request: Request, owner: str, name: str, csrf: str = Form(""), action: str = Form("")) -> Response:
        return like_form(request, repo_type, owner, name, csrf, action)

    return post_like


def _bind(view: Callable, repo_type: str, param: str | None) -> Callable:
    """A route function with explicit parameters (FastAPI reads them from the signature)."""
    if param == "rest":

        def with_rest(request: Request, owner: str, name: str, rest: str) -> Response:
            return view(request, repo_type, owner, name, rest)

        return with_rest
    if param == "sha":

        def with_sha(request: Request, owner: str, name: str, sha: str) -> Response:
            return view(request, repo_type, owner, name, sha)

        return with_sha

    def plain(request: Request, owner: str, name: str) -> Response:
        return view(request, repo_type, owner, name)

    return plain


router.include_router(accounts.router)  # /join, /login, /settings/...: before /{owner}/{name}
router.include_router(orgs.router)  # /organizations/..., /admin/users: before /{owner}/{name}
router.include_router(publish.router)  # /new, upload, edit, delete, settings: before /{owner}/{name}
_register()
router.include_router(tensorboard.router)  # after _register: /datasets/{owner}/{name} wins over it


@router.get("/{name}")
def profile(request: Request, name: str) -> Response:
    if name in RESERVED:
        raise NoSuchRoute()
    with viewing(request) as (session, viewer):
        user = session.scalar(select(User).where(User.name == name))
        org = None if user else session.scalar(select(Org).where(Org.name == name))
        if user is None and org is None:
            raise ApiError(404, f"no user or organization named {name!r} on this hub")
        models = listing.owned(session, viewer.principal, name, "models")
        datasets = listing.owned(session, viewer.principal, name, "datasets")
        return page(request, "profile.html", owner=user or org, is_org=org is not None, models=models,
                    datasets=datasets)
