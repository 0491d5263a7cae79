"""A hub started with `--no-signup`: /join is refused, an admin creates the user with
`haven admin create-user NAME --password-stdin`, and sign-in is rate-limited (10 failures per 15
minutes per address and per user name -> 429). Its own server, so the shared hub's address
keeps a clean failure count. Also: Secure cookies when the public URL is https, and the limiter."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from starlette.testclient import TestClient

from fixtures.server import start_server, stop_server, unique_name
from haven.server import db
from haven.server.settings import Settings, SettingsError
from haven.server.web.sessions import Limiter
from web.account_helpers import PASSWORD, browser, csrf_of, sign_in


@pytest.fixture(scope="module")
def closed_hub(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("closed-hub"), args=("--no-signup",))
    try:
        yield server
    finally:
        stop_server(server)


def test_no_signup_and_an_admin_made_user(closed_hub):
    r = httpx.get(f"{closed_hub.url}/join")
    assert r.status_code == 403 and "sign-up is turned off" in r.text and "--password-stdin" in r.text
    r = httpx.post(f"{closed_hub.url}/join", data={"name": "x", "password": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 403
    assert 'href="/join"' not in httpx.get(f"{closed_hub.url}/login").text
    name = unique_name("admin-made")
    made = subprocess.run(
        [sys.executable, "-m", "haven.cli", "admin", "create-user", name, "--password-stdin", "--data",
         str(closed_hub.data_dir)], input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr
    client = browser(closed_hub.url)
    r = sign_in(client, name)
    assert r.status_code == 303 and f'class="me" href="/{name}"' in client.get("/").text


def test_sign_in_is_rate_limited(closed_hub):
    name = unique_name("target")
    subprocess.run(
        [sys.executable, "-m", "haven.cli", "admin", "create-user", name, "--password-stdin", "--data",
         str(closed_hub.data_dir)], input=PASSWORD, capture_output=True, text=True, timeout=120, check=True,
    )
    client = browser(closed_hub.url)
    for _ in range(10):
        assert sign_in(client, name, "wrong password").status_code == 401
    r = sign_in(client, name)  # the right password, but the account is locked for now
    assert r.status_code == 429 and "too many failed sign-ins" in r.text and "15 minutes" in r.text
    assert 800 < int(r.headers["retry-after"]) <= 900
    assert "haven_session" not in client.cookies
    other = unique_name("bystander")  # the same address is limited too, whatever the name
    assert sign_in(browser(closed_hub.url), other).status_code == 429


def test_limiter_counts_per_key_in_a_sliding_window():
    limiter = Limiter(limit=3, window=0.5)
    limiter.hit(["ip:a", "user:x"])
    limiter.hit(["ip:a", "user:y"])
    assert limiter.wait(["ip:a"]) == 0
    limiter.hit(["ip:a", "user:x"])
    assert limiter.wait(["ip:a", "user:z"]) > 0  # the address has three failures
    assert limiter.wait(["ip:b", "user:x"]) == 0  # user x has two
    time.sleep(0.6)
    assert limiter.wait(["ip:a"]) == 0  # the window moved on


def test_cookies_are_secure_behind_https(tmp_path, monkeypatch):
    monkeypatch.delenv("HAVEN_SIGNUP", raising=False)
    settings = Settings.load(data_dir=tmp_path / "data", public_url="https://hub.example")
    db.upgrade(settings.db_url)
    from haven.server.app import create_app

    with TestClient(create_app(settings), base_url="https://hub.example") as client:
        r = client.get("/join")
        assert "Secure" in r.headers["set-cookie"]
        token = csrf_of(r.text, "/join")
        r = client.post("/join", data={"name": "sam", "password": PASSWORD, "password2": PASSWORD, "csrf": token},
                        follow_redirects=False)
        cookie = [c for c in r.headers.get_list("set-cookie") if c.startswith("haven_session=")][0]
        assert r.status_code == 303 and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_signup_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("HAVEN_SIGNUP", "0")
    assert Settings.load(data_dir=tmp_path).signup is False
    assert Settings.load(data_dir=tmp_path, signup=True).signup is True  # the flag wins
    monkeypatch.setenv("HAVEN_SIGNUP", "maybe")
    with pytest.raises(SettingsError, match="HAVEN_SIGNUP='maybe' is not a yes/no value"):
        Settings.load(data_dir=tmp_path)
    monkeypatch.delenv("HAVEN_SIGNUP")
    assert Settings.load(data_dir=tmp_path).signup is True


