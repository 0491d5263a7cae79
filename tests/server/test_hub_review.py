"""Edge cases found in review: credentials in either half of Basic auth, bounded request bodies,
malformed numbers answered 400 (never 500), pagination links on the public URL."""

from __future__ import annotations

import base64

import httpx
import pytest
from huggingface_hub import HfApi

from fixtures.server import unique_name


@pytest.fixture(scope="module")
def ctx(hub_server):
    name = unique_name("rita")
    token = hub_server.create_user(name)
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/checked").repo_id
    return {"url": hub_server.url, "token": token, "name": name, "repo_id": repo_id, "api": api}


def _basic(user: str, password: str) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_token_in_either_half_of_basic_auth(ctx):
    url = f"{ctx['url']}/api/whoami-v2"
    for headers in (
        _basic("anyone", ctx["token"]),  # git's way: token as password
        _basic(ctx["token"], ""),  # token as user name, no password
        _basic(ctx["token"], "x-oauth-basic"),  # token as user name, placeholder password
    ):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["name"] == ctx["name"]
    assert httpx.get(url, headers=_basic("anyone", "hv_wrong")).status_code == 401


def test_json_bodies_are_bounded(ctx):
    """A JSON request far over the limit is refused with 413 instead of being read into memory."""
    auth = {"authorization": f"Bearer {ctx['token']}", "content-type": "application/json"}

    def huge():
        yield b'{"files": ["'
        for _ in range(20):  # 20 MB
            yield b"a" * (1 << 20)
        yield b'"]}'

    for path in (f"/api/models/{ctx['repo_id']}/preupload/main", f"/{ctx['repo_id']}.git/info/lfs/objects/batch"):
        r = httpx.post(f"{ctx['url']}{path}", content=huge(), headers=auth, timeout=60)
        assert r.status_code == 413, (path, r.text)


def test_other_bodies_are_bounded(ctx):
    """Routes whose JSON FastAPI parses (create repo ...) refuse huge bodies too, with or without
    a Content-Length."""
    auth = {"authorization": f"Bearer {ctx['token']}", "content-type": "application/json"}
    big = b'{"name": "' + b"a" * (20 << 20) + b'"}'
    r = httpx.post(f"{ctx['url']}/api/repos/create", content=big, headers=auth, timeout=60)
    assert r.status_code == 413, r.text[:200]

    def chunked():
        yield big[:1000]
        yield big[1000:]

    r = httpx.post(f"{ctx['url']}/api/repos/create", content=chunked(), headers=auth, timeout=60)
    assert r.status_code == 413, r.text[:200]


def test_bad_numbers_are_400(ctx):
    auth = {"authorization": f"Bearer {ctx['token']}"}
    r = httpx.post(
        f"{ctx['url']}/api/models/{ctx['repo_id']}/preupload/main",
        json={"files": [{"path": "a.txt", "sample": "", "size": "lots"}]},
        headers=auth,
    )
    assert r.status_code == 400 and "size" in r.json()["error"]
    r = httpx.get(f"{ctx['url']}/api/models/{ctx['repo_id']}/commits/main?p=x", headers=auth)
    assert r.status_code == 400 and "p=" in r.json()["error"]
    r = httpx.post(
        f"{ctx['url']}/api/models/{ctx['repo_id']}/paths-info/main",
        content=b"{not json",
        headers={**auth, "content-type": "application/json"},
    )
    assert r.status_code == 400


def test_next_page_links_use_the_public_url(ctx):
    """The Link header is built from --public-url, not from the Host the request came with."""
    api = ctx["api"]
    for i in range(3):
        api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"f{i}.txt", repo_id=ctx["repo_id"])
    r = httpx.get(
        f"{ctx['url']}/api/models/{ctx['repo_id']}/commits/main?limit=1",
        headers={"authorization": f"Bearer {ctx['token']}", "host": "evil.example:1"},
    )
    assert r.status_code == 200
    assert r.headers["link"].startswith(f"<{ctx['url']}/api/models/{ctx['repo_id']}/commits/main?")


def test_concurrent_commits_and_reads(ctx):
    """SQLite (WAL, busy timeout) under parallel commits and reads: no 'database is locked', no
    lost commit. 8 threads x 3 commits to one repo while listing it."""
    import threading

    api, repo_id, errors = ctx["api"], ctx["repo_id"], []

    def work(i: int) -> None:
        for j in range(3):
            try:
                api.upload_file(path_or_fileobj=f"{i}.{j}".encode(), path_in_repo=f"c/{i}-{j}.txt", repo_id=repo_id)
                api.model_info(repo_id)
                list(api.list_models(author=ctx["name"]))
            except Exception as err:  # collected: a thread's failure must fail the test
                errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = api.list_repo_files(repo_id)
    assert {f"c/{i}-{j}.txt" for i in range(8) for j in range(3)} <= set(files)
    assert len(api.list_repo_commits(repo_id)) >= 25


def test_database_committed_before_the_response(tmp_path):
    """When the client receives the answer to create_repo, the repo row is already committed
    (FastAPI's default scope for yield dependencies commits after the response is sent)."""
    import asyncio

    from haven.server import auth, db
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path / "data")
    settings.prepare()
    db.upgrade(settings.db_url)
    sm = db.make_sessionmaker(db.make_engine(settings.db_url))
    with sm() as session:
        auth.create_user(session, "cora")
        token = auth.create_token(session, "cora")
        session.commit()
    app = create_app(settings)
    seen_at_response: list = []

    async def probe(scope, receive, send):
        async def watching_send(message):
            if message["type"] == "http.response.start":
                with sm() as session:
                    seen_at_response.append(session.query(db.Repo).filter_by(name="fresh").count())
            await send(message)

        await app(scope, receive, watching_send)

    async def call():
        transport = httpx.ASGITransport(app=probe)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            return await client.post(
                "/api/repos/create", json={"name": "fresh"}, headers={"authorization": f"Bearer {token}"}
            )

    r = asyncio.run(call())
    assert r.status_code == 200, r.text
    assert seen_at_response == [1]
