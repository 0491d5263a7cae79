"""Accounts on the web pages, through httpx against the live hub: sign-up, sign-in, sign-out,
password change, CSRF on every form, the tokens page (a revoked token is refused at once by
huggingface_hub and by `git clone`), the like button, and cookies that never authorise the API."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html import unescape

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from fixtures.server import unique_name
from web.account_helpers import PASSWORD, browser, csrf_of, new_token, sign_in, sign_up


@pytest.fixture(scope="module")
def member(hub_server):
    """A user who signed up through /join, with the browser client that did it."""
    name = unique_name("joiner")
    client = browser(hub_server.url)
    r = sign_up(client, name)
    assert r.status_code == 303 and r.headers["location"] == "/"
    yield name, client
    client.close()


def test_sign_up_starts_a_session_with_safe_cookies(hub_server, member):
    name, client = member
    anon = browser(hub_server.url)
    r = anon.get("/join")
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=lax" in r.headers["set-cookie"]
    other = unique_name("joiner")
    r = sign_up(anon, other)
    cookie = [c for c in r.headers.get_list("set-cookie") if c.startswith("haven_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # http hub
    assert "Max-Age=2592000" in cookie
    home = anon.get("/").text
    assert f'class="me" href="/{other}"' in home and 'action="/logout"' in home and "Your repositories" in home
    # the session id is stored hashed, never as sent
    sid = anon.cookies["haven_session"]
    with hub_server._sessionmaker()() as session:
        from sqlalchemy import text

        stored = session.execute(text("SELECT id_hash FROM sessions")).scalars().all()
    assert sid not in stored and len(stored) >= 2
    # a taken name, a short password and differing passwords are said plainly
    for data, message in (
        ({"name": other, "password": PASSWORD, "password2": PASSWORD}, "already taken"),
        ({"name": unique_name("x"), "password": "short", "password2": "short"}, "too short"),
        ({"name": unique_name("x"), "password": PASSWORD, "password2": PASSWORD + "!"}, "differ"),
        ({"name": "settings", "password": PASSWORD, "password2": PASSWORD}, "reserved"),
        ({"name": "bad name!", "password": PASSWORD, "password2": PASSWORD}, "invalid user name"),
    ):
        fresh = browser(hub_server.url)
        data["csrf"] = csrf_of(fresh.get("/join").text, "/join")
        r = fresh.post("/join", data=data)
        assert r.status_code == 400 and message in unescape(r.text), data
        assert "haven_session" not in fresh.cookies


def test_every_form_needs_its_csrf_token(hub_server, member):
    name, client = member
    anon = browser(hub_server.url)
    anon.get("/login")  # has the double-submit cookie, but sends no token
    r = anon.post("/login", data={"name": name, "password": PASSWORD})
    assert r.status_code == 403 and "reload the page" in r.text
    r = browser(hub_server.url).post("/join", data={"name": unique_name("x"), "password": PASSWORD,
                                                     "password2": PASSWORD, "csrf": "x" * 64})
    assert r.status_code == 403  # no cookie at all
    # a signed-in user's forms: none works without the session's token, or with another session's
    stranger = browser(hub_server.url)
    sign_up(stranger, unique_name("stranger"))
    foreign = csrf_of(stranger.get("/settings/tokens").text, "/settings/tokens")
    for path, data in (
        ("/settings/tokens", {"name": "t", "role": "read"}),
        ("/settings/password", {"current": PASSWORD, "password": "x" * 10, "password2": "x" * 10}),
        ("/logout", {}),
    ):
        for token in ("", foreign):
            r = client.post(path, data={**data, "csrf": token})
            assert r.status_code == 403, (path, token)
    assert client.get("/settings/tokens").status_code == 200  # still signed in, nothing changed


def test_sign_in_sign_out_and_where_to_go_next(hub_server, member):
    name, _ = member
    client = browser(hub_server.url)
    r = sign_in(client, name, "wrong password")
    assert r.status_code == 401 and "wrong user name or password" in r.text
    r = sign_in(client, unique_name("nobody"))
    assert r.status_code == 401 and "wrong user name or password" in r.text  # no hint which was wrong
    r = sign_in(client, name, next_="//evil.example/x")
    assert r.status_code == 303 and r.headers["location"] == "/"
    client = browser(hub_server.url)
    assert client.get("/settings/tokens").headers["location"] == "/login?next=/settings/tokens"
    r = sign_in(client, name, next_="/settings/tokens")
    assert r.headers["location"] == "/settings/tokens"
    page = client.get("/settings/tokens").text
    sid = client.cookies["haven_session"]
    r = client.post("/logout", data={"csrf": csrf_of(page, "/logout")})
    assert r.status_code == 303 and 'haven_session=""' in r.headers["set-cookie"]
    home = client.get("/").text
    assert 'href="/login"' in home and "Your repositories" not in home
    # the old cookie is dead on the server too
    r = httpx.get(f"{hub_server.url}/settings/tokens", cookies={"haven_session": sid})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_password_change_ends_other_sessions(hub_server):
    name = unique_name("changer")
    first, second = browser(hub_server.url), browser(hub_server.url)
    sign_up(first, name)
    sign_in(second, name)
    page = first.get("/settings/password").text
    bad = first.post("/settings/password", data={"current": "not it at all", "password": "n" * 12,
                                                 "password2": "n" * 12, "csrf": csrf_of(page, "/settings/password")})
    assert bad.status_code == 400 and "current password is wrong" in bad.text
    r = first.post("/settings/password", data={"current": PASSWORD, "password": "new password 1",
                                               "password2": "new password 1", "csrf": csrf_of(page, "/settings/password")})
    assert r.status_code == 200 and "Password changed" in r.text
    assert first.get("/settings/tokens").status_code == 200  # this browser stays signed in
    assert second.get("/settings/tokens").status_code == 303  # the other one was signed out
    assert sign_in(browser(hub_server.url), name).status_code == 401
    assert sign_in(browser(hub_server.url), name, "new password 1").status_code == 303


def test_tokens_page_create_list_use_and_revoke(hub_server, member, tmp_path):
    name, client = member
    write = new_token(client, "laptop", "write")
    read = new_token(client, "reader", "read")
    page = client.get("/settings/tokens").text
    assert write not in page and read not in page  # shown once
    rows = re.findall(r'<td class="token-name">([^<]*)</td><td>(read|write)</td>.*?<td class="last-used">(.*?)</td>',
                      page, re.S)
    assert {(n, role) for n, role, _ in rows} >= {("laptop", "write"), ("reader", "read")}
    assert all("never" in used for n, _, used in rows if n in ("laptop", "reader"))

    api = HfApi(endpoint=hub_server.url, token=write)
    me = api.whoami()
    assert me["name"] == name and me["auth"]["accessToken"] == {"displayName": "laptop", "role": "write"}
    repo_id = api.create_repo(f"{name}/{unique_name('private')}", private=True).repo_id
    api.upload_file(path_or_fileobj=b"hello\n", path_in_repo="hello.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as caught:  # the read token reads, but may not write
        HfApi(endpoint=hub_server.url, token=read).create_repo(f"{name}/{unique_name('nope')}")
    assert caught.value.response.status_code == 403
    page = client.get("/settings/tokens").text
    used = dict((n, u) for n, _, u in re.findall(
        r'<td class="token-name">([^<]*)</td><td>(read|write)</td>.*?<td class="last-used">(.*?)</td>', page, re.S))
    assert "just now" in used["laptop"] and "just now" in used["reader"]

    git = shutil.which("git")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    remote = hub_server.url.replace("http://", f"http://{name}:{write}@") + f"/{repo_id}"
    if git:
        done = subprocess.run([git, "clone", remote, str(tmp_path / "before")], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0 and (tmp_path / "before" / "hello.txt").read_bytes() == b"hello\n"

    token_id = re.search(r'action="/settings/tokens/(\d+)/revoke"[^>]*>\s*<input type="hidden" name="csrf" '
                         r'value="[^"]*">\s*<button[^>]*aria-label="Revoke the token laptop"', page).group(1)
    r = client.post(f"/settings/tokens/{token_id}/revoke", data={"csrf": csrf_of(page, "/settings/tokens")})
    assert r.status_code == 303 and "laptop" not in client.get("/settings/tokens").text
    with pytest.raises(HfHubHTTPError) as caught:
        api.whoami()
    assert caught.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as caught:
        api.upload_file(path_or_fileobj=b"again\n", path_in_repo="again.txt", repo_id=repo_id)
    assert caught.value.response.status_code == 401
    if git:
        done = subprocess.run([git, "clone", remote, str(tmp_path / "after")], env=env, capture_output=True,
                              timeout=60, text=True)
        assert done.returncode != 0 and not (tmp_path / "after" / "hello.txt").exists()
        assert "401" in done.stderr or "Authentication failed" in done.stderr
    # revoking someone else's token (or one already gone) is a 404
    r = client.post(f"/settings/tokens/{token_id}/revoke", data={"csrf": csrf_of(client.get('/settings/tokens').text, "/logout")})
    assert r.status_code == 404


def test_token_form_refuses_bad_input(member):
    _, client = member
    csrf = csrf_of(client.get("/settings/tokens").text, "/settings/tokens")
    r = client.post("/settings/tokens", data={"name": "", "role": "write", "csrf": csrf})
    assert r.status_code == 400 and "name of 1 to 100" in r.text
    r = client.post("/settings/tokens", data={"name": "x", "role": "admin", "csrf": csrf})
    assert r.status_code == 400 and "read or write" in r.text


def test_cookies_never_authorise_the_api(hub_server, member):
    name, client = member
    cookies = {"haven_session": client.cookies["haven_session"]}
    r = httpx.get(f"{hub_server.url}/api/whoami-v2", cookies=cookies)
    assert r.status_code == 401
    r = httpx.post(f"{hub_server.url}/api/repos/create", json={"name": "via-cookie"}, cookies=cookies)
    assert r.status_code == 401
    assert not HfApi(endpoint=hub_server.url).repo_exists(f"{name}/via-cookie")


def test_like_button(hub_server, member, site):
    name, client = member
    repo = f"/{site.owner}/tiny-bert"
    before = HfApi(endpoint=hub_server.url).model_info(f"{site.owner}/tiny-bert").likes
    page = client.get(repo).text
    assert 'name="action" value="like"' in page
    assert client.post(f"{repo}/like", data={"action": "like", "csrf": ""}).status_code == 403
    r = client.post(f"{repo}/like", data={"action": "like", "csrf": csrf_of(page, f"{repo}/like")})
    assert r.status_code == 303 and r.headers["location"] == repo
    page = client.get(repo).text
    assert re.search(r'aria-pressed="true">\s*<span aria-hidden="true">♥</span> Liked <span class="like-count">'
                     rf'{before + 1}</span>', page)
    assert HfApi(endpoint=hub_server.url).model_info(f"{site.owner}/tiny-bert").likes == before + 1
    assert f"{site.owner}/tiny-bert" in HfApi(endpoint=hub_server.url).list_liked_repos(name).models
    r = client.post(f"{repo}/like", data={"action": "unlike", "csrf": csrf_of(page, f"{repo}/like")})
    assert HfApi(endpoint=hub_server.url).model_info(f"{site.owner}/tiny-bert").likes == before
    # signed out: a link to sign in; a POST is refused; a private repo stays 404
    anon = httpx.get(f"{hub_server.url}{repo}").text
    assert f'href="/login?next=/{site.owner}/tiny-bert"' in anon
    assert httpx.post(f"{hub_server.url}{repo}/like", data={"action": "like"}).status_code == 401
    secret = f"/{site.owner}/secret-model"
    r = client.post(f"{secret}/like", data={"action": "like", "csrf": csrf_of(page, f"{repo}/like")})
    assert r.status_code == 404


def test_replaced_and_expired_sessions(hub_server):
    first, second = unique_name("switch"), unique_name("switch")
    client = browser(hub_server.url)
    sign_up(client, first)
    sign_up(browser(hub_server.url), second)
    old = client.cookies["haven_session"]
    assert sign_in(client, second).status_code == 303  # signing in as someone else ends the first session
    assert httpx.get(f"{hub_server.url}/settings/tokens", cookies={"haven_session": old}).status_code == 303
    assert f'class="me" href="/{second}"' in client.get("/").text
    from sqlalchemy import text

    with hub_server._sessionmaker()() as session:  # 30 days pass
        session.execute(text("UPDATE sessions SET expires_at = '2000-01-01 00:00:00' WHERE user_id = "
                             "(SELECT id FROM users WHERE name = :n)"), {"n": second})
        session.commit()
    r = client.get("/settings/tokens")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert 'href="/login"' in client.get("/").text
    sign_in(browser(hub_server.url), second)  # a new session; expired ones are forgotten
    with hub_server._sessionmaker()() as session:
        left = session.execute(text("SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id "
                                    "WHERE u.name = :n"), {"n": second}).scalar()
    assert left == 1  # only the new one: the two expired rows are gone
