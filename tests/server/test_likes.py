"""Likes through the real huggingface_hub client (`unlike`, `list_liked_repos`, `list_repo_likers`,
`model_info().likes`, `list_models(sort="likes")`) against a live hub. huggingface_hub 2.4 has no
`like()` (the public Hub refuses likes from scripts), so the like itself is the documented
`POST /api/models/{id}/like` sent with httpx and a write token."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from fixtures.server import unique_name


@pytest.fixture(scope="module")
def people(hub_server):
    owner, fan, other = unique_name("liked"), unique_name("fan"), unique_name("fan2")
    tokens = {name: hub_server.create_user(name) for name in (owner, fan, other)}
    api = HfApi(endpoint=hub_server.url, token=tokens[owner])
    api.create_repo(f"{owner}/popular")
    api.create_repo(f"{owner}/quiet")
    api.create_repo(f"{owner}/words", repo_type="dataset")
    api.create_repo(f"{owner}/hidden", private=True)
    return hub_server, owner, fan, other, tokens


def like(server, token: str | None, repo_id: str, plural: str = "models", method: str = "POST") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{server.url}/api/{plural}/{repo_id}/like", headers=headers)


def test_like_unlike_and_the_lists_through_the_client(people):
    server, owner, fan, other, tokens = people
    fan_api = HfApi(endpoint=server.url, token=tokens[fan])
    popular, quiet = f"{owner}/popular", f"{owner}/quiet"
    for who in (fan, other):
        assert like(server, tokens[who], popular).status_code == 200
    r = like(server, tokens[fan], popular)  # twice: still one like
    assert r.status_code == 200 and r.json() == {"liked": True, "likes": 2}
    assert like(server, tokens[fan], f"{owner}/words", "datasets").status_code == 200

    assert fan_api.model_info(popular).likes == 2
    assert fan_api.dataset_info(f"{owner}/words").likes == 1
    liked = fan_api.list_liked_repos()  # defaults to the caller (whoami)
    assert liked.user == fan and liked.models == [popular] and liked.datasets == [f"{owner}/words"]
    assert liked.total == 2 and liked.spaces == []
    assert sorted(u.username for u in fan_api.list_repo_likers(popular)) == sorted([fan, other])
    # lists sort by likes
    ranked = [m.id for m in fan_api.list_models(author=owner, sort="likes")]
    assert ranked.index(popular) < ranked.index(quiet)
    assert next(iter(fan_api.list_models(author=owner, sort="likes", limit=1))).likes == 2

    fan_api.unlike(popular)
    fan_api.unlike(popular)  # unliking what is not liked changes nothing
    assert fan_api.model_info(popular).likes == 1
    assert HfApi(endpoint=server.url).list_liked_repos(fan).models == []  # public list, no token needed
    fan_api.unlike(f"{owner}/words", repo_type="dataset")
    assert fan_api.dataset_info(f"{owner}/words").likes == 0


def test_private_repos_stay_hidden(people):
    server, owner, fan, _, tokens = people
    hidden = f"{owner}/hidden"
    assert like(server, tokens[owner], hidden).status_code == 200
    r = like(server, tokens[fan], hidden)
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=server.url, token=tokens[fan]).unlike(hidden)
    with pytest.raises(RepositoryNotFoundError):
        list(HfApi(endpoint=server.url, token=tokens[fan]).list_repo_likers(hidden))
    assert hidden not in HfApi(endpoint=server.url, token=tokens[fan]).list_liked_repos(owner).models
    assert hidden not in HfApi(endpoint=server.url).list_liked_repos(owner).models
    assert HfApi(endpoint=server.url, token=tokens[owner]).list_liked_repos(owner).models == [hidden]
    # the count a lister sees never reveals the private repo either
    assert hidden not in [m.id for m in HfApi(endpoint=server.url, token=tokens[fan]).list_models(author=owner)]


def test_likes_need_a_write_token(people):
    server, owner, fan, _, _ = people
    r = like(server, None, f"{owner}/quiet")
    assert r.status_code == 401 and "token" in r.json()["error"]
    read = server.create_token(fan, "read")
    r = like(server, read, f"{owner}/quiet")
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    with pytest.raises(HfHubHTTPError) as caught:
        HfApi(endpoint=server.url, token=read).unlike(f"{owner}/quiet")
    assert caught.value.response.status_code == 403
    assert HfApi(endpoint=server.url).model_info(f"{owner}/quiet").likes == 0


def test_unknown_user_missing_repo_and_spaces(people):
    server, owner, fan, _, tokens = people
    with pytest.raises(HfHubHTTPError) as caught:
        HfApi(endpoint=server.url).list_liked_repos(unique_name("nobody"))
    assert caught.value.response.status_code == 404 and "no user named" in str(caught.value)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=server.url, token=tokens[fan]).unlike(f"{owner}/missing")
    r = like(server, tokens[fan], f"{owner}/quiet", "spaces")
    assert r.status_code == 501 and "Spaces are not supported" in r.json()["error"]


def test_a_deleted_repo_leaves_no_like_behind(people):
    server, owner, fan, _, tokens = people
    api = HfApi(endpoint=server.url, token=tokens[owner])
    repo_id = api.create_repo(f"{owner}/{unique_name('shortlived')}").repo_id
    assert like(server, tokens[fan], repo_id).status_code == 200
    assert repo_id in HfApi(endpoint=server.url).list_liked_repos(fan).models
    api.delete_repo(repo_id)
    assert repo_id not in HfApi(endpoint=server.url).list_liked_repos(fan).models
    api.create_repo(repo_id)  # a new repository under the old name starts at zero
    assert api.model_info(repo_id).likes == 0
