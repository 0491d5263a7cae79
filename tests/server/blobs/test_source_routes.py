"""An object source behind the HTTP routes (an in-process hub): an LFS file whose bytes only a
source produces (as Xet files are) commits as a pointer and is served by resolve (with Range) and by
the LFS batch API's download link, streamed from the source; nothing is copied into the store."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from fastapi.testclient import TestClient

from server.blobs.test_lfs_store import DictSource

LFS_JSON = "application/vnd.git-lfs+json"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from haven.server import auth, db
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path_factory.mktemp("sources") / "data")
    settings.prepare()
    db.upgrade(settings.db_url)
    app = create_app(settings)
    with app.state.sessionmaker() as session:
        auth.create_user(session, "sol")
        token = auth.create_token(session, "sol", "write")
        session.commit()
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["authorization"] = f"Bearer {token}"
        yield app, client


def test_a_file_only_a_source_has_is_committed_and_served(hub):
    from haven.server import db
    from haven.server.api import lfsrefs

    app, client = hub
    data = os.urandom(3 << 20)
    oid = hashlib.sha256(data).hexdigest()
    app.state.lfs.add_source(DictSource(data))
    assert client.post("/api/repos/create", json={"name": "src", "type": "model"}).status_code == 200
    with app.state.sessionmaker() as session:  # what the source's own upload route does for its repo
        pk = session.query(db.Repo).filter_by(namespace="sol", name="src").one().id
        lfsrefs.grant(session, pk, [oid])
        session.commit()
    lines = [
        {"key": "header", "value": {"summary": "weights from a source"}},
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
    ]
    r = client.post("/api/models/sol/src/commit/main", content="\n".join(map(json.dumps, lines)),
                    headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text

    whole = client.get("/sol/src/resolve/main/w.bin")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["x-linked-etag"].strip('"') == oid and int(whole.headers["content-length"]) == len(data)
    part = client.get("/sol/src/resolve/main/w.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = client.get("/sol/src/resolve/main/w.bin", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    bad = client.get("/sol/src/resolve/main/w.bin", headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"

    batch = client.post(
        "/sol/src.git/info/lfs/objects/batch", headers={"accept": LFS_JSON},
        json={"operation": "download", "objects": [{"oid": oid, "size": len(data)}]},
    )
    href = batch.json()["objects"][0]["actions"]["download"]["href"]
    got = client.get(href.removeprefix(app.state.settings.public_url))
    assert got.status_code == 200 and got.content == data
    assert not app.state.lfs.holds(oid)  # served from the source, never copied into the store
