"""The real `huggingface_hub` client against a real `haven serve`: uploads, listings, downloads."""

from __future__ import annotations

import hashlib
import io
import json
import os

import httpx
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError
from huggingface_hub.file_download import http_get

from fixtures.server import unique_name

BIG = 11 * 1024 * 1024  # over the 10 MB LFS threshold


@pytest.fixture(scope="module")
def owner(hub_server):
    name = unique_name("carol")
    token = hub_server.create_user(name)
    return name, token, HfApi(endpoint=hub_server.url, token=token)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A model folder with regular files, a binary (LFS by extension) and a big text file (LFS by size)."""
    d = tmp_path_factory.mktemp("folder")
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    (d / "README.md").write_text(
        "---\nlicense: apache-2.0\nlanguage: [en, fr]\ntags: [tiny, test]\n---\n# Tiny\n"
    )
    (d / "model.safetensors").write_bytes(os.urandom(200_000))
    (d / "big.txt").write_bytes(b"0123456789abcdef" * (BIG // 16))
    (d / "docs").mkdir()
    (d / "docs" / "a.md").write_text("alpha")
    (d / "docs" / "b.md").write_text("beta")
    return d


@pytest.fixture(scope="module")
def uploaded(owner, folder):
    name, _token, api = owner
    repo_id = f"{name}/tiny-bert"
    api.create_repo(repo_id)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="add model")
    return repo_id, info


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_upload_folder_stores_regular_and_lfs_files(hub_server, owner, folder, uploaded):
    _, _, api = owner
    repo_id, commit = uploaded
    assert commit.oid and len(commit.oid) == 40
    files = api.list_repo_files(repo_id)
    assert sorted(files) == sorted(
        [
            ".gitattributes",
            "README.md",
            "config.json",
            "model.safetensors",
            "big.txt",
            "docs/a.md",
            "docs/b.md",
        ]
    )
    tree = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True)}
    for path in ("model.safetensors", "big.txt"):
        data = (folder / path).read_bytes()
        assert tree[path].lfs is not None, path
        assert tree[path].lfs.sha256 == hashlib.sha256(data).hexdigest()
        assert tree[path].size == len(data)
    config = (folder / "config.json").read_bytes()
    assert tree["config.json"].lfs is None
    assert tree["config.json"].blob_id == _git_blob_sha1(config)
    assert type(tree["docs"]).__name__ == "RepoFolder"
    top = [e.path for e in api.list_repo_tree(repo_id)]
    assert "docs" in top and "docs/a.md" not in top
    assert [e.path for e in api.list_repo_tree(repo_id, path_in_repo="docs")] == ["docs/a.md", "docs/b.md"]
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, path_in_repo="nope"))


def test_model_info_and_index(owner, folder, uploaded):
    _, _, api = owner
    repo_id, commit = uploaded
    info = api.model_info(repo_id, files_metadata=True)
    assert info.id == repo_id and info.sha == commit.oid
    assert info.pipeline_tag == "fill-mask"  # derived from BertForMaskedLM
    assert info.library_name == "transformers"
    assert {"license:apache-2.0", "en", "fr", "tiny", "test", "bert", "safetensors"} <= set(info.tags)
    assert info.card_data.license == "apache-2.0"
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["big.txt"] == (folder / "big.txt").stat().st_size
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert (
        lfs["model.safetensors"].sha256
        == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    )
    assert info.private is False and info.last_modified is not None


def test_create_commit_with_deletes_and_parent(owner, uploaded):
    _, _, api = owner
    repo_id, _ = uploaded
    head = api.model_info(repo_id).sha
    info = api.create_commit(
        repo_id,
        operations=[
            CommitOperationDelete("docs/b.md"),
            CommitOperationAdd("docs/c.md", io.BytesIO(b"gamma")),
        ],
        commit_message="swap docs",
        parent_commit=head,
    )
    files = api.list_repo_files(repo_id)
    assert "docs/b.md" not in files and "docs/c.md" in files
    api.create_commit(repo_id, operations=[CommitOperationDelete("docs/")], commit_message="drop docs folder")
    assert not any(f.startswith("docs/") for f in api.list_repo_files(repo_id))
    commits = api.list_repo_commits(repo_id)
    assert [c.title for c in commits[:3]] == ["drop docs folder", "swap docs", "add model"]
    assert commits[1].commit_id == info.oid
    assert len(commits) == 4  # plus the repository's initial commit
    # the old revision is still readable
    assert "docs/b.md" in api.list_repo_files(repo_id, revision=head)


def test_branches_tags_and_refs(owner, uploaded):
    _, _, api = owner
    repo_id, _ = uploaded
    api.create_branch(repo_id, branch="dev")
    api.create_branch(repo_id, branch="dev", exist_ok=True)
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=repo_id, revision="dev")
    api.create_tag(repo_id, tag="v1.0", tag_message="first release")
    api.create_tag(repo_id, tag="v1.0", exist_ok=True)
    for again in (lambda: api.create_branch(repo_id, branch="dev"), lambda: api.create_tag(repo_id, tag="v1.0")):
        with pytest.raises(HfHubHTTPError) as exists:
            again()
        assert exists.value.response.status_code == 409
    refs = api.list_repo_refs(repo_id)
    branches = {b.name: b.target_commit for b in refs.branches}
    assert set(branches) == {"main", "dev"}
    assert [t.name for t in refs.tags] == ["v1.0"]
    assert refs.tags[0].target_commit == branches["main"]
    assert refs.converts == []
    assert "dev.txt" in api.list_repo_files(repo_id, revision="dev")
    assert "dev.txt" not in api.list_repo_files(repo_id, revision="v1.0")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(repo_id, revision="no-such-branch")
    api.delete_branch(repo_id, branch="dev")
    api.delete_tag(repo_id, tag="v1.0")
    refs = api.list_repo_refs(repo_id)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []


def test_hf_hub_download_cache_hit_and_snapshot(hub_server, owner, folder, uploaded, tmp_path):
    name, token, api = owner
    repo_id, _ = uploaded
    before = api.model_info(repo_id).downloads
    kw = dict(endpoint=hub_server.url, token=token, cache_dir=tmp_path / "cache")
    first = hf_hub_download(repo_id, "config.json", **kw)
    assert open(first, "rb").read() == (folder / "config.json").read_bytes()
    assert api.model_info(repo_id).downloads == before + 1  # the GET was counted
    second = hf_hub_download(repo_id, "config.json", **kw)
    assert second == first
    assert api.model_info(repo_id).downloads == before + 1  # cache hit: no second GET
    big = hf_hub_download(repo_id, "big.txt", **kw)
    assert open(big, "rb").read() == (folder / "big.txt").read_bytes()
    snap = snapshot_download(repo_id, endpoint=hub_server.url, token=token, cache_dir=tmp_path / "snap")
    for path in ("config.json", "model.safetensors", "README.md"):
        assert open(os.path.join(snap, path), "rb").read() == (folder / path).read_bytes()


def test_resolve_headers_and_range(hub_server, owner, folder, uploaded):
    name, token, api = owner
    repo_id, _ = uploaded
    sha = api.model_info(repo_id).sha
    auth = {"authorization": f"Bearer {token}"}
    data = (folder / "model.safetensors").read_bytes()
    url = f"{hub_server.url}/{repo_id}/resolve/main/model.safetensors"
    head = httpx.head(url, headers=auth)
    assert head.status_code == 200
    assert head.headers["x-repo-commit"] == sha
    assert head.headers["x-linked-etag"].strip('"') == hashlib.sha256(data).hexdigest()
    assert int(head.headers["x-linked-size"]) == len(data)
    part = httpx.get(url, headers={**auth, "Range": "bytes=1000-"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert part.content == data[1000:]
    small = f"{hub_server.url}/{repo_id}/resolve/{sha}/config.json"
    config = (folder / "config.json").read_bytes()
    part = httpx.get(small, headers={**auth, "Range": "bytes=5-9"})
    assert part.status_code == 206 and part.content == config[5:10]
    assert httpx.head(small, headers=auth).headers["etag"].strip('"') == _git_blob_sha1(config)
    missing = httpx.head(f"{hub_server.url}/{repo_id}/resolve/main/nope.json", headers=auth)
    assert missing.status_code == 404
    assert missing.headers["x-error-code"] == "EntryNotFound" and missing.headers["x-repo-commit"] == sha
    bad_rev = httpx.get(f"{hub_server.url}/{repo_id}/resolve/nope/config.json", headers=auth)
    assert bad_rev.status_code == 404 and bad_rev.headers["x-error-code"] == "RevisionNotFound"
    assert "error" in bad_rev.json()


def test_client_resumes_with_range(hub_server, owner, folder, uploaded):
    """The client's resume path (http_get with resume_size) keeps the bytes it already has: a
    prefix it wrote itself stays in place, which only happens if the server honoured the Range."""
    name, token, _ = owner
    repo_id, _ = uploaded
    data = (folder / "model.safetensors").read_bytes()
    have = b"\xff" * 5000  # stand-in for the bytes of an interrupted download
    buf = io.BytesIO()
    buf.write(have)
    http_get(
        f"{hub_server.url}/{repo_id}/resolve/main/model.safetensors",
        buf,
        resume_size=len(have),
        headers={"authorization": f"Bearer {token}"},
        expected_size=len(data),
    )
    assert buf.getvalue() == have + data[len(have) :]


def test_list_models_search_author_filter_sort(hub_server, owner, uploaded):
    name, token, api = owner
    other = api.create_repo(f"{name}/gpt-thing").repo_id
    api.upload_file(
        path_or_fileobj=json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}).encode(),
        path_in_repo="config.json",
        repo_id=other,
    )
    repo_id, _ = uploaded
    ids = [m.id for m in api.list_models(author=name)]
    assert set(ids) == {repo_id, other}
    assert [m.id for m in api.list_models(search="gpt-th", author=name)] == [other]
    assert [m.id for m in api.list_models(filter="fill-mask", author=name)] == [repo_id]
    assert [m.id for m in api.list_models(filter=["gpt2", "text-generation"], author=name)] == [other]
    assert [m.pipeline_tag for m in api.list_models(pipeline_tag="text-generation", author=name)] == [
        "text-generation"
    ]
    newest_first = [m.id for m in api.list_models(author=name, sort="created_at")]
    assert newest_first == [other, repo_id]
    by_downloads = [m.id for m in api.list_models(author=name, sort="downloads")]
    assert by_downloads[0] == repo_id  # it has downloads, the other has none
    assert len(list(api.list_models(author=name, limit=1))) == 1
    # pagination through Link headers
    page = httpx.get(f"{hub_server.url}/api/models", params={"author": name, "limit": 1})
    assert len(page.json()) == 1 and 'rel="next"' in page.headers["link"]


def test_repo_exists_delete_and_datasets(hub_server, owner, tmp_path):
    name, token, api = owner
    repo_id = f"{name}/to-delete"
    assert not api.repo_exists(repo_id)
    api.create_repo(repo_id)
    assert api.repo_exists(repo_id)
    api.delete_repo(repo_id)
    assert not api.repo_exists(repo_id)
    ds = f"{name}/my-data"
    api.create_repo(ds, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id=ds, repo_type="dataset")
    assert api.repo_exists(ds, repo_type="dataset") and not api.repo_exists(ds)
    assert api.dataset_info(ds).id == ds
    path = hf_hub_download(
        ds, "data.csv", repo_type="dataset", endpoint=hub_server.url, token=token, cache_dir=tmp_path
    )
    assert open(path, "rb").read() == b"a,b\n1,2\n"
    assert [d.id for d in api.list_datasets(author=name)] == [ds]


def test_paths_info_move_and_tree_pagination(hub_server, owner):
    name, token, api = owner
    repo_id = api.create_repo(f"{name}/many").repo_id
    ops = [CommitOperationAdd(f"files/f{i:03d}.txt", io.BytesIO(b"%d" % i)) for i in range(150)]
    api.create_commit(repo_id, operations=ops, commit_message="150 files")
    # expand=True pages by 100 entries: the client must follow the Link header to see them all
    expanded = list(api.list_repo_tree(repo_id, path_in_repo="files", expand=True))
    assert [e.path for e in expanded] == [f"files/f{i:03d}.txt" for i in range(150)]
    assert all(e.last_commit.title == "150 files" for e in expanded)
    first = httpx.get(f"{hub_server.url}/api/models/{repo_id}/tree/main/files", params={"expand": "true"})
    assert len(first.json()) == 100 and 'rel="next"' in first.headers["link"]
    infos = api.get_paths_info(repo_id, ["files/f007.txt", "files", "does/not/exist"])
    assert sorted((type(i).__name__, i.path) for i in infos) == [
        ("RepoFile", "files/f007.txt"),
        ("RepoFolder", "files"),
    ]
    moved = f"{name}/renamed"
    api.move_repo(repo_id, moved)
    assert not api.repo_exists(repo_id) and api.repo_exists(moved)
    assert len(api.list_repo_files(moved)) == 151
