"""A Xet token stops working as soon as the access it was issued for ends, not up to its 15
minutes later: the CAS checks the hub token and the repository's visibility on every request and
answers 401 (the client then asks the hub for a new token, which answers as it does everywhere)."""

from __future__ import annotations

import os

import httpx
import pytest
from sqlalchemy import delete, select

from fixtures.server import unique_name
from haven.server import auth
from haven.server.db import Token

from .test_refusals import Cas, make_shard, make_xorb, stored_xorbs, user_with_repo, xet_token


@pytest.fixture()
def dave(xet_hub):
    return user_with_repo(xet_hub, "dave", "shared")


def test_read_tokens_end_when_the_repository_turns_private(xet_hub, dave):
    _, token, repo = dave
    chunks = [os.urandom(20_000)]
    xorb, body = make_xorb(chunks)
    writer = Cas(xet_hub, xet_token(xet_hub, repo, token))
    assert writer("POST", f"/v1/xorbs/default/{xorb}", content=body).status_code == 200
    file_id, shard = make_shard(chunks, xorb)
    assert writer("POST", "/v1/shards", content=shard).status_code == 200

    outsider = xet_hub.create_user(unique_name("eve"))
    readers = [Cas(xet_hub, xet_token(xet_hub, repo, outsider, "read")),
               Cas(xet_hub, httpx.get(f"{xet_hub.url}/api/models/{repo}/xet-read-token/main"))]  # anonymous
    for reader in readers:
        assert reader("GET", f"/v1/reconstructions/{file_id}").status_code == 200
    r = httpx.put(f"{xet_hub.url}/api/models/{repo}/settings", json={"private": True},
                  headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == {"private": True}
    for reader in readers:
        r = reader("GET", f"/v1/reconstructions/{file_id}")
        assert r.status_code == 401 and "ended" in r.json()["error"]
        assert xet_token(xet_hub, repo, outsider, "read").status_code == 404  # what the refresh gets
    # the owner's own tokens still work
    assert Cas(xet_hub, xet_token(xet_hub, repo, token, "read"))("GET", f"/v1/reconstructions/{file_id}").status_code == 200


def test_write_tokens_end_when_the_hub_token_is_revoked(xet_hub, dave):
    user, _, repo = dave
    extra = xet_hub.create_token(user, "write")
    writer = Cas(xet_hub, xet_token(xet_hub, repo, extra))
    first, body = make_xorb([os.urandom(10_000)])
    assert writer("POST", f"/v1/xorbs/default/{first}", content=body).status_code == 200
    with xet_hub._sessionmaker()() as session:  # `haven admin` revoking it
        assert session.scalar(select(Token.id).where(Token.token_hash == auth.hash_token(extra)))
        session.execute(delete(Token).where(Token.token_hash == auth.hash_token(extra)))
        session.commit()
    second, body = make_xorb([os.urandom(10_000)])
    before = stored_xorbs(xet_hub)
    r = writer("POST", f"/v1/xorbs/default/{second}", content=body)
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert stored_xorbs(xet_hub) == before
