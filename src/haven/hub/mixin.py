"""`push_to_hub` for models, configs and tokenizers: save to a temporary folder, commit it."""

from __future__ import annotations

from typing import Any


class PushToHubMixin:
    """Anything with `save_pretrained(dir)` can be published with `push_to_hub(repo_id)`."""

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        from .upload import push_object_to_hub

        return push_object_to_hub(self, repo_id, **kwargs)
