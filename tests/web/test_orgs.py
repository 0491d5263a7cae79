"""Organisations on the web pages and the admin's user list, through httpx with signed-in sessions
against the live hub; access checked with the real huggingface_hub client and git:
- found an org (its creator is its admin), add members by name with roles admin/write/read,
  change a role, remove a member, leave; the last admin cannot leave, be removed or be demoted;
- a write member uploads to the org's repo, a read member downloads a private org repo but may
  not upload, a removed member gets 404;
- a site admin disables a user: their token is 401 on the API and git, their sessions end and
  signing in gives no session; their repos stay; enabling them again restores the token.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html import unescape

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from fixtures.server import unique_name
from web.account_helpers import PASSWORD, browser, csrf_of, new_token, sign_in, sign_up


def _user(hub_server, prefix: str) -> tuple[str, httpx.Client]:
    name = unique_name(prefix)
    client = browser(hub_server.url)
    assert sign_up(client, name).status_code == 303
    return name, client


def _members(client: httpx.Client, org: str) -> dict[str, str]:
    r = client.get(f"/organizations/{org}/settings/members")
    assert r.status_code == 200, r.text
    rows = re.findall(r'<td class="member-name"><a href="[^"]*">([^<]*)</a>.*?<td class="member-role">(\w+)</td>',
                      r.text, re.S)
    return dict(rows)


def _post(client: httpx.Client, path: str, form_page: str, action: str, **data) -> httpx.Response:
    csrf = csrf_of(client.get(form_page).text, action)
    return client.post(path, data={**data, "csrf": csrf})


def _add(client: httpx.Client, org: str, name: str, role: str) -> httpx.Response:
    members = f"/organizations/{org}/settings/members"
    return _post(client, members, members, members, name=name, role=role)


def _remove(client: httpx.Client, org: str, name: str) -> httpx.Response:
    members = f"/organizations/{org}/settings/members"
    action = f"{members}/{name}/remove"
    csrf = csrf_of(client.get(members).text, members)
    return client.post(action, data={"csrf": csrf})


def _leave(client: httpx.Client, org: str) -> httpx.Response:
    members = f"/organizations/{org}/settings/members"
    return _post(client, f"/organizations/{org}/leave", members, f"/organizations/{org}/leave")


def _found(client: httpx.Client, org: str) -> httpx.Response:
    return _post(client, "/organizations/new", "/organizations/new", "/organizations/new", name=org,
                 fullname="The <b>Org</b>")


def test_found_an_org_and_manage_members(hub_server):
    founder, fc = _user(hub_server, "founder")
    writer, wc = _user(hub_server, "writer")
    reader, rc = _user(hub_server, "reader")
    org = unique_name("org")

    r = browser(hub_server.url).get("/organizations/new")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/organizations/new"
    r = _found(fc, org)
    assert r.status_code == 303 and r.headers["location"] == f"/organizations/{org}/settings/members"
    assert _members(fc, org) == {founder: "admin"}
    page = fc.get(f"/organizations/{org}/settings/members").text
    assert "The &lt;b&gt;Org&lt;/b&gt;" in page and "<b>Org</b>" not in page  # escaped
    # whoami-v2 (what huggingface_hub reads) names the org and the role
    me = HfApi(endpoint=hub_server.url, token=new_token(fc, "t", "read")).whoami()
    assert {"name": org, "roleInOrg": "admin"}.items() <= next(o for o in me["orgs"] if o["name"] == org).items()

    # a taken name, a user's name, a reserved one
    for name, message in ((org, "already taken"), (writer, "already taken"), ("settings", "reserved")):
        r = _found(fc, name)
        assert r.status_code == 400 and message in unescape(r.text), name

    # add by name; an unknown user and a bad role are said plainly
    assert _add(fc, org, writer, "write").status_code == 303
    assert _add(fc, org, reader, "read").status_code == 303
    assert _members(fc, org) == {founder: "admin", writer: "write", reader: "read"}
    r = _add(fc, org, "nobody-" + org, "write")
    assert r.status_code == 400 and "no user named" in unescape(r.text)
    r = _add(fc, org, writer, "owner")
    assert r.status_code == 400 and "invalid role 'owner'" in unescape(r.text)

    # members see the page; only admins manage; outsiders are refused
    assert _members(rc, org)[founder] == "admin"
    manage_form = f'action="/organizations/{org}/settings/members" method="post"'
    assert manage_form not in rc.get(f"/organizations/{org}/settings/members").text
    assert manage_form in fc.get(f"/organizations/{org}/settings/members").text
    r = rc.post(f"/organizations/{org}/settings/members", data={
        "name": reader, "role": "admin", "csrf": csrf_of(rc.get("/settings/tokens").text, "/settings/tokens")})
    assert r.status_code == 403 and "only admins" in unescape(r.text)
    assert _members(fc, org)[reader] == "read"
    outsider, oc = _user(hub_server, "outsider")
    assert oc.get(f"/organizations/{org}/settings/members").status_code == 403
    assert browser(hub_server.url).get(f"/organizations/{org}/settings/members").status_code == 303
    assert fc.get(f"/organizations/{unique_name('none')}/settings/members").status_code == 404

    # the last admin cannot be demoted, removed or leave
    for response in (_add(fc, org, founder, "write"), _remove(fc, org, founder), _leave(fc, org)):
        assert response.status_code == 400 and "last admin" in unescape(response.text)
    assert _members(fc, org)[founder] == "admin"
    # with a second admin, the first may leave
    assert _add(fc, org, writer, "admin").status_code == 303
    assert _leave(fc, org).status_code == 303
    assert founder not in _members(wc, org)
    assert fc.get(f"/organizations/{org}/settings/members").status_code == 403
    # an admin removes a member; a read member leaves on their own
    assert _add(wc, org, founder, "read").status_code == 303
    assert _remove(wc, org, founder).status_code == 303
    assert _leave(rc, org).status_code == 303
    assert _members(wc, org) == {writer: "admin"}


def test_every_org_form_needs_its_csrf_token(hub_server):
    founder, fc = _user(hub_server, "founder")
    org = unique_name("org")
    assert _found(fc, org).status_code == 303
    other, oc = _user(hub_server, "other")
    foreign = csrf_of(oc.get("/settings/tokens").text, "/settings/tokens")
    members = f"/organizations/{org}/settings/members"
    for path, data in (
        ("/organizations/new", {"name": unique_name("org")}),
        (members, {"name": other, "role": "write"}),
        (f"{members}/{founder}/remove", {}),
        (f"/organizations/{org}/leave", {}),
        (f"/admin/users/{other}/disable", {}),
    ):
        for csrf in (None, foreign):
            r = fc.post(path, data=data if csrf is None else {**data, "csrf": csrf})
            assert r.status_code == 403 and "reload the page" in r.text, (path, csrf)
    assert _members(fc, org) == {founder: "admin"}


def test_org_roles_decide_access_with_huggingface_hub(hub_server, tmp_path):
    founder, fc = _user(hub_server, "founder")
    writer, wc = _user(hub_server, "writer")
    reader, rc = _user(hub_server, "reader")
    org = unique_name("org")
    assert _found(fc, org).status_code == 303
    assert _add(fc, org, writer, "write").status_code == 303
    assert _add(fc, org, reader, "read").status_code == 303
    wtok, rtok = new_token(wc, "w", "write"), new_token(rc, "r", "write")  # the reader's token may write

    writer_api = HfApi(endpoint=hub_server.url, token=wtok)
    repo_id = writer_api.create_repo(f"{org}/{unique_name('secret')}", private=True).repo_id
    writer_api.upload_file(path_or_fileobj=b"weights\n", path_in_repo="w.txt", repo_id=repo_id)

    # a read member downloads the private repo, but may not upload nor create in the org
    got = hf_hub_download(repo_id, "w.txt", endpoint=hub_server.url, token=rtok, cache_dir=tmp_path / "c1")
    assert open(got, "rb").read() == b"weights\n"
    reader_api = HfApi(endpoint=hub_server.url, token=rtok)
    with pytest.raises(HfHubHTTPError) as caught:
        reader_api.upload_file(path_or_fileobj=b"x\n", path_in_repo="x.txt", repo_id=repo_id)
    assert caught.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as caught:
        reader_api.create_repo(f"{org}/{unique_name('nope')}")
    assert caught.value.response.status_code == 403
    # the private org repo is on the org's profile for members, never for others
    assert repo_id in rc.get(f"/{org}").text
    outsider, oc = _user(hub_server, "outsider")
    assert repo_id not in oc.get(f"/{org}").text and oc.get(f"/{repo_id}").status_code == 404
    assert repo_id not in oc.get("/models", params={"search": repo_id.split("/")[1]}).text
    assert repo_id in rc.get("/models", params={"search": repo_id.split("/")[1]}).text
    # the org's admin writes too
    admin_api = HfApi(endpoint=hub_server.url, token=new_token(fc, "a", "write"))
    admin_api.upload_file(path_or_fileobj=b"a\n", path_in_repo="a.txt", repo_id=repo_id)

    # promoted to write, the reader uploads; removed, they get 404 on the API and the page
    assert _add(fc, org, reader, "write").status_code == 303
    reader_api.upload_file(path_or_fileobj=b"x\n", path_in_repo="x.txt", repo_id=repo_id)
    assert _remove(fc, org, reader).status_code == 303
    with pytest.raises(RepositoryNotFoundError):
        reader_api.model_info(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "w.txt", endpoint=hub_server.url, token=rtok, cache_dir=tmp_path / "c2")
    assert rc.get(f"/{repo_id}").status_code == 404 and repo_id not in rc.get(f"/{org}").text


def _admin(hub_server) -> tuple[str, httpx.Client]:
    from haven.server import auth

    name = unique_name("root")
    hub_server.create_user(name, admin=True)
    with hub_server._sessionmaker()() as session:
        from sqlalchemy import select

        from haven.server.db import User

        auth.set_password(session, session.scalar(select(User).where(User.name == name)), PASSWORD)
        session.commit()
    client = browser(hub_server.url)
    assert sign_in(client, name).status_code == 303
    return name, client


def test_admin_disables_a_user(hub_server, tmp_path):
    admin, ac = _admin(hub_server)
    victim, vc = _user(hub_server, "victim")
    token = new_token(vc, "laptop", "write")
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{victim}/{unique_name('kept')}").repo_id
    api.upload_file(path_or_fileobj=b"kept\n", path_in_repo="k.txt", repo_id=repo_id)
    private_id = api.create_repo(f"{victim}/{unique_name('mine')}", private=True).repo_id  # git sends the
    api.upload_file(path_or_fileobj=b"mine\n", path_in_repo="m.txt", repo_id=private_id)  # token after a 401

    # only site admins see the list, and the link to it in the header
    assert 'href="/admin/users"' in ac.get("/").text and 'href="/admin/users"' not in vc.get("/").text
    assert vc.get("/admin/users").status_code == 403
    assert browser(hub_server.url).get("/admin/users").status_code == 303
    page = ac.get("/admin/users")
    assert page.status_code == 200 and f'action="/admin/users/{victim}/disable"' in page.text
    assert f'action="/admin/users/{admin}/disable"' not in page.text  # not oneself
    r = vc.post(f"/admin/users/{admin}/disable", data={"csrf": csrf_of(vc.get("/settings/tokens").text)})
    assert r.status_code == 403

    r = _post(ac, f"/admin/users/{victim}/disable", "/admin/users", f"/admin/users/{victim}/disable")
    assert r.status_code == 303
    assert re.search(rf'{victim}</a>.*?<td class="user-status">disabled</td>', ac.get("/admin/users").text, re.S)
    # the token is 401 on the API and on git
    with pytest.raises(HfHubHTTPError) as caught:
        api.whoami()
    assert caught.value.response.status_code == 401 and "disabled" in caught.value.response.text
    git = shutil.which("git")
    if git:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
        remote = hub_server.url.replace("http://", f"http://{victim}:{token}@") + f"/{private_id}"
        done = subprocess.run([git, "clone", remote, str(tmp_path / "clone")], env=env, capture_output=True,
                              timeout=60, text=True)
        assert done.returncode != 0 and ("401" in done.stderr or "Authentication failed" in done.stderr)
    # the open browser session ended, and signing in again gives no session
    r = vc.get("/settings/tokens")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    again = browser(hub_server.url)
    r = sign_in(again, victim)  # the right password: refused with the reason, no session
    assert r.status_code == 403 and "this account is disabled" in r.text
    assert again.get("/settings/tokens").status_code == 303
    assert 'class="me"' not in again.get("/").text
    # their public repo stays, readable by anyone
    assert HfApi(endpoint=hub_server.url).model_info(repo_id).id == repo_id
    assert httpx.get(f"{hub_server.url}/{repo_id}/resolve/main/k.txt", follow_redirects=True).content == b"kept\n"

    # enabled again: the same token works
    r = _post(ac, f"/admin/users/{victim}/enable", "/admin/users", f"/admin/users/{victim}/enable")
    assert r.status_code == 303 and api.whoami()["name"] == victim
    if git:
        done = subprocess.run([git, "clone", remote, str(tmp_path / "clone2")], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0 and (tmp_path / "clone2" / "m.txt").read_bytes() == b"mine\n"
    # an admin cannot disable themselves, even by hand
    r = _post(ac, f"/admin/users/{admin}/disable", "/admin/users", f"/admin/users/{victim}/disable")
    assert r.status_code == 400 and "your own account" in unescape(r.text)


def test_admin_create_org_cli_keeps_working(hub_server, tmp_path):
    """`haven admin create-org NAME --member USER` adds writers; a writer can push, the org has no admin,
    so a member may leave; a hub admin manages any org."""
    member, mc = _user(hub_server, "cli-member")
    org = unique_name("cli-org")
    env = {**os.environ, "HAVEN_DATA": str(hub_server.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "haven.cli", "admin", "create-org", org, "--member", member, "--data", str(hub_server.data_dir)],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _members(mc, org) == {member: "write"}
    _, ac = _admin(hub_server)
    assert _add(ac, org, member, "admin").status_code == 303
    assert _members(mc, org) == {member: "admin"}
    r = _leave(mc, org)
    assert r.status_code == 400 and "last admin" in unescape(r.text)
