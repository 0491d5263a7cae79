"""Bad input is refused with a clear error and leaves the repository unchanged."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from fixtures.server import unique_name


@pytest.fixture(scope="module")
def ctx(hub_server):
    name = unique_name("dave")
    token = hub_server.create_user(name)
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = f"{name}/guarded"
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"keep me", path_in_repo="keep.txt", repo_id=repo_id)
    return {"url": hub_server.url, "token": token, "api": api, "repo_id": repo_id, "name": name}


def _head(ctx) -> str:
    return ctx["api"].model_info(ctx["repo_id"]).sha


def _commit(ctx, lines: list, raw: bytes | None = None) -> httpx.Response:
    body = raw if raw is not None else b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    return httpx.post(
        f"{ctx['url']}/api/models/{ctx['repo_id']}/commit/main",
        content=body,
        headers={"authorization": f"Bearer {ctx['token']}", "content-type": "application/x-ndjson"},
    )


def _file(path: str, data: bytes = b"x") -> dict:
    return {
        "key": "file",
        "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"},
    }


HEADER = {"key": "header", "value": {"summary": "try", "description": ""}}


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../b.txt", "/etc/passwd", ".git/config", "a//b.txt"])
def test_bad_paths_refused_repo_unchanged(ctx, path):
    before = _head(ctx)
    r = _commit(ctx, [HEADER, _file("fine.txt"), _file(path)])
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert _head(ctx) == before
    assert "fine.txt" not in ctx["api"].list_repo_files(ctx["repo_id"])


def test_malformed_ndjson_refused(ctx):
    before = _head(ctx)
    for raw in (
        b'{"key": "header", "value": {"summary": "x"}}\n{not json\n',
        b'{"key": "file", "value": {"path": "a.txt", "content": ""}}\n',  # no header first
        b'{"key": "header", "value": {"summary": "x"}}\n{"key": "explode", "value": {"path": "a"}}\n',
        b'{"key": "header", "value": {"summary": "x"}}\n{"key": "file", "value": {"path": "a.txt", "content": "%%%"}}\n',
        b"",
    ):
        r = _commit(ctx, [], raw=raw)
        assert r.status_code == 400, (raw, r.text)
        assert "error" in r.json()
    assert _head(ctx) == before


def test_stale_parent_commit_refused(ctx):
    api, repo_id = ctx["api"], ctx["repo_id"]
    old = _head(ctx)
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=repo_id)
    current = _head(ctx)
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(
            repo_id,
            operations=[CommitOperationAdd("two.txt", io.BytesIO(b"2"))],
            commit_message="based on an old head",
            parent_commit=old,
        )
    assert info.value.response.status_code in (409, 412)
    assert _head(ctx) == current
    assert "two.txt" not in api.list_repo_files(repo_id)


def test_wrong_lfs_sha256_refused(ctx):
    url, token, repo_id = ctx["url"], ctx["token"], ctx["repo_id"]
    data = b"real bytes of a weight file" * 100
    claimed = hashlib.sha256(b"something else").hexdigest()
    batch = httpx.post(
        f"{url}/{repo_id}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": claimed, "size": len(data)}],
        },
        headers={"authorization": f"Bearer {token}", "accept": "application/vnd.git-lfs+json"},
    )
    assert batch.status_code == 200
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    put = httpx.put(href, content=data)  # no auth header, as the client does
    assert put.status_code == 400 and "sha256" in put.json()["error"].lower()
    before = _head(ctx)
    r = _commit(
        ctx,
        [
            HEADER,
            {
                "key": "lfsFile",
                "value": {"path": "w.bin", "algo": "sha256", "oid": claimed, "size": len(data)},
            },
        ],
    )
    assert r.status_code == 422, r.text
    assert _head(ctx) == before
    # a tampered or unsigned upload link is refused
    assert httpx.put(href.replace("sig=", "sig=0"), content=data).status_code == 403
    assert httpx.put(f"{url}/api/lfs/objects/{claimed}/{len(data)}", content=data).status_code == 403


def test_right_lfs_upload_then_commit(ctx):
    """Control for the test above: the same steps with the true sha256 succeed."""
    url, token, repo_id = ctx["url"], ctx["token"], ctx["repo_id"]
    data = b"real bytes of a weight file" * 100
    oid = hashlib.sha256(data).hexdigest()
    batch = httpx.post(
        f"{url}/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]},
        headers={"authorization": f"Bearer {token}"},
    ).json()
    actions = batch["objects"][0]["actions"]
    assert httpx.put(actions["upload"]["href"], content=data).status_code == 200
    verify = httpx.post(
        actions["verify"]["href"],
        json={"oid": oid, "size": len(data)},
        headers={"authorization": f"Bearer {token}"},
    )
    assert verify.status_code == 200
    r = _commit(
        ctx,
        [
            HEADER,
            {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
        ],
    )
    assert r.status_code == 200, r.text
    assert r.json()["commitUrl"].endswith(r.json()["commitOid"])
    got = httpx.get(f"{url}/{repo_id}/resolve/main/w.bin", headers={"authorization": f"Bearer {token}"})
    assert got.content == data


@pytest.mark.parametrize("name", ["bad name", "a--b", "x..y", "-lead", "model.git", "a" * 97, "sp@ce"])
def test_invalid_repo_names_refused(ctx, name):
    r = httpx.post(
        f"{ctx['url']}/api/repos/create",
        json={"name": name, "type": "model"},
        headers={"authorization": f"Bearer {ctx['token']}"},
    )
    assert r.status_code == 400, (name, r.text)
    assert "invalid repository id" in r.json()["error"]
    assert name not in [m.id.split("/")[1] for m in ctx["api"].list_models(author=ctx["name"])]


def test_unknown_repo_and_branch_errors(ctx):
    api, repo_id = ctx["api"], ctx["repo_id"]
    with pytest.raises(HfHubHTTPError) as info:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, revision="nope")
    assert info.value.response.status_code == 404
    r = httpx.get(
        f"{ctx['url']}/api/models/{ctx['name']}/missing", headers={"authorization": f"Bearer {ctx['token']}"}
    )
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    r = httpx.post(
        f"{ctx['url']}/{repo_id}.git/info/lfs/locks/verify",
        json={},
        headers={"authorization": f"Bearer {ctx['token']}"},
    )
    assert r.status_code == 501
