"""git and git-lfs through the API's smart-HTTP and LFS routes (auth, body streaming, re-index)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from huggingface_hub import HfApi, hf_hub_download

from fixtures.server import unique_name

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None
    or subprocess.run(["git", "lfs", "version"], capture_output=True).returncode != 0,
    reason="needs git and git-lfs (make system)",
)


@pytest.fixture(scope="module")
def git_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("git-home")
    env = {**os.environ, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("GIT_CONFIG_GLOBAL", None)
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    for key, value in (
        ("user.name", "Tester"),
        ("user.email", "t@example.org"),
        ("init.defaultBranch", "main"),
    ):
        subprocess.run(["git", "config", "--global", key, value], env=env, check=True)
    return env


def _git(env, *args, cwd=None, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_clone_push_lfs_and_reindex(hub_server, git_env, tmp_path):
    name = unique_name("gus")
    token = hub_server.create_user(name)
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/via-git", private=True).repo_id
    weights = os.urandom(300_000)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_id)
    remote = hub_server.url.replace("http://", f"http://{name}:{token}@") + f"/{repo_id}"

    _git(git_env, "clone", remote, str(tmp_path / "c"))
    work = tmp_path / "c"
    assert (work / "model.safetensors").read_bytes() == weights  # LFS content, not the pointer

    new = os.urandom(120_000)
    (work / "extra.bin").write_bytes(new)
    (work / "README.md").write_text("---\nlicense: mit\npipeline_tag: fill-mask\n---\n")
    _git(git_env, "add", ".", cwd=work)
    _git(git_env, "commit", "-m", "push over git", cwd=work)
    _git(git_env, "push", "origin", "main", cwd=work)
    head = _git(git_env, "rev-parse", "HEAD", cwd=work).stdout.strip()

    # the index was refreshed by the push (listing reads the index, it does not re-read git)
    [listed] = api.list_models(author=name)
    assert listed.sha == head and listed.pipeline_tag == "fill-mask" and "license:mit" in listed.tags
    tree = {e.path: e for e in api.list_repo_tree(repo_id)}
    assert tree["extra.bin"].lfs is not None and tree["extra.bin"].size == len(new)
    path = hf_hub_download(
        repo_id, "extra.bin", endpoint=hub_server.url, token=token, cache_dir=tmp_path / "hf"
    )
    assert open(path, "rb").read() == new
    assert [c.title for c in api.list_repo_commits(repo_id)][0] == "push over git"


def test_push_needs_a_write_token(hub_server, git_env, tmp_path):
    name = unique_name("ivy")
    token = hub_server.create_user(name)
    read = hub_server.create_token(name, "read")
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/ro").repo_id
    remote = hub_server.url.replace("http://", f"http://{name}:{read}@") + f"/{repo_id}"
    _git(git_env, "clone", remote, str(tmp_path / "c"))
    work = tmp_path / "c"
    (work / "a.txt").write_text("a")
    _git(git_env, "add", ".", cwd=work)
    _git(git_env, "commit", "-m", "nope", cwd=work)
    pushed = _git(git_env, "push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr or "read-only" in pushed.stderr
    assert api.list_repo_files(repo_id) == [".gitattributes"]
