"""The models and datasets lists: the API's own query parsing, visibility and filtering
(`api.search`), plus what a page adds: facet counts, the web's sort names, and page numbers.

The URL takes the API's query names (`pipeline_tag`, `library`, `dataset`, `language`,
`license`, `filter`, `author`, `search`), so `/models?pipeline_tag=fill-mask&license=mit` and
`/api/models?pipeline_tag=fill-mask&license=mit` select the same repositories. Facet counts are
taken over the repositories the viewer may see that match the current query, so a private repo
never shows in a count; they are one GROUP BY over the index's `repo_facets` rows (only a
`num_parameters` bound, checked in Python, makes the page count over the repos it loads). The
search box matches repo ids and card text (`in_cards`); the API's `search` matches ids only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy import func, not_, select
from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams

from .. import auth
from ..api import index, search
from ..api.common import ApiError
from ..db import Repo, RepoFacet

PAGE_SIZE = 30
MAX_BOUND_IDS = 5000  # repo ids bound in one IN (...) (SQLite allows 32766 parameters, PostgreSQL 65535)
# web sort name -> (API sort, label); "trending" is most downloads (this hub keeps no trend score)
SORTS = {
    "trending": ("downloads", "Trending (most downloads)"),
    "downloads": ("downloads", "Most downloads"),
    "likes": ("likes", "Most likes"),
    "modified": ("lastModified", "Recently updated"),
    "created": ("createdAt", "Recently created"),
}
FILTERS = {  # facet -> (URL parameter, heading)
    "pipeline_tag": ("pipeline_tag", "Tasks"),
    "library": ("library", "Libraries"),
    "dataset": ("dataset", "Datasets"),
    "language": ("language", "Languages"),
    "license": ("license", "Licenses"),
    "filter": ("filter", "Other tags"),
}
MODEL_FACETS = ("pipeline_tag", "library", "dataset", "language", "license", "filter")
DATASET_FACETS = ("language", "license", "filter")
PAGE_PARAMS = ("search", "author", "sort", "p")


@dataclass
class Listing:
    repos: list[Repo]
    total: int
    page: int
    pages: int
    sort: str
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    selected: list[tuple[str, str]] = field(default_factory=list)  # (parameter, value)


def _card_list(card: dict, key: str) -> list[str]:
    return index._as_list(card.get(key))


def tag_link(repo: Repo, tag: str) -> tuple[str, str]:
    """(URL parameter, value) of the list filter that a repository's tag stands for."""
    if repo.type == "model":
        if tag == repo.pipeline_tag:
            return "pipeline_tag", tag
        if tag == repo.library_name:
            return "library", tag
        if tag.startswith("dataset:"):
            return "dataset", tag.removeprefix("dataset:")
        if tag in _card_list(repo.card_data or {}, "language"):
            return "language", tag
    for prefix in ("license", "language"):
        if tag.startswith(prefix + ":"):
            return prefix, tag.removeprefix(prefix + ":")
    return "filter", tag


