"""Review R1: the Xet token routes refuse unknown query parameters like the CAS routes, and a
re-upload of a stored xorb is held to the same size limit as a new one (it was read to the end,
however long the client kept sending)."""

from __future__ import annotations

import os

import httpx
import pytest

from .test_refusals import Cas, make_xorb, user_with_repo, xet_token


@pytest.fixture(scope="module")
def bob(xet_hub):
    _, token, repo = user_with_repo(xet_hub, "bob", "public")
    return token, repo


@pytest.mark.parametrize("kind", ["read", "write"])
def test_token_routes_refuse_unknown_query_parameters(xet_hub, bob, kind):
    token, repo = bob
    r = httpx.get(f"{xet_hub.url}/api/models/{repo}/xet-{kind}-token/main?create_pr=1",
                  headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 400, r.text
    assert "create_pr" in r.json()["error"] and "takes none" in r.json()["error"]
    assert xet_token(xet_hub, repo, token, kind).status_code == 200


def test_reupload_of_a_stored_xorb_is_bounded(xet_hub, bob):
    token, repo = bob
    xorb, body = make_xorb([os.urandom(10_000)])
    cas = Cas(xet_hub, xet_token(xet_hub, repo, token))
    assert cas("POST", f"/v1/xorbs/default/{xorb}", content=body).json() == {"was_inserted": True}
    assert cas("POST", f"/v1/xorbs/default/{xorb}", content=body).json() == {"was_inserted": False}

    def endless():
        for _ in range(80):  # 80 MiB: past the 65 MiB a xorb (and its footer) may take
            yield bytes(1 << 20)

    try:
        r = cas("POST", f"/v1/xorbs/default/{xorb}", content=endless(), timeout=60)
    except httpx.HTTPError:  # the server may close the connection while the client still sends
        return  # it stopped reading: bounded (the old code read all 80 MiB and answered 200)
    assert r.status_code == 413, r.text
    assert "64 MiB" in r.json()["error"]
