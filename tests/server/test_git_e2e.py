"""git and git-lfs against a real `haven serve`: clone with LFS, push with LFS then read through
the API, the 10 MB non-LFS push policy, and private repos hidden from anonymous git."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi, hf_hub_download

from fixtures.server import unique_name

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or subprocess.run(["git", "lfs", "version"], capture_output=True).returncode,
    reason="needs git and git-lfs (`make system` installs them)",
)


@pytest.fixture(scope="module")
def account(hub_server, tmp_path_factory):
    user = unique_name("gitter")
    token = hub_server.create_user(user)
    home = tmp_path_factory.mktemp("git-home")
    env = {
        **os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": user, "GIT_AUTHOR_EMAIL": f"{user}@example.org",
        "GIT_COMMITTER_NAME": user, "GIT_COMMITTER_EMAIL": f"{user}@example.org", "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
    }
    env.pop("GIT_DIR", None)
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    api = HfApi(endpoint=hub_server.url, token=token)
    return user, token, env, api


def git(env: dict, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def remote(hub_server, repo_id: str, token: str | None, user: str = "x") -> str:
    parts = urlsplit(hub_server.url)
    auth = f"{user}:{token}@" if token else ""
    return f"{parts.scheme}://{auth}{parts.netloc}/{repo_id}.git"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_clone_with_lfs_then_push_lfs_file(hub_server, account, tmp_path):
    user, token, env, api = account
    repo_id = f"{user}/{unique_name('clone')}"
    api.create_repo(repo_id)
    weights = os.urandom(3 * 1024 * 1024 + 17)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b'{"model_type": "bert"}', path_in_repo="config.json", repo_id=repo_id)
    info = api.model_info(repo_id, files_metadata=True)
    assert {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings}["model.safetensors"] == sha256(weights)

    work = tmp_path / "clone"
    git(env, "clone", "-q", remote(hub_server, repo_id, token, user), str(work))
    assert (work / "model.safetensors").read_bytes() == weights  # smudged by git-lfs, not a pointer
    assert (work / "config.json").read_bytes() == b'{"model_type": "bert"}'
    assert git(env, "lfs", "ls-files", "--name-only", cwd=work).stdout.split() == ["model.safetensors"]
    assert git(env, "rev-parse", "HEAD", cwd=work).stdout.strip() == info.sha

    new = os.urandom(2 * 1024 * 1024 + 5)
    (work / "weights").mkdir()
    (work / "weights" / "extra.bin").write_bytes(new)  # *.bin is LFS-tracked by the default .gitattributes
    (work / "notes.md").write_text("pushed with git\n")
    git(env, "add", "-A", cwd=work)
    git(env, "commit", "-q", "-m", "Add extra weights with git", cwd=work)
    assert "weights/extra.bin" in git(env, "lfs", "ls-files", "--name-only", cwd=work).stdout
    git(env, "push", "-q", "origin", "main", cwd=work)
    head = git(env, "rev-parse", "HEAD", cwd=work).stdout.strip()

    # the API sees the push: revision, file list, LFS metadata, commit log, and the content
    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == head
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["weights/extra.bin"].lfs.sha256 == sha256(new)
    assert siblings["weights/extra.bin"].size == len(new)
    assert api.list_repo_commits(repo_id)[0].title == "Add extra weights with git"
    path = hf_hub_download(repo_id, "weights/extra.bin", endpoint=hub_server.url, token=token,
                           cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == new
    assert (hub_server.data_dir / "lfs" / "objects" / sha256(new)[:2] / sha256(new)[2:4] / sha256(new)).is_file()


def test_push_of_large_non_lfs_file_is_refused(hub_server, account, tmp_path):
    user, token, env, api = account
    repo_id = f"{user}/{unique_name('big')}"
    api.create_repo(repo_id)
    before = api.model_info(repo_id).sha
    work = tmp_path / "clone"
    git(env, "clone", "-q", remote(hub_server, repo_id, token, user), str(work))
    (work / "huge.txt").write_bytes(os.urandom(20 * 1024 * 1024))  # not matched by any LFS pattern
    git(env, "add", "huge.txt", cwd=work)
    git(env, "commit", "-q", "-m", "huge", cwd=work)
    result = git(env, "push", "origin", "main", cwd=work, check=False)
    assert result.returncode != 0
    assert "huge.txt is 21.0 MB" in result.stderr
    assert "must be stored with git-lfs" in result.stderr and "git lfs migrate import" in result.stderr
    assert api.model_info(repo_id).sha == before
    assert "huge.txt" not in api.list_repo_files(repo_id)


def test_private_repo_hidden_from_git(hub_server, account, tmp_path):
    user, token, env, api = account
    repo_id = f"{user}/{unique_name('secret')}"
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="secret.txt", repo_id=repo_id)
    # anonymous: asked for credentials (401), and git cannot prompt here
    anon = git(env, "clone", remote(hub_server, repo_id, None), str(tmp_path / "anon"), check=False)
    assert anon.returncode != 0 and not (tmp_path / "anon" / "secret.txt").exists()
    assert "could not read Username" in anon.stderr or "401" in anon.stderr or "Authentication" in anon.stderr
    # another signed-in user: the repo does not exist for them
    other = unique_name("outsider")
    other_token = hub_server.create_user(other)
    out = git(env, "clone", remote(hub_server, repo_id, other_token, other), str(tmp_path / "other"), check=False)
    assert out.returncode != 0 and "not found" in out.stderr.lower()
    # a wrong token is refused
    bad = git(env, "clone", remote(hub_server, repo_id, "hv_wrong", user), str(tmp_path / "bad"), check=False)
    assert bad.returncode != 0
    # the owner clones it
    git(env, "clone", "-q", remote(hub_server, repo_id, token, user), str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "secret.txt").read_bytes() == b"secret"


def test_dataset_repo_clone_and_push(hub_server, account, tmp_path):
    user, token, env, api = account
    repo_id = f"{user}/{unique_name('data')}"
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="train.csv", repo_id=repo_id, repo_type="dataset")
    parts = urlsplit(hub_server.url)
    url = f"{parts.scheme}://{user}:{token}@{parts.netloc}/datasets/{repo_id}"  # without .git, as the Hub shows it
    work = tmp_path / "ds"
    git(env, "clone", "-q", url, str(work))
    assert (work / "train.csv").read_bytes() == b"a,b\n1,2\n"
    (work / "test.csv").write_text("a,b\n3,4\n")
    git(env, "add", "test.csv", cwd=work)
    git(env, "commit", "-q", "-m", "test split", cwd=work)
    git(env, "push", "-q", "origin", "main", cwd=work)
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == [".gitattributes", "test.csv", "train.csv"]


BAD_CARD = "---\nlicense: mit\ntags: [unclosed\n---\n# Model\n"


def test_push_of_readme_with_invalid_metadata_is_refused_like_a_commit(hub_server, account, tmp_path):
    import base64
    import json

    import httpx

    user, token, env, api = account
    repo_id = f"{user}/{unique_name('card')}"
    api.create_repo(repo_id)
    before = api.model_info(repo_id).sha
    # the commit API refuses the file (a raw NDJSON commit, without the client's validate-yaml)
    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {"key": "file", "value": {"path": "README.md", "content": base64.b64encode(BAD_CARD.encode()).decode(),
                                  "encoding": "base64"}},
    ]
    r = httpx.post(
        f"{hub_server.url}/api/models/{repo_id}/commit/main",
        content="\n".join(json.dumps(line) for line in lines).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"},
    )
    assert r.status_code == 400
    message = r.json()["error"]
    assert message.startswith("README.md has invalid metadata")
    # validate-yaml (what the client asks before uploading a README) gives the same message
    v = httpx.post(f"{hub_server.url}/api/validate-yaml", json={"content": BAD_CARD, "repoType": "model"})
    assert v.status_code == 400 and v.json()["errors"][0]["message"] == message

    # git push of the same file: refused by the hook, with the same message
    work = tmp_path / "clone"
    git(env, "clone", "-q", remote(hub_server, repo_id, token, user), str(work))
    (work / "README.md").write_text(BAD_CARD)
    git(env, "add", "README.md", cwd=work)
    git(env, "commit", "-q", "-m", "bad card", cwd=work)
    result = git(env, "push", "origin", "main", cwd=work, check=False)
    assert result.returncode != 0
    shown = "\n".join(line.removeprefix("remote: ").rstrip() for line in result.stderr.splitlines())
    assert "Push rejected by the hub" in shown
    assert f"  - {message}" in shown
    assert api.model_info(repo_id).sha == before

    # a valid card pushes
    (work / "README.md").write_text("---\nlicense: mit\nlanguage: [fr]\n---\n# Model\n")
    git(env, "commit", "-q", "-a", "-m", "good card", cwd=work)
    git(env, "push", "-q", "origin", "main", cwd=work)
    assert api.model_info(repo_id).card_data.language == ["fr"]
