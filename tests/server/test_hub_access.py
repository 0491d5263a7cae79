"""Access rules: private repos are invisible (404) to those without access, read tokens cannot
write, wrong tokens are 401, organization members may write to the org's repos."""

from __future__ import annotations

import base64

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from fixtures.server import unique_name


@pytest.fixture(scope="module")
def people(hub_server):
    owner, stranger, member = unique_name("olga"), unique_name("sam"), unique_name("mia")
    tokens = {n: hub_server.create_user(n) for n in (owner, stranger, member)}
    org = unique_name("acme")
    hub_server.create_org(org, owner)
    hub_server.create_org(org, member)
    return {"owner": owner, "stranger": stranger, "member": member, "org": org, "tokens": tokens}


@pytest.fixture(scope="module")
def private_repo(hub_server, people):
    token = people["tokens"][people["owner"]]
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = f"{people['owner']}/secret"
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"classified", path_in_repo="plan.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"\x00\x01binary", path_in_repo="weights.bin", repo_id=repo_id)
    return repo_id


def _basic(token: str) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"user:{token}".encode()).decode()}


def _lfs_batch(url: str, repo_id: str, headers: dict) -> httpx.Response:
    body = {"operation": "download", "transfers": ["basic"], "objects": [{"oid": "0" * 64, "size": 1}]}
    return httpx.post(
        f"{url}/{repo_id}.git/info/lfs/objects/batch",
        json=body,
        headers={**headers, "accept": "application/vnd.git-lfs+json"},
    )


def test_private_repo_is_404_for_strangers_everywhere(hub_server, people, private_repo):
    url = hub_server.url
    stranger = people["tokens"][people["stranger"]]
    for token in (None, stranger):
        api = HfApi(endpoint=url, token=token if token else False)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info(private_repo)
        assert not api.repo_exists(private_repo)
        assert private_repo not in [m.id for m in api.list_models(author=people["owner"])]
        headers = {"authorization": f"Bearer {token}"} if token else {}
        for path in (
            f"/api/models/{private_repo}/tree/main",
            f"/api/models/{private_repo}/refs",
            f"/api/models/{private_repo}/commits/main",
            f"/api/models/{private_repo}/revision/main",
            f"/{private_repo}/resolve/main/plan.txt",
        ):
            r = httpx.get(url + path, headers=headers)
            assert r.status_code == 404, path
            assert r.headers["x-error-code"] == "RepoNotFound", path
        # ... and it answers exactly like a repo that does not exist
        ghost = httpx.get(f"{url}/{people['owner']}/ghost/resolve/main/plan.txt", headers=headers)
        assert ghost.status_code == 404 and ghost.headers["x-error-code"] == "RepoNotFound"
    # git and LFS with a stranger's credentials: 404 as well
    info_refs = httpx.get(
        f"{url}/{private_repo}.git/info/refs?service=git-upload-pack", headers=_basic(stranger)
    )
    assert info_refs.status_code == 404
    lfs = _lfs_batch(url, private_repo, _basic(stranger))
    assert lfs.status_code == 404 and lfs.headers["x-error-code"] == "RepoNotFound"
    # anonymous git/LFS calls are asked for credentials (git sends them only after a 401);
    # a missing repo answers the same, so nothing is revealed
    for repo_id in (private_repo, f"{people['owner']}/ghost"):
        r = httpx.get(f"{url}/{repo_id}.git/info/refs?service=git-upload-pack")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert _lfs_batch(url, repo_id, {}).status_code == 401


def test_private_repo_readable_by_owner(hub_server, people, private_repo, tmp_path):
    token = people["tokens"][people["owner"]]
    api = HfApi(endpoint=hub_server.url, token=token)
    assert api.model_info(private_repo).private is True
    path = hf_hub_download(private_repo, "plan.txt", endpoint=hub_server.url, token=token, cache_dir=tmp_path)
    assert open(path, "rb").read() == b"classified"
    r = httpx.get(
        f"{hub_server.url}/{private_repo}.git/info/refs?service=git-upload-pack", headers=_basic(token)
    )
    assert r.status_code == 200 and b"refs/heads/main" in r.content


def test_visibility_can_be_changed(hub_server, people):
    token = people["tokens"][people["owner"]]
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{people['owner']}/flip").repo_id
    anon = HfApi(endpoint=hub_server.url, token=False)
    assert anon.repo_exists(repo_id)
    api.update_repo_settings(repo_id, private=True)
    assert not anon.repo_exists(repo_id)
    api.update_repo_settings(repo_id, private=False)
    assert anon.repo_exists(repo_id)


def test_read_token_cannot_write(hub_server, people):
    owner = people["owner"]
    read = hub_server.create_token(owner, "read")
    api = HfApi(endpoint=hub_server.url, token=read)
    repo_id = f"{owner}/public-one"
    HfApi(endpoint=hub_server.url, token=people["tokens"][owner]).create_repo(repo_id)
    with pytest.raises(HfHubHTTPError) as info:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    assert info.value.response.status_code == 403
    assert "read-only" in info.value.response.json()["error"]
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(f"{owner}/another")
    assert info.value.response.status_code == 403
    assert api.list_repo_files(repo_id) == [".gitattributes"]  # reading still works


def test_wrong_token_is_401_everywhere(hub_server, people, private_repo):
    url = hub_server.url
    owner = people["owner"]
    public = HfApi(endpoint=url, token=people["tokens"][owner]).create_repo(f"{owner}/open").repo_id
    bad = {"authorization": "Bearer hv_wrong"}
    for method, path in (
        ("GET", "/api/whoami-v2"),
        ("GET", f"/api/models/{public}"),
        ("GET", "/api/models"),
        ("GET", f"/{public}/resolve/main/.gitattributes"),
        ("HEAD", f"/{public}/resolve/main/.gitattributes"),
        ("GET", f"/api/models/{private_repo}"),
    ):
        assert httpx.request(method, url + path, headers=bad).status_code == 401, path
    git = httpx.get(f"{url}/{public}.git/info/refs?service=git-upload-pack", headers=_basic("hv_wrong"))
    assert git.status_code == 401
    assert _lfs_batch(url, public, _basic("hv_wrong")).status_code == 401


def test_org_members_write_strangers_do_not(hub_server, people):
    org = people["org"]
    member = HfApi(endpoint=hub_server.url, token=people["tokens"][people["member"]])
    stranger = HfApi(endpoint=hub_server.url, token=people["tokens"][people["stranger"]])
    repo_id = member.create_repo(f"{org}/shared", private=True).repo_id
    member.upload_file(path_or_fileobj=b"by member", path_in_repo="m.txt", repo_id=repo_id)
    owner = HfApi(endpoint=hub_server.url, token=people["tokens"][people["owner"]])
    owner.upload_file(path_or_fileobj=b"by owner", path_in_repo="o.txt", repo_id=repo_id)
    assert {"m.txt", "o.txt"} <= set(owner.list_repo_files(repo_id))
    assert any(o["name"] == org for o in member.whoami()["orgs"])
    with pytest.raises(RepositoryNotFoundError):
        stranger.list_repo_files(repo_id)
    with pytest.raises(HfHubHTTPError) as info:
        stranger.create_repo(f"{org}/intrusion")
    assert info.value.response.status_code == 403
    public = member.create_repo(f"{org}/public").repo_id
    with pytest.raises(HfHubHTTPError) as info:
        stranger.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=public)
    assert info.value.response.status_code == 403
