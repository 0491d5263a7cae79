"""The storage library's crash safety and bounds, as a running hub uses them: leftovers are settled
at start, a repo delete also clears a row whose git directory is gone, and LFS objects over the
configured limit are refused in the batch answer (issue 12: M4 and the LFS bounds)."""

from __future__ import annotations

import shutil

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from fixtures.server import start_server, stop_server, unique_name

LFS_JSON = "application/vnd.git-lfs+json"


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("small-hub")
    server = start_server(base, args=("--max-lfs-object", "1KB"))
    try:
        yield server, base
    finally:
        stop_server(server)


def _batch(server, token: str, repo_id: str, size: int) -> dict:
    r = httpx.post(
        f"{server.url}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": "a" * 64, "size": size}]},
        headers={"Authorization": f"Bearer {token}", "Accept": LFS_JSON, "Content-Type": LFS_JSON},
    )
    assert r.status_code == 200, r.text
    return r.json()["objects"][0]


def test_lfs_batch_refuses_objects_over_the_limit(small_hub):
    server, _ = small_hub
    user = unique_name("lfs-limit")
    token = server.create_user(user)
    repo_id = f"{user}/limited"
    HfApi(endpoint=server.url, token=token).create_repo(repo_id)
    over = _batch(server, token, repo_id, 1001)
    assert over["error"]["code"] == 413
    assert "1000 bytes" in over["error"]["message"] and "HAVEN_MAX_LFS_OBJECT" in over["error"]["message"]
    assert "actions" not in over
    assert "upload" in _batch(server, token, repo_id, 1000)["actions"]


def test_a_real_client_upload_over_the_limit_fails_and_commits_nothing(small_hub, tmp_path):
    server, _ = small_hub
    user = unique_name("lfs-limit")
    token = server.create_user(user)
    api = HfApi(endpoint=server.url, token=token)
    repo_id = api.create_repo(f"{user}/limited").repo_id
    big = tmp_path / "weights.bin"
    big.write_bytes(b"\0" * 4096)
    with pytest.raises(Exception, match="413|limit"):
        api.upload_file(path_or_fileobj=str(big), path_in_repo="weights.bin", repo_id=repo_id)
    assert "weights.bin" not in api.list_repo_files(repo_id)


def test_start_sweeps_leftover_uploads(tmp_path):
    server = start_server(tmp_path)
    stop_server(server)
    leftover = server.data_dir / "tmp" / "lfs-0123456789ab-partial"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"x" * 1000)
    again = start_server(tmp_path)
    try:
        assert not leftover.exists()
    finally:
        stop_server(again)


def test_delete_clears_a_row_whose_git_directory_is_gone(hub_server):
    """An older version could leave a repo listed with no git directory (a ghost): 404 on info and
    impossible to delete or create again. Deleting it now removes the row."""
    user = unique_name("ghost")
    token = hub_server.create_user(user)
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{user}/ghost").repo_id
    shutil.rmtree(hub_server.data_dir / "repos" / "models" / user / "ghost.git")
    api.delete_repo(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_id)
    assert repo_id not in [m.id for m in api.list_models(author=user)]
    api.create_repo(repo_id)  # the name is free again
    assert api.list_repo_files(repo_id) == [".gitattributes"]
