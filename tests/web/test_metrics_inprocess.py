"""The Metrics tab on a hub whose Python lacks `tensorboard`: the page says so (200, not a 500),
served in-process (Starlette's TestClient over `create_app`, inference off). And the inference
widget is absent on a hub started without the inference API."""

from __future__ import annotations

import base64
import json
import sys

import pytest

from haven.server.web import tensorboard


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from haven.server import auth, db
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path_factory.mktemp("hub"), inference=False)
    settings.prepare()
    db.upgrade(settings.db_url)
    app = create_app(settings)
    with app.state.sessionmaker() as session:
        auth.create_user(session, "tb")
        token = auth.create_token(session, "tb", "write")
        session.commit()
    with TestClient(app, base_url=settings.public_url) as c:
        headers = {"authorization": f"Bearer {token}"}
        assert c.post("/api/repos/create", json={"name": "runs", "type": "model"}, headers=headers).status_code == 200
        files = {"runs/a/events.out.tfevents.1.host": b"\x00" * 16,
                 "README.md": b"---\npipeline_tag: fill-mask\n---\n# runs\n"}
        lines = [{"key": "header", "value": {"summary": "add", "description": ""}}] + [
            {"key": "file", "value": {"path": path, "encoding": "base64", "content": base64.b64encode(data).decode()}}
            for path, data in files.items()
        ]
        r = c.post("/api/models/tb/runs/commit/main", content="\n".join(json.dumps(x) for x in lines),
                   headers={**headers, "content-type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        yield c


def test_without_tensorboard_the_page_says_so(client, monkeypatch):
    tensorboard.CACHE.clear()
    tensorboard.PAGES.clear()
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard...` now fails
    r = client.get("/tb/runs/tensorboard")
    assert r.status_code == 200
    assert "TensorBoard&#39;s reader is not installed on this hub" in r.text
    assert "<code>runs/a</code>" in r.text  # the runs are still named
    monkeypatch.delitem(sys.modules, "tensorboard")
    r = client.get("/tb/runs/tensorboard")  # the failure was not cached: with the package, the file is read
    assert "not installed" not in r.text and "runs/a/events.out.tfevents.1.host" in r.text


def test_no_widget_without_the_inference_api(client):
    html = client.get("/tb/runs").text
    assert 'href="/tb/runs/tensorboard"' in html
    assert "widget" not in html  # a fill-mask model, but this hub runs no inference API
