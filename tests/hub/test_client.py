"""HubClient against a real hub server: repositories, listings, branches and tags, commits with
add/delete/copy and parent_commit, commit_scope, visibility, and the error types."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fixtures.server import unique_name
from haven.errors import (
    EntryNotFoundError,
    HubAuthError,
    HubError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from haven.hub.client import HubClient
from haven.hub.types import RepoFile
from haven.hub.upload import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete
from hub.helpers import write_tree


def _read(client: HubClient, repo: str, name: str, **kw) -> bytes:
    with open(client.hf_hub_download(repo, name, **kw), "rb") as f:
        return f.read()


def test_whoami_and_repo_lifecycle(hub):
    me = hub.client.whoami()
    assert me["name"] == hub.user and me["auth"]["accessToken"]["role"] == "write"
    name = unique_name("life")
    url = hub.client.create_repo(name)  # a bare name lands in the caller's namespace
    assert url.repo_id == f"{hub.user}/{name}" and url == f"{hub.url}/{hub.user}/{name}"
    with pytest.raises(HubError) as info:
        hub.client.create_repo(url.repo_id)
    assert info.value.status == 409
    assert hub.client.create_repo(url.repo_id, exist_ok=True).repo_id == url.repo_id
    info = hub.client.model_info(url.repo_id)
    assert info.id == url.repo_id and len(info.sha) == 40 and info.private is False
    assert hub.client.repo_exists(url.repo_id)
    hub.client.delete_repo(url.repo_id)
    assert not hub.client.repo_exists(url.repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hub.client.delete_repo(url.repo_id)
    hub.client.delete_repo(url.repo_id, missing_ok=True)


def test_dataset_repos_use_their_own_urls(hub, tmp_path):
    repo = hub.new_repo("data")
    url = hub.client.create_repo(repo, repo_type="dataset")
    assert url == f"{hub.url}/datasets/{repo}"
    hub.client.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="train.csv", repo_id=repo, repo_type="dataset")
    assert _read(hub.client, repo, "train.csv", repo_type="dataset") == b"a,b\n1,2\n"
    assert (hub.cache_dir / f"datasets--{repo.replace('/', '--')}").is_dir()
    with pytest.raises(RepositoryNotFoundError):
        hub.client.model_info(repo)  # it is not a model


def test_list_models_filters_sorts_and_follows_pages(hub, tmp_path):
    tag = unique_name("tag").replace("-", "")
    repos = []
    for i in range(5):
        repo = hub.new_repo(f"list{i}")
        hub.client.create_repo(repo)
        readme = f"---\ntags:\n- {tag}\nlicense: mit\n---\n# {i}\n" if i % 2 == 0 else "# plain\n"
        hub.client.upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=repo)
        repos.append(repo)
    client = HubClient()
    found = [m.id for m in client.list_models(author=hub.user, page_size=2)]
    assert set(repos) <= set(found)
    pages = [url for method, url, _ in client.request_log if method == "GET" and "/api/models" in url]
    assert len(pages) >= 3  # 5+ results in pages of 2: the Link rel=next chain was followed
    assert sorted(m.id for m in client.list_models(filter=tag)) == sorted(repos[0::2])
    assert [m.id for m in client.list_models(search=repos[3].split("/")[1])] == [repos[3]]
    assert len(list(client.list_models(author=hub.user, limit=3))) == 3
    newest = next(client.list_models(author=hub.user, sort="createdAt"))
    assert newest.id == repos[-1]


def test_branches_tags_files_and_history(hub):
    repo = hub.new_repo("refs")
    hub.client.create_repo(repo)
    first = hub.client.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id=repo, commit_message="one")
    hub.client.create_branch(repo, "dev")
    with pytest.raises(HubError) as info:
        hub.client.create_branch(repo, "dev")
    assert info.value.status == 409
    hub.client.create_branch(repo, "dev", exist_ok=True)
    hub.client.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id=repo, revision="dev", commit_message="two")
    hub.client.create_tag(repo, "v1.0", revision=first.oid, tag_message="first release")
    refs = hub.client.list_repo_refs(repo)
    branches = {b.name: b.target_commit for b in refs.branches}
    assert set(branches) == {"main", "dev"} and branches["main"] == first.oid
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0": first.oid}
    assert _read(hub.client, repo, "a.txt") == b"v1"
    assert _read(hub.client, repo, "a.txt", revision="dev") == b"v2"
    assert _read(hub.client, repo, "a.txt", revision="v1.0") == b"v1"
    titles = [c.title for c in hub.client.list_repo_commits(repo, revision="dev")]
    assert titles[:2] == ["two", "one"]
    assert hub.client.list_repo_files(repo, revision="dev") == [".gitattributes", "a.txt"]
    hub.client.delete_tag(repo, "v1.0")
    hub.client.delete_branch(repo, "dev")
    assert [b.name for b in hub.client.list_repo_refs(repo).branches] == ["main"]


def test_create_commit_add_delete_copy_and_parent_commit(hub, tmp_path):
    repo = hub.new_repo("ops")
    hub.client.create_repo(repo)
    big = hashlib.sha256(b"seed").digest() * 40000  # 1.28 MB: stored in LFS
    write_tree(tmp_path / "src", {"keep.txt": b"keep", "old/x.txt": b"x", "old/y.txt": b"y", "big.bin": big})
    base = hub.client.upload_folder(repo_id=repo, folder_path=tmp_path / "src")
    ops = [
        CommitOperationAdd("new.txt", b"new"),
        CommitOperationDelete("old/"),
        CommitOperationCopy("big.bin", "copies/big.bin"),
        CommitOperationCopy("keep.txt", "copies/keep.txt"),
    ]
    info = hub.client.create_commit(repo, ops, commit_message="ops", parent_commit=base.oid)
    assert info.oid != base.oid and info.commit_url.endswith(info.oid)
    files = hub.client.list_repo_files(repo)
    assert files == [".gitattributes", "big.bin", "copies/big.bin", "copies/keep.txt", "keep.txt", "new.txt"]
    assert _read(hub.client, repo, "copies/big.bin") == big
    assert _read(hub.client, repo, "copies/keep.txt") == b"keep"
    tree = {e.path: e for e in hub.client.list_repo_tree(repo, "copies") if isinstance(e, RepoFile)}
    assert tree["copies/big.bin"].sha256 == hashlib.sha256(big).hexdigest()

    with pytest.raises(HubError) as stale:  # base is no longer the head
        hub.client.create_commit(repo, [CommitOperationAdd("z.txt", b"z")], commit_message="late", parent_commit=base.oid)
    assert stale.value.status in (409, 412)
    assert "z.txt" not in hub.client.list_repo_files(repo)

    same = hub.client.upload_file(path_or_fileobj=b"keep", path_in_repo="keep.txt", repo_id=repo)
    assert same.skipped and same.oid == info.oid  # unchanged content makes no empty commit
    with pytest.raises(EntryNotFoundError):
        hub.client.create_commit(repo, [CommitOperationCopy("nope.bin", "b.bin")], commit_message="bad copy")
    with pytest.raises(ValueError, match="invalid path"):
        CommitOperationAdd("../escape.txt", b"x")

    # a file object is uploaded from where it stands (regular and LFS), and stays open for its owner
    (tmp_path / "f.bin").write_bytes(b"skip" + big)
    with open(tmp_path / "f.bin", "rb") as f:
        f.seek(4)
        hub.client.upload_file(path_or_fileobj=f, path_in_repo="from-fileobj.bin", repo_id=repo)
        f.seek(4 + len(big) - 5)
        hub.client.upload_file(path_or_fileobj=f, path_in_repo="tail.txt", repo_id=repo)
        assert not f.closed
    assert _read(hub.client, repo, "from-fileobj.bin") == big
    assert _read(hub.client, repo, "tail.txt") == big[-5:]


def test_upload_folder_patterns_and_deletes(hub, tmp_path):
    repo = hub.new_repo("patterns")
    hub.client.create_repo(repo)
    src = write_tree(tmp_path / "src", {"a.json": b"{}", "b.txt": b"b", "logs/run.log": b"log", "sub/c.json": b"[]"})
    hub.client.upload_folder(repo_id=repo, folder_path=src, path_in_repo="data", allow_patterns=["*.json", "logs/"],
                             ignore_patterns="*.log")
    assert hub.client.list_repo_files(repo) == [".gitattributes", "data/a.json", "data/sub/c.json"]
    (src / "a.json").unlink()
    hub.client.upload_folder(repo_id=repo, folder_path=src, path_in_repo="data", allow_patterns="sub/*",
                             delete_patterns="*.json")
    assert hub.client.list_repo_files(repo) == [".gitattributes", "data/sub/c.json"]


def test_commit_scope_commits_once_or_not_at_all(hub):
    repo = hub.new_repo("scope")
    with pytest.raises(RuntimeError):
        with hub.client.commit_scope(repo) as scope:
            (Path(scope.path) / "a.txt").write_text("never")
            raise RuntimeError("boom")
    assert not hub.client.repo_exists(repo)  # nothing happened, not even the repo

    with hub.client.commit_scope(repo, commit_message="two files") as scope:
        write_tree(Path(scope.path), {"a.txt": b"a", "dir/b.txt": b"b"})
    commits = hub.client.list_repo_commits(repo)
    assert commits[0].title == "two files" and commits[0].commit_id == scope.commit_info.oid
    assert hub.client.list_repo_files(repo) == [".gitattributes", "a.txt", "dir/b.txt"]


def test_private_repos_and_organizations(hub, hub_server):
    repo = hub.new_repo("secret")
    hub.client.create_repo(repo, private=True)
    hub.client.upload_file(path_or_fileobj=b"s", path_in_repo="s.txt", repo_id=repo)
    assert hub.client.model_info(repo).private is True
    anonymous = HubClient(token=False)
    with pytest.raises(RepositoryNotFoundError, match="private"):
        anonymous.model_info(repo)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.hf_hub_download(repo, "s.txt", cache_dir=str(hub.cache_dir))
    other = HubClient(token=hub_server.create_user(unique_name("other")))
    with pytest.raises(RepositoryNotFoundError):
        other.model_info(repo)
    public = hub.client.create_repo(hub.new_repo("notmine")).repo_id
    with pytest.raises(HubAuthError):  # may see, may not write
        other.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=public)

    org = unique_name("org")
    hub_server.create_org(org, hub.user)
    url = hub.client.create_repo(f"{org}/shared")
    hub.client.upload_file(path_or_fileobj=b"o", path_in_repo="o.txt", repo_id=url.repo_id)
    assert _read(anonymous, url.repo_id, "o.txt", cache_dir=str(hub.cache_dir)) == b"o"


def test_errors_name_the_problem_and_the_fix(hub, tmp_path):
    repo = hub.new_repo("errs")
    hub.client.create_repo(repo)
    hub.client.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=repo)
    with pytest.raises(RepositoryNotFoundError, match="haven login"):
        hub.client.hf_hub_download(hub.new_repo("missing"), "config.json")
    with pytest.raises(RevisionNotFoundError, match="git ls-remote"):
        hub.client.hf_hub_download(repo, "one.txt", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hub.client.list_repo_files(repo, revision="no-such-branch")
    with pytest.raises(EntryNotFoundError, match="tree/main.recursive=true"):
        hub.client.hf_hub_download(repo, "two.txt")
    bad = HubClient(token="hv_not-a-real-token")
    with pytest.raises(HubAuthError, match="HAVEN_TOKEN"):
        bad.whoami()
    with pytest.raises(HubAuthError):
        bad.hf_hub_download(repo, "one.txt")
    with pytest.raises(HubAuthError, match="haven login"):
        HubClient(token=False).create_repo(hub.new_repo("anon"))
    with pytest.raises(ValueError, match="owner/name"):
        hub.client.model_info("a/b/c")
