"""Plain records for what the hub API returns. Each keeps the raw JSON in `.raw`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import HavenError


class ModelCardError(HavenError, ValueError):
    """A model card's metadata is malformed; the message lists each problem and how to fix it."""


@dataclass
class Sibling:
    rfilename: str
    size: int | None = None
    blob_id: str | None = None
    lfs: dict[str, Any] | None = None


@dataclass
class RepoInfo:
    """`GET /api/{type}s/{id}`: a model (or dataset) and its files."""

    id: str
    sha: str | None = None
    author: str | None = None
    private: bool = False
    gated: Any = False
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    last_modified: str | None = None
    created_at: str | None = None
    card_data: dict[str, Any] | None = None
    siblings: list[Sibling] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepoInfo:
        siblings = data.get("siblings")
        return cls(
            id=data.get("id") or data.get("modelId") or "",
            sha=data.get("sha"),
            author=data.get("author"),
            private=bool(data.get("private", False)),
            gated=data.get("gated", False),
            downloads=int(data.get("downloads") or 0),
            likes=int(data.get("likes") or 0),
            tags=list(data.get("tags") or []),
            pipeline_tag=data.get("pipeline_tag"),
            library_name=data.get("library_name"),
            last_modified=data.get("lastModified"),
            created_at=data.get("createdAt"),
            card_data=data.get("cardData"),
            siblings=None
            if siblings is None
            else [
                Sibling(s["rfilename"], s.get("size"), s.get("blobId"), s.get("lfs"))
                for s in siblings
                if isinstance(s, dict) and "rfilename" in s
            ],
            raw=data,
        )


ModelInfo = RepoInfo


@dataclass
class RepoFile:
    path: str
    size: int
    blob_id: str
    lfs: dict[str, Any] | None = None
    last_commit: dict[str, Any] | None = None

    @property
    def sha256(self) -> str | None:
        return (self.lfs or {}).get("oid") or (self.lfs or {}).get("sha256")


@dataclass
class RepoFolder:
    path: str
    tree_id: str | None = None


def tree_entry(item: dict[str, Any]) -> RepoFile | RepoFolder:
    if item.get("type") == "directory":
        return RepoFolder(item["path"], item.get("oid"))
    return RepoFile(item["path"], int(item.get("size") or 0), item.get("oid", ""), item.get("lfs"), item.get("lastCommit"))


@dataclass
class GitCommitInfo:
    commit_id: str
    authors: list[str]
    created_at: str | None
    title: str
    message: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GitCommitInfo:
        authors = [a.get("user", "") if isinstance(a, dict) else str(a) for a in data.get("authors") or []]
        return cls(data["id"], authors, data.get("date"), data.get("title", ""), data.get("message", ""))


@dataclass
class GitRefInfo:
    name: str
    ref: str
    target_commit: str


@dataclass
class GitRefs:
    branches: list[GitRefInfo]
    tags: list[GitRefInfo]
    converts: list[GitRefInfo] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GitRefs:
        def refs(key: str) -> list[GitRefInfo]:
            return [GitRefInfo(r["name"], r.get("ref", ""), r.get("targetCommit", "")) for r in data.get(key) or []]

        return cls(refs("branches"), refs("tags"), refs("converts"))


class RepoUrl(str):
    """The URL `create_repo` returns, with the repo's id and type."""

    repo_id: str
    repo_type: str

    def __new__(cls, url: str, repo_id: str, repo_type: str) -> RepoUrl:
        obj = super().__new__(cls, url)
        obj.repo_id = repo_id
        obj.repo_type = repo_type
        return obj


@dataclass
class CommitInfo:
    """What a commit produced. `oid` is the new commit's sha (or the unchanged head if skipped)."""

    commit_url: str
    oid: str | None
    commit_message: str = ""
    skipped: bool = False

    def __str__(self) -> str:
        return self.commit_url
