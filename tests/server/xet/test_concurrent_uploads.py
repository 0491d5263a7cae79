"""Many xorb uploads at once, as the default client sends them when it raises its upload
concurrency: each upload's body stops halfway until every one has started, so all are in flight
together. The hub used to hand each body to a worker of the event loop's default pool (a few
threads: CPUs + 4), and also needed one of those threads to pass each batch of bytes on, while
every streaming upload held a database connection: past that many uploads it hung until the
client gave up."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .test_refusals import Cas, make_xorb, user_with_repo, xet_token

UPLOADS = 40  # more than the default pool's threads (at most 32) and the database pool (15)


@pytest.fixture(scope="module")
def carol(xet_hub):
    _, token, repo = user_with_repo(xet_hub, "carol", "many")
    return token, repo


def test_many_xorb_uploads_at_once(xet_hub, carol):
    token, repo = carol
    cas = Cas(xet_hub, xet_token(xet_hub, repo, token))
    xorbs = [make_xorb([os.urandom(30_000), os.urandom(20_000)]) for _ in range(UPLOADS)]
    started = threading.Barrier(UPLOADS, timeout=60)

    def body(data: bytes):
        yield data[:10_000]
        started.wait()  # every upload is under way before any finishes
        yield data[10_000:]

    def upload(xorb: tuple[str, bytes]) -> httpx.Response:
        return cas("POST", f"/v1/xorbs/default/{xorb[0]}", content=body(xorb[1]), timeout=60)

    with ThreadPoolExecutor(UPLOADS) as pool:
        answers = list(pool.map(upload, xorbs))
    assert [(r.status_code, r.json()) for r in answers] == [(200, {"was_inserted": True})] * UPLOADS
    for h, data in xorbs:  # stored as sent
        assert int(cas("HEAD", f"/v1/xorbs/default/{h}").headers["content-length"]) == len(data)
