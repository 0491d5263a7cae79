"""What the Xet routes refuse, and that a refused upload stores nothing: outsiders, read tokens,
xorbs whose bytes do not match their hash, shards naming missing xorbs or carrying wrong
verification hashes or sha256s, and expired or tampered tokens and fetch URLs.

Xorbs and shards here are built by the test from the spec's formats (valid ones first, then each
broken in one way); the real client's own xorbs and shards are exercised in test_xet_client."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from fixtures.server import unique_name
from haven.server.xet import tokens
from haven.server.xet.hashing import chunk_hash, file_hash, from_hex, to_hex, verification_hash, xorb_hash
from haven.server.xet.shard import FileInfo, Term, build_shard
from haven.server.xet.xorb import encode_chunk, read_chunks


def make_xorb(chunks: list[bytes]) -> tuple[str, bytes]:
    return to_hex(xorb_hash([(chunk_hash(c), len(c)) for c in chunks])), b"".join(encode_chunk(c) for c in chunks)


def make_shard(chunks: list[bytes], xorb: str, *, verification: bytes | None = None, sha256: str | None = None):
    hashes = [chunk_hash(c) for c in chunks]
    data = b"".join(chunks)
    info = FileInfo(
        file_hash([(h, len(c)) for h, c in zip(hashes, chunks)]),
        [Term(from_hex(xorb), len(data), 0, len(chunks))],
        [verification or verification_hash(hashes)],
        from_hex(sha256 or hashlib.sha256(data).hexdigest()),
    )
    return to_hex(info.file_hash), build_shard([info], [])


def xet_token(hub, repo: str, token: str, kind: str = "write") -> httpx.Response:
    return httpx.get(f"{hub.url}/api/models/{repo}/xet-{kind}-token/main", headers={"authorization": f"Bearer {token}"})


class Cas:
    def __init__(self, hub, answer: httpx.Response):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert answer.headers["X-Xet-Access-Token"] == body["accessToken"]
        assert answer.headers["X-Xet-Cas-Url"] == body["casUrl"]
        assert int(answer.headers["X-Xet-Token-Expiration"]) == body["exp"]
        self.url, self.token = body["casUrl"], body["accessToken"]

    def __call__(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, **kw)


def user_with_repo(hub, prefix: str, name: str, private: bool = False) -> tuple[str, str, str]:
    """A new user (a unique name from `prefix`) owning a new model repo `name`: (user, token, repo id)."""
    user = unique_name(prefix)
    token = hub.create_user(user)
    r = httpx.post(f"{hub.url}/api/repos/create", json={"name": name, "private": private},
                   headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return user, token, f"{user}/{name}"


@pytest.fixture(scope="module")
def alice(xet_hub):
    return user_with_repo(xet_hub, "alice", "secret", private=True)


def stored_xorbs(hub) -> set[str]:
    """The names of every xorb and shard in the hub's (local) blob store."""
    root = hub.data_dir / "xet"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_outsiders_get_404_and_tokens_are_repo_scoped(xet_hub, alice):
    _, token, repo = alice
    chunks = [os.urandom(20_000), os.urandom(30_000)]
    xorb, body = make_xorb(chunks)
    cas = Cas(xet_hub, xet_token(xet_hub, repo, token))
    assert cas("POST", f"/v1/xorbs/default/{xorb}", content=body).json() == {"was_inserted": True}
    assert cas("POST", f"/v1/xorbs/default/{xorb}", content=body).json() == {"was_inserted": False}
    file_id, shard = make_shard(chunks, xorb)
    assert cas("POST", "/v1/shards", content=shard).status_code == 200
    recon = Cas(xet_hub, xet_token(xet_hub, repo, token, "read"))("GET", f"/v1/reconstructions/{file_id}").json()
    (fetch,) = recon["fetch_info"][xorb]
    got = httpx.get(fetch["url"], headers={"range": f"bytes={fetch['url_range']['start']}-{fetch['url_range']['end']}"})
    assert got.status_code == 206 and b"".join(read_chunks(got.content, 2)) == b"".join(chunks)

    # a byte range: only the chunks holding it, and where in them it starts
    reader = Cas(xet_hub, xet_token(xet_hub, repo, token, "read"))
    part = reader("GET", f"/v1/reconstructions/{file_id}", headers={"range": "bytes=25000-30000"}).json()
    assert [t["range"] for t in part["terms"]] == [{"start": 1, "end": 2}]
    assert part["offset_into_first_range"] == 25000 - len(chunks[0])
    (fetch,) = part["fetch_info"][xorb]
    got = httpx.get(fetch["url"], headers={"range": f"bytes={fetch['url_range']['start']}-{fetch['url_range']['end']}"})
    (second,) = read_chunks(got.content, 1)
    start = part["offset_into_first_range"]
    assert bytes(second[start : start + 5001]) == b"".join(chunks)[25000:30001]
    assert reader("GET", f"/v1/reconstructions/{file_id}", headers={"range": "bytes=50000-"}).status_code == 416

    # the same file named again with another sha256 (one of another repository's LFS objects, say)
    _, lying = make_shard(chunks, xorb, sha256="cd" * 32)
    r = cas("POST", "/v1/shards", content=lying)
    assert r.status_code == 400 and "sha256" in r.json()["error"]
    r = httpx.get(f"{xet_hub.url}/api/models/{repo}/xet-read-token/no-such-branch",
                  headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "RevisionNotFound"

    bob = unique_name("bob")
    bob_token = xet_hub.create_user(bob)
    for kind in ("read", "write"):
        assert xet_token(xet_hub, repo, bob_token, kind).status_code == 404
        assert httpx.get(f"{xet_hub.url}/api/models/{repo}/xet-{kind}-token/main").status_code in (401, 404)
    httpx.post(f"{xet_hub.url}/api/repos/create", json={"name": "own"}, headers={"authorization": f"Bearer {bob_token}"})
    bob_cas = Cas(xet_hub, xet_token(xet_hub, f"{bob}/own", bob_token, "read"))
    assert bob_cas("GET", f"/v1/reconstructions/{file_id}").status_code == 404  # not his repository's file
    assert httpx.get(f"{cas.url}/v1/reconstructions/{file_id}").status_code == 401  # no token at all


def test_read_tokens_cannot_write(xet_hub, alice):
    user, token, repo = alice
    reader = Cas(xet_hub, xet_token(xet_hub, repo, token, "read"))
    xorb, body = make_xorb([os.urandom(10_000)])
    before = stored_xorbs(xet_hub)
    assert reader("POST", f"/v1/xorbs/default/{xorb}", content=body).status_code == 403
    assert reader("POST", "/v1/shards", content=make_shard([b"x"], xorb)[1]).status_code == 403
    assert stored_xorbs(xet_hub) == before
    read_only = xet_hub.create_token(user, "read")
    assert xet_token(xet_hub, repo, read_only, "write").status_code == 403
    assert xet_token(xet_hub, repo, read_only, "read").status_code == 200


def test_bad_uploads_store_nothing(xet_hub, alice):
    _, token, repo = alice
    cas = Cas(xet_hub, xet_token(xet_hub, repo, token))
    chunks = [os.urandom(12_000), os.urandom(9_000)]
    xorb, body = make_xorb(chunks)
    before = stored_xorbs(xet_hub)

    # a xorb whose bytes do not match its hash
    other, _ = make_xorb([os.urandom(100)])
    r = cas("POST", f"/v1/xorbs/default/{other}", content=body)
    assert r.status_code == 400 and "hash to" in r.json()["error"]
    assert cas("HEAD", f"/v1/xorbs/default/{other}").status_code == 404
    assert stored_xorbs(xet_hub) == before

    # a shard naming a xorb the hub does not have
    file_id, shard = make_shard(chunks, xorb)
    r = cas("POST", "/v1/shards", content=shard)
    assert r.status_code == 400 and "not on this hub" in r.json()["error"]
    assert cas("GET", f"/v1/reconstructions/{file_id}").status_code == 404

    # with the xorb stored: a wrong verification hash, then a wrong sha256
    assert cas("POST", f"/v1/xorbs/default/{xorb}", content=body).status_code == 200
    _, shard = make_shard(chunks, xorb, verification=bytes(32))
    r = cas("POST", "/v1/shards", content=shard)
    assert r.status_code == 400 and "verification hash" in r.json()["error"]
    _, shard = make_shard(chunks, xorb, sha256="ab" * 32)
    r = cas("POST", "/v1/shards", content=shard)
    assert r.status_code == 400 and "sha256" in r.json()["error"]
    assert cas("GET", f"/v1/reconstructions/{file_id}").status_code == 404
    assert stored_xorbs(xet_hub) == before | {xorb}  # that xorb; no shard, no file

    r = cas("POST", "/v1/shards", content=b"not a shard at all, not at all, not at all, not at all")
    assert r.status_code == 400 and "magic" in r.json()["error"]


def test_expired_or_tampered_tokens_and_urls(xet_hub, alice):
    _, token, repo = alice
    cas = Cas(xet_hub, xet_token(xet_hub, repo, token))
    chunks = [os.urandom(15_000)]
    xorb, body = make_xorb(chunks)
    assert cas("POST", f"/v1/xorbs/default/{xorb}", content=body).status_code == 200
    file_id, shard = make_shard(chunks, xorb)
    assert cas("POST", "/v1/shards", content=shard).status_code == 200
    (fetch,) = cas("GET", f"/v1/reconstructions/{file_id}").json()["fetch_info"][xorb]
    url = urlsplit(fetch["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    base = f"{url.scheme}://{url.netloc}{url.path}"
    assert httpx.get(fetch["url"]).status_code == 206

    r = httpx.get(f"{fetch['url']}&extra=1")
    assert r.status_code == 400 and "unknown query parameter 'extra'" in r.json()["error"]
    tampered = {**query, "range": "0-99999"}  # a wider range under the same signature
    assert httpx.get(f"{base}?{urlencode(tampered)}").status_code == 403
    resigned = {**query, "sig": query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1")}
    assert httpx.get(f"{base}?{urlencode(resigned)}").status_code == 403
    secret = (xet_hub.data_dir / "secret").read_text().strip()
    lo, hi = fetch["url_range"]["start"], fetch["url_range"]["end"]
    expired = tokens.fetch_query(secret, xorb, lo, hi, ttl=-5)
    assert httpx.get(f"{base}?{expired}").status_code == 403
    r = httpx.get(fetch["url"], headers={"range": f"bytes={lo}-{hi + 10}"})  # outside the signed range
    assert r.status_code == 416

    expired_token = tokens.issue(secret, 1, "write", ttl=-5)
    r = httpx.get(f"{cas.url}/v1/reconstructions/{file_id}", headers={"authorization": f"Bearer {expired_token}"})
    assert r.status_code == 401 and "expired" in r.json()["error"]
    forged = cas.token[:-2] + ("00" if not cas.token.endswith("00") else "11")
    r = httpx.get(f"{cas.url}/v1/reconstructions/{file_id}", headers={"authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and "signature" in r.json()["error"]
