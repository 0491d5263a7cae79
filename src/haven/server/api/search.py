"""Listing and search: `GET /api/models`, `GET /api/datasets`, with the public Hub's parameters.

Every parameter is either applied or refused (400 naming what to use): an unknown parameter or
expand key never yields an unfiltered list, and a parameter or expand key the public Hub knows
but this hub holds no data for says so. Filtering happens in SQL where the index has a column
(type, visibility, author, search, pipeline_tag, gated; `search` matches repo ids, as on the Hub,
and the web's lists also match card text with `in_cards`; tag-like terms: `filter`, `language`,
`license`, `library`, `dataset`, through the index's `repo_facets` term rows) and in Python for
parameter counts (`num_parameters`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import false, or_, select

from .. import auth
from ..db import Repo, RepoFacet
from . import index
from .common import REPO_TYPES, ApiError, NoSuchRoute
from .deps import CallerDep, SessionDep
from .repos import info_payload, repo_summary, transformers_info

router = APIRouter(prefix="/api")
MAX_PAGE = 1000

COMMON_PARAMS = (
    "search", "author", "filter", "language", "license", "gated", "sort", "direction", "limit",
    "cursor", "full", "cardData", "expand", "expand[]",
)
MODEL_PARAMS = ("pipeline_tag", "library", "dataset", "trained_dataset", "num_parameters", "config")
# parameters the public Hub takes whose data this hub does not hold
UNSERVED_PARAMS = {
    "apps": "this hub does not track which apps run a model",
    "inference": "this hub lists no inference providers",
    "inference_provider": "this hub lists no inference providers",
    "emissions_thresholds": "filter on cardData.co2_eq_emissions on your side (list with cardData=true)",
}
SORTS = {
    "downloads": Repo.downloads,
    "likes": Repo.likes,
    "lastModified": Repo.last_modified,
    "last_modified": Repo.last_modified,
    "createdAt": Repo.created_at,
    "created_at": Repo.created_at,
    "id": Repo.name,
}
UNSERVED_SORTS = {"trendingScore", "trending_score"}

# expand keys served, per repo type; each maps to how its value is read
MODEL_EXPAND = (
    "author", "cardData", "config", "createdAt", "disabled", "downloads", "downloadsAllTime",
    "gated", "lastModified", "library_name", "likes", "model-index", "pipeline_tag", "private",
    "safetensors", "sha", "siblings", "tags", "transformersInfo", "usedStorage",
)
DATASET_EXPAND = (
    "author", "cardData", "createdAt", "disabled", "downloads", "downloadsAllTime", "gated",
    "lastModified", "likes", "paperswithcode_id", "private", "sha", "siblings", "tags", "usedStorage",
)
# expand keys the public Hub knows and this hub holds no data for -> why
UNSERVED_EXPAND = {
    "baseModels": "it does not build the model tree; read cardData.base_model or filter base_model:ID",
    "childrenModelCount": "it does not build the model tree; filter base_model:ID to list children",
    "evalResults": "it does not parse evaluation results; expand model-index for the card's own",
    "gguf": "it does not read GGUF metadata",
    "inference": "it lists no inference providers",
    "inferenceProviderMapping": "it lists no inference providers",
    "mask_token": "it does not read tokenizers when indexing",
    "resourceGroup": "it has no resource groups",
    "spaces": "it hosts no Spaces",
    "trendingScore": "it computes no trending score; sort by downloads or likes",
    "widgetData": "it has no inference widgets; read cardData.widget",
    "citation": "it does not extract citations from dataset cards; expand cardData",
    "description": "it does not extract descriptions from dataset cards; expand cardData",
    "mainSize": "it does not compute dataset sizes; expand usedStorage",
}
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")
COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmbt]?)\s*$", re.I)
UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


@dataclass
class ListQuery:
    """A listing request, parsed and checked."""

    repo_type: str
    searches: list[str] = field(default_factory=list)  # lowercase
    # search the card's text too (the web's search box); the API's `search` matches ids, as the Hub's
    in_cards: bool = False
    author: str | None = None
    pipeline_tag: str | None = None
    terms: list[str] = field(default_factory=list)  # each must be among index.filter_terms(repo)
    gated: bool | None = None
    min_params: int | None = None
    max_params: int | None = None
    sort: str = "createdAt"
    ascending: bool = False
    limit: int = MAX_PAGE
    cursor: int = 0
    full: bool = False
    card: bool = False
    config: bool = False
    expand: list[str] = field(default_factory=list)


def _values(q, name: str) -> list[str]:
    """All values of a repeated parameter, comma-joined ones split, empty ones dropped."""
    return [v.strip() for raw in q.getlist(name) for v in raw.split(",") if v.strip()]


def _flag(q, name: str) -> bool | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ApiError(400, f"{name}={raw!r} is not a boolean: use true or false")


def _int(q, name: str, default: int) -> int:
    raw = q.get(name) or ""
    if not raw:
        return default
    if not raw.lstrip("-").isdigit():
        raise ApiError(400, f"{name}={raw!r} is not an integer")
    return int(raw)


def parse_count(text: str) -> int:
    """A parameter count as the Hub writes it: 125M, 1.5B, 7b, 3000, 2K."""
    match = COUNT.fullmatch(text)
    if not match:
        raise ApiError(400, f"invalid parameter count {text!r}: write a number with an optional K, M, B or T")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def parse_num_parameters(value: str) -> tuple[int | None, int | None]:
    """(min, max) of `min:6B,max:128B`, `min:1B` or `max:100M`."""
    low = high = None
    for part in value.split(","):
        key, sep, amount = part.strip().partition(":")
        if not sep or key not in ("min", "max"):
            raise ApiError(400, f"invalid num_parameters {value!r}: use min:6B, max:128B or min:6B,max:128B")
        if key == "min":
            low = parse_count(amount)
        else:
            high = parse_count(amount)
    return low, high


def _prefixed(prefix: str, values: list[str]) -> list[str]:
    return [v if v.startswith(prefix) else prefix + v for v in values]


def parse_query(q, plural: str) -> ListQuery:
    """Check every parameter of a listing request; ApiError(400) for what cannot be applied."""
    repo_type = REPO_TYPES[plural]
    known = COMMON_PARAMS + (MODEL_PARAMS if repo_type == "model" else ())
    for name in q.keys():
        if name in known:
            continue
        if name in UNSERVED_PARAMS:
            raise ApiError(400, f"{name} is not supported by this hub: {UNSERVED_PARAMS[name]}")
        if name in MODEL_PARAMS:
            raise ApiError(400, f"{name} applies to models only: list them with /api/models?{name}=...")
        raise ApiError(400, f"unknown query parameter {name!r} for /api/{plural}: use {', '.join(known)}")
    lq = ListQuery(repo_type=repo_type, searches=[s.lower() for s in q.getlist("search") if s])
    lq.author = q.get("author") or None
    lq.pipeline_tag = q.get("pipeline_tag") or None
    lq.terms = _values(q, "filter")
    lq.terms += _prefixed("language:", _values(q, "language"))
    lq.terms += _prefixed("license:", _values(q, "license"))
    lq.terms += _values(q, "library")
    lq.terms += _prefixed("dataset:", _values(q, "dataset") + _values(q, "trained_dataset"))
    for term in lq.terms:
        if len(term) > index.MAX_FACET_VALUE:
            raise ApiError(400, f"a filter value is at most {index.MAX_FACET_VALUE} characters; "
                                f"{term[:40]!r}... has {len(term)}")
    lq.gated = _flag(q, "gated")
    if q.get("num_parameters"):
        lq.min_params, lq.max_params = parse_num_parameters(q["num_parameters"])
    lq.sort = q.get("sort") or "createdAt"
    if lq.sort in UNSERVED_SORTS:
        raise ApiError(400, "sort=trendingScore is not supported by this hub: it computes no trending score; "
                       "sort by downloads, likes, lastModified or createdAt")
    if lq.sort not in SORTS:
        raise ApiError(400, f"unknown sort {lq.sort!r}: use one of downloads, likes, lastModified, createdAt, id")
    direction = q.get("direction") or ""
    if direction not in ("", "-1", "1", "asc", "desc"):
        raise ApiError(400, f"unknown direction {direction!r}: use -1 (descending) or 1 (ascending)")
    lq.ascending = direction in ("1", "asc") or (lq.sort == "id" and not direction)
    lq.limit = max(1, min(_int(q, "limit", MAX_PAGE), MAX_PAGE))
    lq.cursor = max(0, _int(q, "cursor", 0))
    lq.full = bool(_flag(q, "full"))
    lq.card = bool(_flag(q, "cardData"))
    lq.config = bool(_flag(q, "config"))
    lq.expand = _values(q, "expand") + _values(q, "expand[]")
    served = MODEL_EXPAND if repo_type == "model" else DATASET_EXPAND
    for key in lq.expand:
        if key in served:
            continue
        if key in UNSERVED_EXPAND:
            raise ApiError(400, f"expand={key} is not supported by this hub: {UNSERVED_EXPAND[key]}")
        raise ApiError(400, f"unknown expand key {key!r} for /api/{plural}: use {', '.join(served)}")
    if lq.expand and (lq.full or lq.card or lq.config):
        raise ApiError(400, "expand cannot be combined with full, cardData or config: add those fields to expand")
    return lq


def _visible(p: auth.Principal):
    if p.user is not None and p.user.is_admin:
        return None
    names = [p.user.name, *p.orgs] if p.user is not None else []
    return or_(Repo.private == false(), Repo.namespace.in_(names)) if names else Repo.private == false()


def _statement(lq: ListQuery, p: auth.Principal):
    stmt = select(Repo).where(Repo.type == lq.repo_type)
    visible = _visible(p)
    if visible is not None:
        stmt = stmt.where(visible)
    if lq.author:
        stmt = stmt.where(Repo.namespace == lq.author)
    if lq.pipeline_tag:
        stmt = stmt.where(Repo.pipeline_tag == lq.pipeline_tag)
    for term in lq.terms:  # a tag-like term, or the repo's own id
        tagged = select(RepoFacet.repo_id).where(
            RepoFacet.type == lq.repo_type, RepoFacet.facet == index.TERM, RepoFacet.value == term
        )
        stmt = stmt.where(or_(Repo.namespace + "/" + Repo.name == term, Repo.id.in_(tagged)))
    for term in lq.searches:  # last: a row the cheaper conditions drop never has its card text read
        in_id = (Repo.namespace + "/" + Repo.name).icontains(term, autoescape=True)
        # card_text is stored lowercase, so a plain LIKE is case-blind on SQLite and PostgreSQL alike
        stmt = stmt.where(or_(in_id, Repo.card_text.contains(term, autoescape=True)) if lq.in_cards else in_id)
    if lq.gated:
        stmt = stmt.where(false())  # this hub has no gated repositories
    column = SORTS[lq.sort]
    return stmt.order_by(column.asc() if lq.ascending else column.desc(), Repo.id.desc())


def _selected(repo: Repo, lq: ListQuery) -> bool:
    """The checks SQL cannot make: the parameter count's bounds."""
    if lq.min_params is not None or lq.max_params is not None:
        total = (repo.safetensors or {}).get("total")
        if not isinstance(total, int):
            return False  # no safetensors weights: no known parameter count
        if lq.min_params is not None and total < lq.min_params:
            return False
        if lq.max_params is not None and total > lq.max_params:
            return False
    return True


