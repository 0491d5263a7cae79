"""The hub server answers the real huggingface_hub client: accounts and a first upload/download."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from fixtures.server import unique_name


@pytest.fixture(scope="module")
def alice(hub_server):
    name = unique_name("alice")
    return name, hub_server.create_user(name)


def test_whoami_reports_user_and_token_role(hub_server, alice):
    name, token = alice
    me = HfApi(endpoint=hub_server.url, token=token).whoami()
    assert me["name"] == name and me["type"] == "user"
    assert me["auth"]["accessToken"]["role"] == "write"
    read = hub_server.create_token(name, "read")
    assert HfApi(endpoint=hub_server.url, token=read).whoami()["auth"]["accessToken"]["role"] == "read"


def test_whoami_with_wrong_token_is_401(hub_server):
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(endpoint=hub_server.url, token="hv_not-a-real-token").whoami()
    assert info.value.response.status_code == 401


def test_create_repo_upload_and_download(hub_server, alice, tmp_path):
    name, token = alice
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = f"{name}/smoke"
    url = api.create_repo(repo_id)
    assert url == f"{hub_server.url}/{repo_id}"
    assert api.create_repo(repo_id, exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(repo_id)
    assert info.value.response.status_code == 409
    api.upload_file(path_or_fileobj=b"hello haven\n", path_in_repo="notes/hello.txt", repo_id=repo_id)
    path = hf_hub_download(
        repo_id, "notes/hello.txt", endpoint=hub_server.url, token=token, cache_dir=tmp_path
    )
    assert open(path, "rb").read() == b"hello haven\n"
