"""The client against a server that lies: names from the network (tree listings, ETags, revisions)
must never place a file outside the cache or `local_dir`. The "server" is an in-process
`httpx.MockTransport`, so these tests need no hub and take milliseconds."""

from __future__ import annotations

import hashlib
import json
import os

import httpx
import pytest

from haven.errors import HubError
from haven.hub.client import HubClient

COMMIT = "a" * 40
BODY = b"hostile bytes\n"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _client(tmp_path, *, names: list[str], etag: str | None = None) -> HubClient:
    """A client whose every request is answered by a fake hub listing `names` at COMMIT."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/api/models/") and "/revision/" in path:
            siblings = [{"rfilename": n} for n in names]
            return httpx.Response(200, json={"id": "evil/repo", "sha": COMMIT, "siblings": siblings})
        if "/resolve/" in path:
            headers = {
                "x-repo-commit": COMMIT,
                "etag": f'"{etag or _git_sha1(BODY)}"',
                "content-length": str(len(BODY)),
            }
            body = httpx.ByteStream(b"" if request.method == "HEAD" else BODY)  # streamed, as over a socket
            return httpx.Response(200, headers=headers, stream=body)
        return httpx.Response(404, json={"error": "no"}, headers={"x-error-code": "RepoNotFound"})

    client = HubClient("http://hostile.test", token="hv_secret_token_value", cache_dir=tmp_path / "cache")
    client.session.http = httpx.Client(transport=httpx.MockTransport(handler))
    return client


def _files_under(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


@pytest.mark.parametrize("bad", ["../escaped.txt", "a/../../escaped.txt", "/etc/escaped.txt", "a\\..\\..\\x"])
def test_tree_listing_with_paths_outside_the_folder_is_refused(tmp_path, bad):
    client = _client(tmp_path, names=["config.json", bad])
    with pytest.raises(HubError, match="outside the download folder"):
        client.snapshot_download("evil/repo", local_dir=tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out").exists()  # refused before anything was written
    snapshots = tmp_path / "cache" / "models--evil--repo" / "snapshots"
    assert not snapshots.exists() or _files_under(snapshots) == set()


@pytest.mark.parametrize("etag", ["../../../escaped", "..", "a/b", ".hidden"])
def test_etag_that_is_not_a_file_name_is_refused(tmp_path, etag):
    client = _client(tmp_path, names=["config.json"], etag=etag)
    with pytest.raises(HubError, match="ETag"):
        client.hf_hub_download("evil/repo", "config.json")
    assert _files_under(tmp_path) <= {"cache/models--evil--repo/refs/main"}


def test_a_sane_fake_hub_works(tmp_path):
    """The same fake hub with honest answers downloads fine (so the refusals above are meaningful)."""
    client = _client(tmp_path, names=["config.json", "sub/x.json"])
    folder = client.snapshot_download("evil/repo", local_dir=tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "x.json").read_bytes() == BODY
    assert folder == str(tmp_path / "out")


@pytest.mark.parametrize("revision", ["../../../../escaped", "a/../../b", "refs//x", "a\\b"])
def test_revision_that_is_not_a_ref_name_is_refused_before_any_request(tmp_path, revision):
    client = _client(tmp_path, names=["config.json"])
    for call in (
        lambda: client.hf_hub_download("evil/repo", "config.json", revision=revision),
        lambda: client.snapshot_download("evil/repo", revision=revision),
    ):
        with pytest.raises(ValueError, match="invalid revision"):
            call()
    assert client.stats["requests"] == 0
    assert not (tmp_path / "escaped").exists()


def test_revision_with_a_slash_is_a_nested_ref(tmp_path):
    client = _client(tmp_path, names=["config.json"])
    client.hf_hub_download("evil/repo", "config.json", revision="refs/pr/1")
    ref = tmp_path / "cache" / "models--evil--repo" / "refs" / "refs" / "pr" / "1"
    assert ref.read_text() == COMMIT  # the layout huggingface_hub uses for such revisions


def test_token_never_shows_in_reprs_or_errors(tmp_path):
    client = _client(tmp_path, names=[])
    assert "hv_secret_token_value" not in repr(client)
    with pytest.raises(HubError) as info:
        client.repo_info("evil/other")
    assert "hv_secret_token_value" not in str(info.value) and "hv_secret" not in json.dumps(info.value.args)


def test_token_is_sent_to_the_endpoint_only(tmp_path):
    """A next-page link (or an LFS action) naming another host gets no Authorization header."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.host == "hub.test":
            return httpx.Response(200, json=[{"id": "a/one"}], headers={"link": '<http://evil.test/page2>; rel="next"'})
        return httpx.Response(200, json=[{"id": "a/two"}])

    client = HubClient("http://hub.test", token="hv_secret_token_value", cache_dir=tmp_path)
    client.session.http = httpx.Client(transport=httpx.MockTransport(handler))
    assert [m.id for m in client.list_models()] == ["a/one", "a/two"]
    assert seen == [("hub.test", "Bearer hv_secret_token_value"), ("evil.test", None)]
