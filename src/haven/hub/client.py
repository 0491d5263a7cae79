"""`HubClient`: Haven's client for any Hub-compatible endpoint (a Haven server or the public Hub).

    from haven import HubClient
    hub = HubClient()                                   # endpoint/token from env or `haven login`
    hub.create_repo("me/tiny-bert", exist_ok=True)
    hub.upload_folder(repo_id="me/tiny-bert", folder_path="out/")
    path = hub.hf_hub_download("me/tiny-bert", "config.json")

A thin facade: it holds one `HubSession` (endpoint, token, pooled connections) and a cache folder,
and each method is a function of `repos`, `download` or `upload` called with that session. The
layers below never import this module:

    auth -> http (HubSession, errors) -> repos -> download -> upload -> client ; card, mixin on top
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

from . import download, repos, upload
from .http import HubSession, get_session


def _on_session(func: Callable[..., Any]) -> Callable[..., Any]:
    """A method that calls `func(self.session, ...)`; it keeps `func`'s name, docs and signature."""

    @functools.wraps(func)
    def method(self: HubClient, *args: Any, **kwargs: Any) -> Any:
        return func(self.session, *args, **kwargs)

    return method


class HubClient:
    """Talks to one hub endpoint with one token (either may be None: read from the environment)."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | bool | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        session: HubSession | None = None,
    ):
        if session is not None and (endpoint is not None or token is not None):
            raise ValueError("pass either a session or endpoint/token, not both: the session already has them")
        self.session = session or HubSession(endpoint, token)
        self.cache_dir = os.fspath(cache_dir) if cache_dir else None

    @property
    def endpoint(self) -> str:
        return self.session.endpoint

    @property
    def token(self) -> str | None:
        return self.session.token

    @property
    def stats(self) -> dict[str, int]:
        return self.session.stats

    @property
    def request_log(self) -> Any:
        return self.session.request_log

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request with auth; error statuses become `haven.errors` exceptions (`HubSession.request`)."""
        return self.session.request(method, url, **kwargs)

    # -- identity, repositories, listings (repos.py) ------------------------------------------------------
    whoami = _on_session(repos.whoami)
    create_repo = _on_session(repos.create_repo)
    delete_repo = _on_session(repos.delete_repo)
    repo_info = _on_session(repos.repo_info)
    model_info = _on_session(repos.model_info)
    repo_exists = _on_session(repos.repo_exists)
    file_exists = _on_session(repos.file_exists)
    list_models = _on_session(repos.list_models)
    list_repo_tree = _on_session(repos.list_repo_tree)
    list_repo_files = _on_session(repos.list_repo_files)
    get_paths_info = _on_session(repos.get_paths_info)
    list_repo_commits = _on_session(repos.list_repo_commits)
    list_repo_refs = _on_session(repos.list_repo_refs)
    create_branch = _on_session(repos.create_branch)
    delete_branch = _on_session(repos.delete_branch)
    create_tag = _on_session(repos.create_tag)
    delete_tag = _on_session(repos.delete_tag)

    # -- downloads (download.py): into this client's cache_dir unless one is passed -----------------------
    def hf_hub_download(self, repo_id: str, filename: str, **kwargs: Any) -> str:
        """Local path of one file, fetched into the cache if needed. See `download.hf_hub_download`."""
        kwargs["cache_dir"] = kwargs.get("cache_dir") or self.cache_dir
        return download.hf_hub_download(self.session, repo_id, filename, **kwargs)

    def snapshot_download(self, repo_id: str, **kwargs: Any) -> str:
        """Local folder holding a whole revision (or the files matching `allow_patterns`)."""
        kwargs["cache_dir"] = kwargs.get("cache_dir") or self.cache_dir
        return download.snapshot_download(self.session, repo_id, **kwargs)

    # -- commits (upload.py) ---------------------------------------------------------------------------
    def create_commit(self, repo_id: str, operations: Iterable[Any], **kwargs: Any) -> Any:
        """Commit add/delete/copy operations in one git commit. See `upload.create_commit`."""
        return upload.create_commit(self.session, repo_id, operations, **kwargs)

    upload_file = _on_session(upload.upload_file)
    upload_folder = _on_session(upload.upload_folder)

    def commit_scope(self, repo_id: str, **kwargs: Any) -> upload.CommitScope:
        """`with hub.commit_scope("me/repo") as repo:` write under `repo.path`; one commit on exit."""
        return upload.CommitScope(self.session, repo_id, **kwargs)


def get_client(token: str | bool | None = None, endpoint: str | None = None) -> HubClient:
    """A client on the shared session for the current endpoint and token (connections stay open)."""
    return HubClient(session=get_session(token, endpoint))
