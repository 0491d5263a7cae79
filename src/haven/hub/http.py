"""HTTP plumbing shared by the client: one pooled httpx session, URL helpers, error mapping.

The hub tells clients what went wrong with a status code and an `X-Error-Code` header
(`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`); each becomes one of the
exceptions in `haven.errors`, with a message that says what to do about it.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx

from .. import __version__
from ..errors import (
    EntryNotFoundError,
    GatedRepoError,
    HubAuthError,
    HubError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO_TYPES = ("model", "dataset", "space")
USER_AGENT = f"haven/{__version__}"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def new_session() -> httpx.Client:
    """A pooled session: connections to the endpoint are reused across calls."""
    return httpx.Client(
        timeout=TIMEOUT,
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )


def check_repo_type(repo_type: str | None) -> str:
    repo_type = repo_type or "model"
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    return repo_type


def check_repo_id(repo_id: str) -> str:
    """`owner/name` (or a bare `name` for legacy root repos); rejects paths and URLs."""
    if not isinstance(repo_id, str) or not repo_id or repo_id.count("/") > 1 or ".." in repo_id:
        raise ValueError(f"repo_id must look like 'owner/name', got {repo_id!r}")
    if repo_id.startswith(("/", "http:", "https:")) or repo_id.endswith("/") or " " in repo_id:
        raise ValueError(f"repo_id must look like 'owner/name', got {repo_id!r}")
    return repo_id


def quote_rev(revision: str) -> str:
    return quote(revision, safe="")


def api_repo_url(endpoint: str, repo_type: str, repo_id: str) -> str:
    return f"{endpoint}/api/{repo_type}s/{repo_id}"


def repo_web_prefix(endpoint: str, repo_type: str, repo_id: str) -> str:
    """`{endpoint}/{id}` for models, `{endpoint}/datasets/{id}` for datasets."""
    kind = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{endpoint}/{kind}{repo_id}"


def resolve_url(endpoint: str, repo_type: str, repo_id: str, revision: str, filename: str) -> str:
    path = quote(filename, safe="/")
    return f"{repo_web_prefix(endpoint, repo_type, repo_id)}/resolve/{quote_rev(revision)}/{path}"


def server_message(response: httpx.Response) -> str | None:
    """The `error` text of a JSON error body, if any."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, httpx.ResponseNotRead):
        text = ""
        try:
            text = response.text.strip()
        except (httpx.ResponseNotRead, UnicodeDecodeError):
            pass
        return text[:300] or None
    if isinstance(body, dict):
        err = body.get("error") or body.get("message")
        if isinstance(err, str):
            return err
        if isinstance(body.get("errors"), list):
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"])
    return None


def raise_for_status(
    response: httpx.Response,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    filename: str | None = None,
    action: str = "request",
) -> None:
    """Turn an error response into the matching `haven.errors` exception."""
    status = response.status_code
    if status < 400:
        return
    code = response.headers.get("x-error-code", "")
    detail = server_message(response)
    where = str(response.request.url.copy_with(query=None)) if response.request else ""
    suffix = f" (server said: {detail})" if detail else ""
    kwargs = {"status": status, "server_message": detail}
    repo = f"repository {repo_id!r}" if repo_id else "the repository"

    if code == "GatedRepo":
        raise GatedRepoError(
            f"{repo} is gated: ask its owners for access on the hub, then use a token of an account that "
            f"has it{suffix}",
            **kwargs,
        )
    if code == "RepoNotFound" or (status == 404 and code == "" and repo_id and filename is None):
        raise RepositoryNotFoundError(
            f"{repo} was not found at {_origin(where)}. Check the id (owner/name) and the repo type; if it is "
            f"private, log in (`haven login` or HAVEN_TOKEN) with an account that can see it{suffix}",
            **kwargs,
        )
    if code == "RevisionNotFound":
        raise RevisionNotFoundError(
            f"revision {revision!r} does not exist in {repo}. List branches and tags with "
            f"`HubClient().list_repo_refs({repo_id!r})` and pass one of them, or a commit sha{suffix}",
            **kwargs,
        )
    if code == "EntryNotFound" or (status == 404 and filename is not None):
        what = f"{filename!r}" if filename else "the path"
        raise EntryNotFoundError(
            f"{what} does not exist in {repo} at revision {revision or 'main'!r}. Check the file name; "
            f"`HubClient().list_repo_files({repo_id!r})` lists what is there{suffix}",
            **kwargs,
        )
    if status == 401:
        raise HubAuthError(
            f"the hub at {_origin(where)} rejected the credentials for this {action}: the token is missing, "
            f"wrong or expired. Run `haven login` or set HAVEN_TOKEN to a valid token{suffix}",
            **kwargs,
        )
    if status == 403:
        raise HubAuthError(
            f"the token in use may not do this {action} on {repo}: it needs a token with the write role, "
            f"from an account with access. Create one on the hub and run `haven login`{suffix}",
            **kwargs,
        )
    if status == 409:
        raise HubError(f"conflict: {detail or 'it already exists'} ({action} on {repo})", **kwargs)
    if status == 412:
        raise HubError(
            f"the {action} was refused because {repo} changed since the given parent commit; fetch the new "
            f"head and retry{suffix}",
            **kwargs,
        )
    raise HubError(f"{action} failed with HTTP {status} at {where}{suffix}", **kwargs)


def _origin(url: str) -> str:
    try:
        u = httpx.URL(url)
        return f"{u.scheme}://{u.netloc.decode()}"
    except Exception:  # noqa: BLE001 - purely cosmetic
        return url


def next_link(response: httpx.Response) -> str | None:
    """The absolute URL of the next page from `Link: <...>; rel="next"`."""
    link = response.links.get("next")
    return link.get("url") if link else None
