"""`push_to_hub` for models, configs and tokenizers: save to a temporary folder, commit it.

The top layer of the client: it uses `repos`, `upload` and `card`, and none of them uses it. Its
own imports are made on first push, so `from haven.hub.mixin import PushToHubMixin` (done by every
model, config and tokenizer class) stays light.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any


class PushToHubMixin:
    """Anything with `save_pretrained(dir)` can be published with `push_to_hub(repo_id)`."""

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        return push_object_to_hub(self, repo_id, **kwargs)


def push_object_to_hub(
    obj: Any,
    repo_id: str,
    *,
    private: bool | None = None,
    organization: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    tokenizer: Any = None,
    endpoint: str | None = None,
    **save_kwargs: Any,
) -> Any:
    """Save `obj` (and `tokenizer`, if given) and commit the files to `repo_id` in ONE commit.

    Creates the repository if needed; adds a generated README.md model card when the repo has none.
    Returns the `CommitInfo`.
    """
    from . import repos
    from .card import ModelCard
    from .http import HubSession
    from .upload import upload_folder

    with HubSession(endpoint, token) as session:
        if "/" not in repo_id:
            namespace = organization or repos.whoami(session)["name"]
            repo_id = f"{namespace}/{repo_id}"
        elif organization and not repo_id.startswith(organization + "/"):
            raise ValueError(f"repo_id {repo_id!r} already names a namespace; pass organization only with a bare name")
        repos.create_repo(session, repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            repos.create_branch(session, repo_id, revision, exist_ok=True)
        kind = type(obj).__name__
        with tempfile.TemporaryDirectory(prefix="haven-push-") as tmp:
            obj.save_pretrained(tmp, **save_kwargs)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            if not os.path.exists(os.path.join(tmp, "README.md")) and not _remote_has(session, repo_id, revision):
                ModelCard.for_object(obj, repo_id).save(os.path.join(tmp, "README.md"))
            return upload_folder(
                session, repo_id=repo_id, folder_path=tmp, revision=revision,
                commit_message=commit_message or f"Upload {kind}",
            )


def _remote_has(session: Any, repo_id: str, revision: str | None) -> bool:
    """Whether the repo already has a README.md (a missing branch or repo: no)."""
    from ..errors import EntryNotFoundError, RevisionNotFoundError
    from . import repos

    try:
        return repos.file_exists(session, repo_id, "README.md", revision=revision)
    except (EntryNotFoundError, RevisionNotFoundError):
        return False
