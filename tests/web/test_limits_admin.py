"""Limits a browser meets, and the admin's disable-user command:

- a web upload over the 16 MB body limit gets an HTML 413 page that says the limit and what to
  use instead, the API keeps its JSON 413, and nothing is committed (with a length, and chunked);
- sign-up is rate-limited per client address (429 with Retry-After, no account made);
- `haven admin disable-user NAME`: the user's API token is 401 at once, git is refused, their
  browser session is signed out; `enable-user` gives the same token back its access.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html import unescape

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from starlette.testclient import TestClient

from fixtures.server import unique_name
from haven.server.api.bodies import MAX_BODY
from haven.server.web.sessions import Limiter
from web.account_helpers import PASSWORD, browser, csrf_of, new_token, sign_up

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what chromium sends for a form


def _signed_up(hub_server, prefix: str) -> tuple[str, httpx.Client]:
    name = unique_name(prefix)
    client = browser(hub_server.url)
    assert sign_up(client, name).status_code == 303
    return name, client


def test_browser_upload_over_the_limit_is_an_html_page(hub_server):
    name, client = _signed_up(hub_server, "big-uploader")
    api = HfApi(endpoint=hub_server.url, token=new_token(client, "big", "write"))
    repo_id = api.create_repo(f"{name}/big").repo_id
    before = [c.commit_id for c in api.list_repo_commits(repo_id)]
    form = client.get(f"/{repo_id}/upload/main").text
    data = {"csrf": csrf_of(form), "message": "too big"}
    big = os.urandom(MAX_BODY + (1 << 20))
    r = client.post(f"/{repo_id}/upload/main", data=data, files=[("files", ("big.bin", big))],
                    headers={"Accept": HTML})
    assert r.status_code == 413 and r.headers["content-type"].startswith("text/html")
    text = unescape(r.text)
    assert f"{MAX_BODY >> 20} MB" in text and "haven upload" in text and "git" in text and "nothing was stored" in text

    def chunks():  # no Content-Length: the limit is found while the body streams
        yield b'--x\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n\r\n'
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    r = client.post(f"/{repo_id}/upload/main", content=chunks(),
                    headers={"Accept": HTML, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and r.headers["content-type"].startswith("text/html")
    # a client that asks for JSON (or any API route) keeps the JSON answer
    r = client.post(f"/{repo_id}/upload/main", content=big, headers={"Accept": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    r = httpx.post(f"{hub_server.url}/api/repos/create", content=big, headers={"Accept": HTML})
    assert r.status_code == 413 and "error" in r.json()
    assert [c.commit_id for c in api.list_repo_commits(repo_id)] == before
    assert "big.bin" not in api.list_repo_files(repo_id)


def test_signup_is_rate_limited_per_address(tmp_path, monkeypatch):
    monkeypatch.delenv("HAVEN_SIGNUP", raising=False)
    monkeypatch.delenv("HAVEN_DB_URL", raising=False)
    from haven.server import db
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path / "data")
    db.upgrade(settings.db_url)
    app = create_app(settings)
    app.state.signup_limiter = Limiter(limit=2, window=3600)  # the hub's is sessions.MAX_SIGNUPS per hour
    with TestClient(app, base_url=settings.public_url, follow_redirects=False) as client:
        for name in ("first", "second"):
            client.cookies.clear()
            assert sign_up(client, name).status_code == 303
        client.cookies.clear()
        r = sign_up(client, "third")
        assert r.status_code == 429 and 3500 < int(r.headers["retry-after"]) <= 3600
        assert "too many new accounts from this address" in unescape(r.text) and "60 minutes" in r.text
        assert client.post("/login", data={"name": "third", "password": PASSWORD,
                                           "csrf": csrf_of(client.get("/login").text, "/login")}).status_code == 401
    # a failed sign-up (passwords differ) is no new account: it does not count
    app2 = create_app(settings)
    app2.state.signup_limiter = Limiter(limit=1, window=3600)
    with TestClient(app2, base_url=settings.public_url, follow_redirects=False) as client:
        token = csrf_of(client.get("/join").text, "/join")
        r = client.post("/join", data={"name": "fourth", "password": PASSWORD, "password2": "other one!",
                                       "csrf": token})
        assert r.status_code == 400
        assert sign_up(client, "fourth").status_code == 303


def _admin(hub_server, *args: str) -> subprocess.CompletedProcess:
    db_args = ("--db-url", hub_server.db_url) if hub_server.db_url else ()
    return subprocess.run([sys.executable, "-m", "haven.cli", "admin", *args, "--data", str(hub_server.data_dir),
                           *db_args], capture_output=True, text=True, timeout=120)


def test_admin_disable_user_command(hub_server, tmp_path):
    name, client = _signed_up(hub_server, "cli-disabled")
    token = new_token(client, "laptop", "write")
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/{unique_name('kept')}", private=True).repo_id
    api.upload_file(path_or_fileobj=b"mine\n", path_in_repo="m.txt", repo_id=repo_id)
    assert client.get("/settings/tokens").status_code == 200

    done = _admin(hub_server, "disable-user", name)
    assert done.returncode == 0, done.stderr
    assert f"user {name} disabled" in done.stderr
    with pytest.raises(HfHubHTTPError) as caught:
        api.whoami()
    assert caught.value.response.status_code == 401 and "disabled" in caught.value.response.text
    r = client.get("/settings/tokens")  # the browser session is signed out
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    git = shutil.which("git")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    remote = hub_server.url.replace("http://", f"http://{name}:{token}@") + f"/{repo_id}"
    if git:
        refused = subprocess.run([git, "clone", remote, str(tmp_path / "c1")], env=env, capture_output=True,
                                 timeout=60, text=True)
        assert refused.returncode != 0 and ("401" in refused.stderr or "Authentication failed" in refused.stderr)

    done = _admin(hub_server, "enable-user", name)
    assert done.returncode == 0 and f"user {name} enabled" in done.stderr
    assert api.whoami()["name"] == name
    if git:
        cloned = subprocess.run([git, "clone", remote, str(tmp_path / "c2")], env=env, capture_output=True, timeout=60)
        assert cloned.returncode == 0 and (tmp_path / "c2" / "m.txt").read_bytes() == b"mine\n"
    missing = _admin(hub_server, "disable-user", unique_name("nobody"))
    assert missing.returncode == 1 and "no user" in missing.stderr and "create-user" in missing.stderr
