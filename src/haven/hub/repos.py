"""Repository and listing calls of the Hub API, as functions of a `HubSession`.

    from haven.hub.http import HubSession
    from haven.hub import repos
    with HubSession() as session:
        info = repos.repo_info(session, "me/tiny-bert")

`HubClient` exposes each of these as a method (without the session argument); `download` and
`upload` call them directly. This module knows nothing of those above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

from ..errors import EntryNotFoundError, HubAuthError, HubError, RepositoryNotFoundError
from . import http
from .http import HubSession
from .types import GitCommitInfo, GitRefs, RepoFile, RepoFolder, RepoInfo, RepoUrl, tree_entry


def repo_api(session: HubSession, repo_id: str, repo_type: str | None) -> tuple[str, str]:
    """(`{endpoint}/api/{type}s/{id}`, the checked repo type)."""
    repo_type = http.check_repo_type(repo_type)
    return http.api_repo_url(session.endpoint, repo_type, http.check_repo_id(repo_id)), repo_type


# -- identity --------------------------------------------------------------------------------------


def whoami(session: HubSession, token: str | None = None) -> dict[str, Any]:
    """The account behind the token: `{"type", "name", "orgs": [...], "auth": {...}}`."""
    if not (token or session.token):
        raise HubAuthError(
            f"no token for {session.endpoint}: run `haven login` (or set HAVEN_TOKEN) to act as yourself"
        )
    return session.request("GET", "/api/whoami-v2", token=token, action="whoami").json()


# -- repositories ----------------------------------------------------------------------------------


def create_repo(
    session: HubSession,
    repo_id: str,
    *,
    private: bool | None = None,
    repo_type: str | None = None,
    exist_ok: bool = False,
) -> RepoUrl:
    """Create `owner/name` (or `name` in your own namespace). Returns its URL."""
    repo_type = http.check_repo_type(repo_type)
    if "/" not in repo_id:
        repo_id = f"{whoami(session)['name']}/{repo_id}"
    http.check_repo_id(repo_id)
    namespace, name = repo_id.split("/")
    body: dict[str, Any] = {"name": name, "organization": namespace}
    if repo_type != "model":
        body["type"] = repo_type
    if private is not None:
        body["private"] = private
    url = http.repo_web_prefix(session.endpoint, repo_type, repo_id)
    try:
        response = session.request("POST", "/api/repos/create", json=body, repo_id=repo_id, action="create_repo")
        url = response.json().get("url", url)
    except HubError as err:
        if not (exist_ok and err.status == 409):
            raise
    return RepoUrl(url, repo_id, repo_type)


def delete_repo(session: HubSession, repo_id: str, *, repo_type: str | None = None, missing_ok: bool = False) -> None:
    repo_type = http.check_repo_type(repo_type)
    namespace, _, name = http.check_repo_id(repo_id).rpartition("/")
    body: dict[str, Any] = {"name": name, "organization": namespace or None}
    if repo_type != "model":
        body["type"] = repo_type
    try:
        session.request("DELETE", "/api/repos/delete", json=body, repo_id=repo_id, action="delete_repo")
    except RepositoryNotFoundError:
        if not missing_ok:
            raise


def repo_info(
    session: HubSession,
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: str | None = None,
    files_metadata: bool = False,
) -> RepoInfo:
    base, _ = repo_api(session, repo_id, repo_type)
    url = base if revision is None else f"{base}/revision/{http.quote_rev(revision)}"
    params = {"blobs": "true"} if files_metadata else None
    return RepoInfo.from_json(
        session.request("GET", url, params=params, repo_id=repo_id, revision=revision, action="repo_info").json()
    )


def model_info(
    session: HubSession, repo_id: str, *, revision: str | None = None, files_metadata: bool = False
) -> RepoInfo:
    return repo_info(session, repo_id, revision=revision, repo_type="model", files_metadata=files_metadata)


def repo_exists(session: HubSession, repo_id: str, *, repo_type: str | None = None) -> bool:
    try:
        repo_info(session, repo_id, repo_type=repo_type)
        return True
    except RepositoryNotFoundError:
        return False


def file_exists(
    session: HubSession, repo_id: str, filename: str, *, revision: str | None = None, repo_type: str | None = None
) -> bool:
    url = http.resolve_url(session.endpoint, http.check_repo_type(repo_type), repo_id, revision or "main", filename)
    try:
        session.request("HEAD", url, repo_id=repo_id, revision=revision, filename=filename, follow_redirects=True)
        return True
    except EntryNotFoundError:
        return False


def list_models(
    session: HubSession,
    *,
    search: str | None = None,
    author: str | None = None,
    filter: str | Iterable[str] | None = None,  # noqa: A002 - the Hub's own parameter name
    pipeline_tag: str | None = None,
    sort: str | None = None,
    direction: int | None = None,
    limit: int | None = None,
    full: bool | None = None,
    card_data: bool = False,
    repo_type: str = "model",
    page_size: int | None = None,
) -> Iterator[RepoInfo]:
    """Search repositories. Lazily follows pagination; `limit` caps the total.

    `sort`: downloads, likes, lastModified or createdAt (descending unless `direction=1`).
    `page_size` asks the hub for pages of that many (default: as many as `limit`).
    """
    params: list[tuple[str, Any]] = []
    for key, value in (("search", search), ("author", author), ("pipeline_tag", pipeline_tag), ("sort", sort)):
        if value:
            params.append((key, value))
    for value in [filter] if isinstance(filter, str) else (filter or []):
        params.append(("filter", value))
    if sort and direction is None:
        direction = -1
    if direction is not None:
        params.append(("direction", direction))
    if page_size or limit is not None:
        params.append(("limit", page_size or limit))
    if full:
        params.append(("full", "true"))
    if card_data:
        params.append(("cardData", "true"))
    url = f"/api/{http.check_repo_type(repo_type)}s"
    for count, item in enumerate(session.paginate(url, params, action="list_models")):
        if limit is not None and count >= limit:
            return
        yield RepoInfo.from_json(item)


# -- files and history ------------------------------------------------------------------------------


def list_repo_tree(
    session: HubSession,
    repo_id: str,
    path_in_repo: str | None = None,
    *,
    revision: str | None = None,
    recursive: bool = False,
    expand: bool = False,
    repo_type: str | None = None,
) -> Iterator[RepoFile | RepoFolder]:
    base, _ = repo_api(session, repo_id, repo_type)
    url = f"{base}/tree/{http.quote_rev(revision or 'main')}"
    if path_in_repo:
        url += "/" + quote(path_in_repo.strip("/"), safe="/")
    params = {"recursive": str(recursive).lower(), "expand": str(expand).lower()}
    for item in session.paginate(url, params, repo_id=repo_id, revision=revision, action="list_repo_tree"):
        yield tree_entry(item)


def list_repo_files(
    session: HubSession, repo_id: str, *, revision: str | None = None, repo_type: str | None = None
) -> list[str]:
    tree = list_repo_tree(session, repo_id, revision=revision, recursive=True, repo_type=repo_type)
    return sorted(e.path for e in tree if isinstance(e, RepoFile))


def get_paths_info(
    session: HubSession, repo_id: str, paths: list[str], *, revision: str | None = None, repo_type: str | None = None
) -> list[RepoFile | RepoFolder]:
    base, _ = repo_api(session, repo_id, repo_type)
    url = f"{base}/paths-info/{http.quote_rev(revision or 'main')}"
    response = session.request(
        "POST", url, data={"paths": list(paths), "expand": "false"}, repo_id=repo_id, revision=revision,
        action="paths-info",
    )
    return [tree_entry(item) for item in response.json()]


def list_repo_commits(
    session: HubSession, repo_id: str, *, revision: str | None = None, repo_type: str | None = None
) -> list[GitCommitInfo]:
    base, _ = repo_api(session, repo_id, repo_type)
    url = f"{base}/commits/{http.quote_rev(revision or 'main')}"
    items = session.paginate(url, repo_id=repo_id, revision=revision, action="list_repo_commits")
    return [GitCommitInfo.from_json(item) for item in items]


def list_repo_refs(session: HubSession, repo_id: str, *, repo_type: str | None = None) -> GitRefs:
    base, _ = repo_api(session, repo_id, repo_type)
    return GitRefs.from_json(session.request("GET", f"{base}/refs", repo_id=repo_id, action="list_repo_refs").json())


def create_branch(
    session: HubSession,
    repo_id: str,
    branch: str,
    *,
    revision: str | None = None,
    exist_ok: bool = False,
    repo_type: str | None = None,
) -> None:
    """Create `branch` at `revision` (default: the head of main)."""
    base, _ = repo_api(session, repo_id, repo_type)
    body = {"startingPoint": revision} if revision else None
    try:
        session.request(
            "POST", f"{base}/branch/{http.quote_rev(branch)}", json=body, repo_id=repo_id, revision=revision,
            action="create_branch",
        )
    except HubError as err:
        if not (exist_ok and err.status == 409):
            raise


def delete_branch(session: HubSession, repo_id: str, branch: str, *, repo_type: str | None = None) -> None:
    base, _ = repo_api(session, repo_id, repo_type)
    session.request(
        "DELETE", f"{base}/branch/{http.quote_rev(branch)}", repo_id=repo_id, revision=branch, action="delete_branch"
    )


def create_tag(
    session: HubSession,
    repo_id: str,
    tag: str,
    *,
    revision: str | None = None,
    tag_message: str | None = None,
    exist_ok: bool = False,
    repo_type: str | None = None,
) -> None:
    """Tag `revision` (default main) as `tag`."""
    base, _ = repo_api(session, repo_id, repo_type)
    body: dict[str, Any] = {"tag": tag}
    if tag_message:
        body["message"] = tag_message
    try:
        session.request(
            "POST", f"{base}/tag/{http.quote_rev(revision or 'main')}", json=body, repo_id=repo_id,
            revision=revision, action="create_tag",
        )
    except HubError as err:
        if not (exist_ok and err.status == 409):
            raise


def delete_tag(session: HubSession, repo_id: str, tag: str, *, repo_type: str | None = None) -> None:
    base, _ = repo_api(session, repo_id, repo_type)
    session.request("DELETE", f"{base}/tag/{http.quote_rev(tag)}", repo_id=repo_id, revision=tag, action="delete_tag")