def _api_params(params: QueryParams, plural: str) -> tuple[list[tuple[str, str]], str, int]:
    """The API query for a page's URL, its web sort name and its page number."""
    facets = MODEL_FACETS if plural == "models" else DATASET_FACETS
    known = PAGE_PARAMS + tuple(FILTERS[f][0] for f in facets)
    for name in params.keys():
        if name not in known:
            raise ApiError(400, f"unknown filter {name!r} for /{plural}: use {', '.join(known)}")
    sort = params.get("sort") or "trending"
    if sort not in SORTS:
        raise ApiError(400, f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    raw_page = params.get("p") or "1"
    if not raw_page.isdigit() or int(raw_page) < 1:
        raise ApiError(400, f"page p={raw_page!r} is not a page number: use 1, 2, ...")
    query = [(k, v) for k, v in params.multi_items() if k not in ("sort", "p") and v]
    return query + [("sort", SORTS[sort][0])], sort, int(raw_page)


def list_repos(session: Session, viewer: auth.Principal, plural: str, params: QueryParams) -> Listing:
    """One page of the repos of `plural` that the viewer may see and the URL's query selects; the
    search box matches repo ids and card text."""
    query, sort, page = _api_params(params, plural)
    lq = search.parse_query(QueryParams(query), plural)
    lq.in_cards = True
    names = MODEL_FACETS if plural == "models" else DATASET_FACETS
    counts: dict[str, Counter] = {name: Counter() for name in names}
    stmt = search._statement(lq, viewer)
    if lq.min_params is not None or lq.max_params is not None:
        # parameter counts are checked in Python (api.search): count over the repos they keep
        matched = [r for r in session.scalars(stmt) if search._selected(r, lq)]
        total, chunk = len(matched), matched[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        for repo in matched:
            for facet, values in index.facet_values(repo).items():
                if facet in counts:
                    counts[facet].update(values)
    else:  # in SQL; the facets' counts from the index's repo_facets rows
        grouped = select(RepoFacet.facet, RepoFacet.value, func.count()).where(
            RepoFacet.type == lq.repo_type, RepoFacet.facet.in_(names)
        ).group_by(RepoFacet.facet, RepoFacet.value)
        if lq.searches or lq.terms or lq.author or lq.pipeline_tag or lq.gated:
            # the matches' ids found once (a search reads card text): their count, a page, their facets
            ids = list(session.scalars(stmt.with_only_columns(Repo.id)))
            total, shown = len(ids), ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            loaded = {r.id: r for r in session.scalars(select(Repo).where(Repo.id.in_(shown)))}
            chunk = [loaded[i] for i in shown]
            for i in range(0, len(ids), MAX_BOUND_IDS):
                for facet, value, n in session.execute(grouped.where(RepoFacet.repo_id.in_(ids[i : i + MAX_BOUND_IDS]))):
                    counts[facet][value] += n
        else:  # every repo the viewer may see: read the index in order, leaving out the (few) hidden ones
            total = session.scalar(select(func.count()).select_from(stmt.with_only_columns(Repo.id).subquery()))
            chunk = list(session.scalars(stmt.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
            visible = search._visible(viewer)
            if visible is not None:
                grouped = grouped.where(RepoFacet.repo_id.not_in(select(Repo.id).where(Repo.type == lq.repo_type,
                                                                                        not_(visible))))
            for facet, value, n in session.execute(grouped):
                counts[facet][value] = n
    facets = {name: sorted(counts[name].items(), key=lambda kv: (-kv[1], kv[0]))[:40] for name in names}
    selected = [(k, v) for k, v in params.multi_items() if k in {FILTERS[n][0] for n in names} and v]
    pages = max(1, -(-total // PAGE_SIZE))
    return Listing(chunk, total, page, pages, sort, facets, selected)


def top(session: Session, viewer: auth.Principal, plural: str, sort: str, limit: int = 10) -> list[Repo]:
    """The first `limit` repos the viewer may see, by an API sort (downloads, lastModified ...)."""
    lq = search.parse_query(QueryParams({"sort": sort, "limit": str(limit)}), plural)
    return list(session.scalars(search._statement(lq, viewer).limit(limit)))


def owned(session: Session, viewer: auth.Principal, namespace: str, plural: str) -> list[Repo]:
    """The repos of `namespace` the viewer may see, recently updated first."""
    lq = search.parse_query(QueryParams({"author": namespace, "sort": "lastModified"}), plural)
    return list(session.scalars(search._statement(lq, viewer)))


def url_with(path: str, params: QueryParams, *, add: tuple[str, str] | None = None,
             drop: tuple[str, str] | None = None, sort: str | None = None, page: int | None = None) -> str:
    """`path` with the current query changed: a filter added or dropped, another sort or page
    (changing filters or sort goes back to page 1)."""
    items = [(k, v) for k, v in params.multi_items() if v and (k, v) != drop]
    if add and add not in items:
        items.append(add)
    if sort is not None:
        items = [(k, v) for k, v in items if k != "sort"] + ([("sort", sort)] if sort != "trending" else [])
    items = [(k, v) for k, v in items if k != "p"]
    if page and page > 1:
        items.append(("p", str(page)))
    return f"{path}?{urlencode(items)}" if items else path
