"""`HubClient`: Haven's client for any Hub-compatible endpoint (a Haven server or the public Hub).

    from haven import HubClient
    hub = HubClient()                                   # endpoint/token from env or `haven login`
    hub.create_repo("me/tiny-bert", exist_ok=True)
    hub.upload_folder(repo_id="me/tiny-bert", folder_path="out/")
    path = hub.hf_hub_download("me/tiny-bert", "config.json")

Repository and listing calls live here; downloads are in `download.py`, commits in `upload.py`.
One httpx session per client keeps connections to the endpoint open between calls.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import EntryNotFoundError, HubAuthError, HubError, RepositoryNotFoundError
from . import http
from .auth import get_endpoint, get_token
from .types import GitCommitInfo, GitRefs, RepoFile, RepoFolder, RepoInfo, RepoUrl, tree_entry


class HubClient:
    """Talks to one hub endpoint with one token (either may be None: read from the environment)."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | bool | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.endpoint = (endpoint or get_endpoint()).rstrip("/")
        self.token: str | None = None if token is False else (token if isinstance(token, str) else get_token())
        self.cache_dir = os.fspath(cache_dir) if cache_dir else None
        self.stats = {"requests": 0, "bytes_downloaded": 0, "bytes_uploaded": 0}
        self.request_log: collections.deque[tuple[str, str, str | None]] = collections.deque(maxlen=2000)
        self._lock = threading.Lock()
        self.session = http.new_session()
        self.session.event_hooks["request"] = [self._count]

    def _count(self, request: httpx.Request) -> None:
        with self._lock:
            self.stats["requests"] += 1
            self.request_log.append((request.method, str(request.url), request.headers.get("range")))

    # -- plumbing --------------------------------------------------------------------------------------

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def auth_headers(self, token: str | bool | None = None) -> dict[str, str]:
        token = self.token if token is None else (None if token is False else token)
        return {"authorization": f"Bearer {token}"} if token else {}

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
        same_origin = httpx.URL(url).netloc == httpx.URL(self.endpoint).netloc
        all_headers = {**(self.auth_headers(token) if same_origin else {}), **(headers or {})}
        try:
            response = self.session.request(method, url, headers=all_headers, **kwargs)
        except httpx.TransportError as err:
            raise HubError(
                f"could not reach the hub at {self.endpoint} ({type(err).__name__}: {err}). Check the network "
                "and HAVEN_ENDPOINT; set HAVEN_OFFLINE=1 to work from the local cache only"
            ) from err
        if response.status_code == 401 and "authorization" not in all_headers and not response.headers.get("x-error-code"):
            raise HubAuthError(
                f"{action} needs a token and none is set: run `haven login` or set HAVEN_TOKEN",
                status=401, server_message=http.server_message(response),
            )
        http.raise_for_status(response, repo_id=repo_id, revision=revision, filename=filename, action=action)
        return response

    def paginate(self, url: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None, **kwargs: Any) -> Iterator[Any]:
        """Items of a JSON-list endpoint, page after page (`Link: <...>; rel="next"`)."""
        next_url: str | None = url
        while next_url:
            response = self.request("GET", next_url, params=params, **kwargs)
            params = None  # the next link carries the query
            yield from response.json()
            next_url = http.next_link(response)

    def _repo_api(self, repo_id: str, repo_type: str | None) -> tuple[str, str]:
        repo_type = http.check_repo_type(repo_type)
        return http.api_repo_url(self.endpoint, repo_type, http.check_repo_id(repo_id)), repo_type

    # -- identity --------------------------------------------------------------------------------------

    def whoami(self, token: str | None = None) -> dict[str, Any]:
        """The account behind the token: `{"type", "name", "orgs": [...], "auth": {...}}`."""
        if not (token or self.token):
            raise HubAuthError(
                f"no token: log in with `haven login` (or set HAVEN_TOKEN) to use {self.endpoint} as yourself"
            )
        return self.request("GET", "/api/whoami-v2", token=token, action="whoami").json()

    # -- repositories ----------------------------------------------------------------------------------

    def create_repo(
        self, repo_id: str, *, private: bool | None = None, repo_type: str | None = None, exist_ok: bool = False
    ) -> RepoUrl:
        """Create `owner/name` (or `name` in your own namespace). Returns its URL."""
        repo_type = http.check_repo_type(repo_type)
        if "/" not in repo_id:
            repo_id = f"{self.whoami()['name']}/{repo_id}"
        http.check_repo_id(repo_id)
        namespace, name = repo_id.split("/")
        body: dict[str, Any] = {"name": name, "organization": namespace}
        if repo_type != "model":
            body["type"] = repo_type
        if private is not None:
            body["private"] = private
        url = http.repo_web_prefix(self.endpoint, repo_type, repo_id)
        try:
            response = self.request("POST", "/api/repos/create", json=body, repo_id=repo_id, action="create_repo")
            url = response.json().get("url", url)
        except HubError as err:
            if not (exist_ok and err.status == 409):
                raise
        return RepoUrl(url, repo_id, repo_type)

    def delete_repo(self, repo_id: str, *, repo_type: str | None = None, missing_ok: bool = False) -> None:
        repo_type = http.check_repo_type(repo_type)
        namespace, _, name = http.check_repo_id(repo_id).rpartition("/")
        body: dict[str, Any] = {"name": name, "organization": namespace or None}
        if repo_type != "model":
            body["type"] = repo_type
        try:
            self.request("DELETE", "/api/repos/delete", json=body, repo_id=repo_id, action="delete_repo")
        except RepositoryNotFoundError:
            if not missing_ok:
                raise

    def repo_info(
        self, repo_id: str, *, revision: str | None = None, repo_type: str | None = None, files_metadata: bool = False
    ) -> RepoInfo:
        base, _ = self._repo_api(repo_id, repo_type)
        url = base if revision is None else f"{base}/revision/{http.quote_rev(revision)}"
        params = {"blobs": "true"} if files_metadata else None
        return RepoInfo.from_json(
            self.request("GET", url, params=params, repo_id=repo_id, revision=revision, action="repo_info").json()
        )

    def model_info(self, repo_id: str, *, revision: str | None = None, files_metadata: bool = False) -> RepoInfo:
        return self.repo_info(repo_id, revision=revision, repo_type="model", files_metadata=files_metadata)

    def repo_exists(self, repo_id: str, *, repo_type: str | None = None) -> bool:
        try:
            self.repo_info(repo_id, repo_type=repo_type)
            return True
        except RepositoryNotFoundError:
            return False

    def file_exists(self, repo_id: str, filename: str, *, revision: str | None = None, repo_type: str | None = None) -> bool:
        url = http.resolve_url(self.endpoint, http.check_repo_type(repo_type), repo_id, revision or "main", filename)
        try:
            self.request("HEAD", url, repo_id=repo_id, revision=revision, filename=filename, follow_redirects=True)
            return True
        except EntryNotFoundError:
            return False

    def list_models(
        self,
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
        for count, item in enumerate(self.paginate(url, params, action="list_models")):
            if limit is not None and count >= limit:
                return
            yield RepoInfo.from_json(item)

    # -- files and history ----------------------------------------------------------------------------

    def list_repo_tree(
        self,
        repo_id: str,
        path_in_repo: str | None = None,
        *,
        revision: str | None = None,
        recursive: bool = False,
        expand: bool = False,
        repo_type: str | None = None,
    ) -> Iterator[RepoFile | RepoFolder]:
        base, _ = self._repo_api(repo_id, repo_type)
        url = f"{base}/tree/{http.quote_rev(revision or 'main')}"
        if path_in_repo:
            url += "/" + quote(path_in_repo.strip("/"), safe="/")
        params = {"recursive": str(recursive).lower(), "expand": str(expand).lower()}
        for item in self.paginate(url, params, repo_id=repo_id, revision=revision, action="list_repo_tree"):
            yield tree_entry(item)

    def list_repo_files(self, repo_id: str, *, revision: str | None = None, repo_type: str | None = None) -> list[str]:
        tree = self.list_repo_tree(repo_id, revision=revision, recursive=True, repo_type=repo_type)
        return sorted(e.path for e in tree if isinstance(e, RepoFile))

    def get_paths_info(
        self, repo_id: str, paths: list[str], *, revision: str | None = None, repo_type: str | None = None
    ) -> list[RepoFile | RepoFolder]:
        base, _ = self._repo_api(repo_id, repo_type)
        url = f"{base}/paths-info/{http.quote_rev(revision or 'main')}"
        response = self.request(
            "POST", url, data={"paths": list(paths), "expand": "false"}, repo_id=repo_id, revision=revision,
            action="paths-info",
        )
        return [tree_entry(item) for item in response.json()]

    def list_repo_commits(
        self, repo_id: str, *, revision: str | None = None, repo_type: str | None = None
    ) -> list[GitCommitInfo]:
        base, _ = self._repo_api(repo_id, repo_type)
        url = f"{base}/commits/{http.quote_rev(revision or 'main')}"
        items = self.paginate(url, repo_id=repo_id, revision=revision, action="list_repo_commits")
        return [GitCommitInfo.from_json(item) for item in items]

    def list_repo_refs(self, repo_id: str, *, repo_type: str | None = None) -> GitRefs:
        base, _ = self._repo_api(repo_id, repo_type)
        return GitRefs.from_json(self.request("GET", f"{base}/refs", repo_id=repo_id, action="list_repo_refs").json())

    def create_branch(
        self,
        repo_id: str,
        branch: str,
        *,
        revision: str | None = None,
        exist_ok: bool = False,
        repo_type: str | None = None,
    ) -> None:
        """Create `branch` at `revision` (default: the head of main)."""
        base, _ = self._repo_api(repo_id, repo_type)
        body = {"startingPoint": revision} if revision else None
        try:
            self.request(
                "POST", f"{base}/branch/{http.quote_rev(branch)}", json=body, repo_id=repo_id, revision=revision,
                action="create_branch",
            )
        except HubError as err:
            if not (exist_ok and err.status == 409):
                raise

    def delete_branch(self, repo_id: str, branch: str, *, repo_type: str | None = None) -> None:
        base, _ = self._repo_api(repo_id, repo_type)
        self.request("DELETE", f"{base}/branch/{http.quote_rev(branch)}", repo_id=repo_id, revision=branch,
                     action="delete_branch")

    def create_tag(
        self,
        repo_id: str,
        tag: str,
        *,
        revision: str | None = None,
        tag_message: str | None = None,
        exist_ok: bool = False,
        repo_type: str | None = None,
    ) -> None:
        """Tag `revision` (default main) as `tag`."""
        base, _ = self._repo_api(repo_id, repo_type)
        body: dict[str, Any] = {"tag": tag}
        if tag_message:
            body["message"] = tag_message
        try:
            self.request(
                "POST", f"{base}/tag/{http.quote_rev(revision or 'main')}", json=body, repo_id=repo_id,
                revision=revision, action="create_tag",
            )
        except HubError as err:
            if not (exist_ok and err.status == 409):
                raise

    def delete_tag(self, repo_id: str, tag: str, *, repo_type: str | None = None) -> None:
        base, _ = self._repo_api(repo_id, repo_type)
        self.request("DELETE", f"{base}/tag/{http.quote_rev(tag)}", repo_id=repo_id, revision=tag, action="delete_tag")

    # -- downloads (download.py) ----------------------------------------------------------------------

    def hf_hub_download(self, repo_id: str, filename: str, **kwargs: Any) -> str:
        """Local path of one file, fetched into the cache if needed. See `download.hf_hub_download`."""
        from .download import hf_hub_download

        return hf_hub_download(self, repo_id, filename, **kwargs)

    def snapshot_download(self, repo_id: str, **kwargs: Any) -> str:
        """Local folder holding a whole revision (or the files matching `allow_patterns`)."""
        from .download import snapshot_download

        return snapshot_download(self, repo_id, **kwargs)

    # -- uploads (upload.py) --------------------------------------------------------------------------

    def create_commit(self, repo_id: str, operations: Iterable[Any], **kwargs: Any) -> Any:
        """Commit add/delete/copy operations in one git commit. See `upload.create_commit`."""
        from .upload import create_commit

        return create_commit(self, repo_id, operations, **kwargs)

    def upload_file(self, *, path_or_fileobj: Any, path_in_repo: str, repo_id: str, **kwargs: Any) -> Any:
        from .upload import upload_file

        return upload_file(self, path_or_fileobj=path_or_fileobj, path_in_repo=path_in_repo, repo_id=repo_id, **kwargs)

    def upload_folder(self, *, repo_id: str, folder_path: str | os.PathLike, **kwargs: Any) -> Any:
        from .upload import upload_folder

        return upload_folder(self, repo_id=repo_id, folder_path=folder_path, **kwargs)

    def commit_scope(self, repo_id: str, **kwargs: Any) -> Any:
        """`with hub.commit_scope("me/repo") as repo:` write under `repo.path`; one commit on exit."""
        from .upload import CommitScope

        return CommitScope(self, repo_id, **kwargs)


_clients: dict[tuple[str, str | None], HubClient] = {}
_clients_lock = threading.Lock()


def get_client(token: str | bool | None = None, endpoint: str | None = None) -> HubClient:
    """A shared client for the current endpoint and token (reused so connections stay open)."""
    endpoint = (endpoint or get_endpoint()).rstrip("/")
    resolved = None if token is False else (token if isinstance(token, str) else get_token())
    key = (endpoint, resolved)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = HubClient(endpoint, resolved if resolved else False)
        return client