def _files(request: Request, repo: Repo) -> list:
    if not repo.sha:
        return []
    entries = request.app.state.repos.list_tree(repo.type, repo.repo_id, repo.sha, "", recursive=True)
    return [e for e in entries if e.type == "file"]


def expanded(request: Request, repo: Repo, keys: list[str]) -> dict:
    """`_id`, `id` and exactly the expand `keys` of `repo` (all served keys; see parse_query)."""
    base = repo_summary(repo, full=True)
    card = repo.card_data or {}
    files = _files(request, repo) if {"siblings", "usedStorage", "transformersInfo"} & set(keys) else []
    values = {
        "downloadsAllTime": repo.downloads,  # the counter never resets: it is the all-time count
        "config": repo.config or {},
        "safetensors": repo.safetensors,
        "model-index": card.get("model-index"),
        "paperswithcode_id": card.get("paperswithcode_id"),
        "siblings": [{"rfilename": e.path} for e in files],
        "usedStorage": sum(e.size for e in files),
        "transformersInfo": transformers_info(repo, [e.path for e in files]),
    }
    data = {"_id": base["_id"], "id": base["id"]}
    for key in keys:
        data[key] = values[key] if key in values else base.get(key)
    return data


@router.get("/{plural}")
def list_repos(request: Request, plural: str, session: SessionDep, p: CallerDep) -> JSONResponse:
    if plural not in REPO_TYPES:
        raise NoSuchRoute()  # /api/spaces, /api/collections ...
    q = request.query_params
    lq = parse_query(q, plural)
    stmt = _statement(lq, p)
    if lq.min_params is None and lq.max_params is None:  # every filter is in SQL
        rows = list(session.scalars(stmt.offset(lq.cursor).limit(lq.limit + 1)))
        items, more = rows[: lq.limit], len(rows) > lq.limit
    else:  # parameter counts are checked in Python: walk matches in order
        items, seen, more = [], 0, False
        for repo in session.scalars(stmt):
            if not _selected(repo, lq):
                continue
            if seen < lq.cursor:
                seen += 1
                continue
            if len(items) == lq.limit:
                more = True
                break
            items.append(repo)
    out = []
    for repo in items:
        if lq.expand:
            data = expanded(request, repo, lq.expand)
        elif lq.full:
            data = info_payload(request, repo, repo.sha or "main", blobs=False)
        else:
            data = repo_summary(repo, full=lq.card)
        if lq.config:
            data["config"] = repo.config or {}
        out.append(data)
    headers = {}
    if more:
        params = [(k, v) for k, v in q.multi_items() if k != "cursor"] + [("cursor", str(lq.cursor + lq.limit))]
        url = f"{request.app.state.settings.public_url}/api/{plural}?{urlencode(params)}"
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(out, headers=headers)
