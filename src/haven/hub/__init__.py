"""Client side of the hub: file resolution, download cache, uploads, commits, model cards.

`resolve_file` is the one entry point the runtime uses: `from_pretrained` asks it for each file
it needs, whether the caller passed a local directory or a hub repository id.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import EntryNotFoundError, RepositoryNotFoundError


def resolve_file(
    path_or_id: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    optional: bool = False,
    **hub_kwargs: Any,
) -> str | None:
    """Local path of `filename` inside a model directory or hub repository.

    A local directory is used as it is. Anything else is taken as a repository id and fetched
    through the download cache. With `optional=True` a missing file gives None instead of
    `EntryNotFoundError` (the miss is remembered in the cache, so it costs one request at most).
    """
    if os.path.isdir(path_or_id):
        path = os.path.join(path_or_id, filename)
        if os.path.isfile(path):
            return path
        if optional:
            return None
        raise EntryNotFoundError(f"{filename} not found in {os.fspath(path_or_id)}")
    return _resolve_remote(os.fspath(path_or_id), filename, revision=revision, optional=optional, **hub_kwargs)


def _resolve_remote(repo_id: str, filename: str, **kwargs: Any) -> str | None:
    try:
        from .download import resolve_remote_file
    except ImportError:  # the download client is not part of this build
        raise RepositoryNotFoundError(
            f"{repo_id!r} is not a local directory, and hub downloads are not available; "
            "pass the path of a directory holding config.json and the weights"
        ) from None
    return resolve_remote_file(repo_id, filename, **kwargs)


# Public names of the client, imported on first use so `import haven.hub` stays light.
_EXPORTS = {
    "HubClient": "client",
    "get_client": "client",
    "HubSession": "http",
    "ModelCard": "card",
    "CardData": "card",
    "CommitOperationAdd": "upload",
    "CommitOperationDelete": "upload",
    "CommitOperationCopy": "upload",
    "get_token": "auth",
    "get_endpoint": "auth",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'haven.hub' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


def hf_hub_download(repo_id: str, filename: str, *, token: str | None = None, **kwargs: Any) -> str:
    """Local path of one file of a hub repository (cached). See `HubClient.hf_hub_download`."""
    from .client import get_client

    return get_client(token).hf_hub_download(repo_id, filename, **kwargs)


def snapshot_download(repo_id: str, *, token: str | None = None, **kwargs: Any) -> str:
    """Local folder with a whole revision of a hub repository. See `HubClient.snapshot_download`."""
    from .client import get_client

    return get_client(token).snapshot_download(repo_id, **kwargs)
