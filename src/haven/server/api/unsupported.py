"""What a request no route serves is told: the public Hub's features this hub does not implement
answer 501 naming the feature and what to do instead; anything else is 404 "no such route",
without `X-Error-Code` (so clients never report a missing feature as a missing repository).

A repository id without a namespace (`/api/models/gpt2`, `/gpt2/resolve/...`) is a repository
this hub cannot have: 404 with `X-Error-Code: RepoNotFound`, as the Hub answers for a missing repo.
"""

from __future__ import annotations

import re

from .common import ApiError

_REPO = r"^/api/(?:models|datasets|spaces)/[^/]+/[^/]+"
_BRANCH_INSTEAD = "commit to a branch instead (create_branch, then upload with revision=BRANCH)"

# (path pattern, what is not supported: why / what to do instead), first match wins
UNSUPPORTED: list[tuple[re.Pattern, str]] = [
    (re.compile(p), message)
    for p, message in [
        (_REPO + r"/discussions(/|\Z)", f"discussions and pull requests are not supported by this hub: {_BRANCH_INSTEAD}"),
        (_REPO + r"/user-access-request(/|\Z)", "gated repositories and access requests are not supported by this hub"),
        (_REPO + r"/super-squash(/|\Z)", "squashing a branch's history is not supported by this hub"),
        (_REPO + r"/lfs-files(/|\Z)", "listing or purging LFS files is not supported by this hub: delete files "
         "with a commit (delete_file)"),
        (_REPO + r"/auth-check\Z", "auth-check is not supported by this hub: call model_info or dataset_info, "
         "which answers 404 when you may not read the repository"),
        (_REPO + r"/duplicate\Z", "duplicating repositories is not supported by this hub: clone it with git and "
         "push to a new repository"),
        (_REPO + r"/resource-group\Z", "resource groups are not supported by this hub"),
        (_REPO + r"/leaderboard\Z", "leaderboards are not supported by this hub"),
        (_REPO + r"/safetensors-metadata/", "sharded safetensors metadata in one call is not supported by this "
         "hub: read each shard's header (get_safetensors_metadata reads them with range requests)"),
        (r"^/api/spaces(/|\Z)", "Spaces are not supported by this hub: it hosts models and datasets"),
        (r"^/api/kernels(/|\Z)", "kernel repositories are not supported by this hub: it hosts models and datasets"),
        (r"^/api/buckets(/|\Z)", "storage buckets are not supported by this hub: use a dataset repository"),
        (r"^/api/collections(/|\Z)", "collections are not supported by this hub"),
        (r"^/api/(jobs|scheduled-jobs)(/|\Z)", "jobs are not supported by this hub: it runs no compute"),
        (r"^/api/settings/webhooks(/|\Z)", "webhooks are not supported by this hub"),
        (r"^/api/(settings|organizations/[^/]+/settings)/repositories\Z", "account-wide repository settings are "
         "not supported by this hub: set each repository's visibility (update_repo_settings)"),
        (r"^/api/(users|organizations)/[^/]+/(overview|followers|following|members)\Z", "user and organization "
         "overviews, followers and member lists are not supported by this hub"),
        (r"^/api/(papers|daily_papers)(/|\Z)", "papers are not supported by this hub"),
        (r"^/api/(models|datasets)-tags-by-type\Z", "tag catalogs are not supported by this hub: filter "
         "listings by tag (filter=...) directly"),
    ]
]
NO_NAMESPACE = re.compile(r"^/api/(models|datasets)/[^/]+(/(revision|tree|refs|commits|paths-info)(/.*)?)?\Z|^/[^/]+/resolve/")


def route_error(method: str, path: str, status: int = 404) -> ApiError:
    """The error for a request to `path` that no route serves (`status` 405: the path exists for
    other methods)."""
    for pattern, message in UNSUPPORTED:
        if pattern.search(path):
            return ApiError(501, message)
    if status == 404 and NO_NAMESPACE.search(path):
        return ApiError(
            404,
            "Repository not found: repository ids on this hub are 'namespace/name' (a user or "
            "organization, then the name).",
            "RepoNotFound",
        )
    if status == 405:
        return ApiError(405, f"method not allowed: {method} {path} (this route takes other methods)")
    return ApiError(404, f"no such route: {method} {path}")
