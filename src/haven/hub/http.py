"""HTTP plumbing, the bottom layer of the client: `HubSession` (endpoint, token, one pooled httpx
client, request counters), URL helpers, and error mapping. Everything above it (`repos`,
`download`, `upload`, `HubClient`) is handed a `HubSession`; nothing here imports them.

The hub tells clients what went wrong with a status code and an `X-Error-Code` header
(`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`); each becomes one of the
exceptions in `haven.errors`, with a message that says what to do about it.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator
from typing import Any
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
from .auth import get_endpoint, get_token

REPO_TYPES = ("model", "dataset", "space")
USER_AGENT = f"haven/{__version__}"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def new_http_client() -> httpx.Client:
    """A pooled httpx client: connections to the endpoint are reused across calls."""
    return httpx.Client(
        timeout=TIMEOUT,
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )


class HubSession:
    """One endpoint, one token (None: anonymous) and one pooled httpx client (`.http`).

    `endpoint=None` / `token=None` are read from the environment and `haven login` (see `auth`);
    `token=False` means anonymous even when a token is configured. `stats` and `request_log`
    count what went over the wire (downloads and uploads add their byte counts).
    """

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None):
        self.endpoint = (endpoint or get_endpoint()).rstrip("/")
        self.token = resolve_token(token, self.endpoint)
        self.stats = {"requests": 0, "bytes_downloaded": 0, "bytes_uploaded": 0}
        self.request_log: collections.deque[tuple[str, str, str | None]] = collections.deque(maxlen=2000)
        self._lock = threading.Lock()
        self.http = new_http_client()
        self.http.event_hooks["request"] = [self._count]

    def _count(self, request: httpx.Request) -> None:
        with self._lock:
            self.stats["requests"] += 1
            self.request_log.append((request.method, str(request.url), request.headers.get("range")))

    def count_bytes(self, key: str, n: int) -> None:
        with self._lock:
            self.stats[key] += n

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HubSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def auth_headers(self, token: str | bool | None = None) -> dict[str, str]:
        """`authorization` for `token` (None: the session's own, False: none)."""
        token = self.token if token is None else (None if token is False else token)
        return {"authorization": f"Bearer {token}"} if token else {}

    def same_origin(self, url: str) -> bool:
        return httpx.URL(url).netloc == httpx.URL(self.endpoint).netloc

    def request(
        self,
        method: str,
        url: str,
        *,
        repo_id: str | None = None,
        revision: str | None = None,
        filename: str | None = None,
        action: str = "request",
        token: str | bool | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request with auth; map error statuses to `haven.errors` exceptions."""
        if not url.startswith(("http://", "https://")):
            url = self.endpoint + url
        # The token goes to the endpoint only: absolute URLs come from the server (next-page links,
        # LFS actions) and may name another host, which must not receive it.
        all_headers = {**(self.auth_headers(token) if self.same_origin(url) else {}), **(headers or {})}
        try:
            response = self.http.request(method, url, headers=all_headers, **kwargs)
        except httpx.TransportError as err:
            raise HubError(
                f"could not reach the hub at {self.endpoint} ({type(err).__name__}: {err}). Check the network "
                "and HAVEN_ENDPOINT; set HAVEN_OFFLINE=1 to work from the local cache only"
            ) from err
        if response.status_code == 401 and "authorization" not in all_headers and not response.headers.get("x-error-code"):
            raise HubAuthError(
                f"{action} needs a token and none is set: run `haven login` or set HAVEN_TOKEN",
                status=401, server_message=server_message(response),
            )
        raise_for_status(response, repo_id=repo_id, revision=revision, filename=filename, action=action)
        return response

    def paginate(self, url: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None, **kwargs: Any) -> Iterator[Any]:
        """Items of a JSON-list endpoint, page after page (`Link: <...>; rel="next"`)."""
        next_url: str | None = url
        while next_url:
            response = self.request("GET", next_url, params=params, **kwargs)
            params = None  # the next link carries the query
            yield from response.json()
            next_url = next_link(response)


def resolve_token(token: str | bool | None, endpoint: str) -> str | None:
    """The token to send: `token` itself, none for `False`, else the configured one for `endpoint`."""
    if token is False:
        return None
    return token if isinstance(token, str) else get_token(endpoint)


_shared: dict[tuple[str, str | None], HubSession] = {}
_shared_lock = threading.Lock()


def get_session(token: str | bool | None = None, endpoint: str | None = None) -> HubSession:
    """A shared session for the current endpoint and token (reused so connections stay open)."""
    endpoint = (endpoint or get_endpoint()).rstrip("/")
    resolved = resolve_token(token, endpoint)
    key = (endpoint, resolved)
    with _shared_lock:
        session = _shared.get(key)
        if session is None:
            session = _shared[key] = HubSession(endpoint, resolved if resolved else False)
        return session


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
            f"revision {revision!r} does not exist in {repo}. Use an existing branch, tag or commit sha; "
            f"`git ls-remote {_web_prefix(where, repo_id)}` lists the branches and tags{suffix}",
            **kwargs,
        )
    if code == "EntryNotFound" or (status == 404 and filename is not None):
        what = f"{filename!r}" if filename else "the path"
        raise EntryNotFoundError(
            f"{what} does not exist in {repo} at revision {revision or 'main'!r}. Check the file name; "
            f"{_api_prefix(where, repo_id)}/tree/{quote_rev(revision or 'main')}?recursive=true lists what is "
            f"there{suffix}",
            **kwargs,
        )
    if status == 401:
        raise HubAuthError(
            f"the hub at {_origin(where)} rejected the credentials for this {action}: the token is missing, "
            f"wrong or expired. Run `haven login` with a valid token (or correct HAVEN_TOKEN / HF_TOKEN if one is "
            f"set: they come first){suffix}",
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


def _kind(url: str) -> str:
    """`datasets/`, `spaces/` or `` (models): the kind of repository a request URL is about."""
    path = httpx.URL(url).path if url else ""
    return next((f"{k}/" for k in ("datasets", "spaces") if path.startswith((f"/{k}/", f"/api/{k}/"))), "")


def _web_prefix(url: str, repo_id: str | None) -> str:
    """The repository's web and git URL: `{endpoint}/{id}` or `{endpoint}/datasets/{id}`."""
    return f"{_origin(url)}/{_kind(url)}{repo_id or ''}"


def _api_prefix(url: str, repo_id: str | None) -> str:
    """The repository's API URL: `{endpoint}/api/models/{id}` or `{endpoint}/api/datasets/{id}`."""
    return f"{_origin(url)}/api/{_kind(url) or 'models/'}{repo_id or ''}"


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
