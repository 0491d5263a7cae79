"""Publishing from the browser, through httpx with a signed-in session against the live hub; every
result is read back with the real huggingface_hub client: /new (with a license card), uploads (LFS
for a binary file, checked by sha256), a stale form refused, editing the card (invalid YAML shown
before anything is committed), deleting a file, visibility, rename/transfer and delete."""

from __future__ import annotations

import hashlib
import re
from html import unescape

import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from fixtures.server import unique_name
from web.account_helpers import browser, csrf_of, new_token, sign_up


@pytest.fixture(scope="module")
def author(hub_server):
    """(name, signed-in client, HfApi with the user's write token)."""
    name = unique_name("author")
    client = browser(hub_server.url)
    assert sign_up(client, name).status_code == 303
    token = new_token(client, "publish-tests", "write")
    yield name, client, HfApi(endpoint=hub_server.url, token=token)
    client.close()


def field(html: str, name: str) -> str:
    return unescape(re.search(rf'name="{name}" value="([^"]*)"', html).group(1))


def create(client, owner: str, name: str, **extra) -> object:
    csrf = csrf_of(client.get("/new").text, "/new")
    return client.post("/new", data={"owner": owner, "name": name, "type": "model", "csrf": csrf, **extra})


def upload(client, repo_id: str, files: list[tuple[str, bytes]], message: str = "", parent: str | None = None):
    html = client.get(f"/{repo_id}/upload/main").text
    data = {"csrf": csrf_of(html), "parent": parent or field(html, "parent"), "message": message}
    return client.post(f"/{repo_id}/upload/main", data=data,
                       files=[("files", (name, content)) for name, content in files])


def edit(client, repo_id: str, path: str, content: str, message: str = "", new: bool = False):
    url = f"/{repo_id}/edit/main" if new else f"/{repo_id}/edit/main/{path}"
    html = client.get(url).text
    data = {"csrf": csrf_of(html), "parent": field(html, "parent"), "path": path, "content": content,
            "message": message}
    return client.post(url, data=data)


def test_new_repo_with_a_license_card(author):
    name, client, api = author
    repo_id = f"{name}/{unique_name('licensed')}"
    r = create(client, name, repo_id.split("/")[1], license="apache-2.0")
    assert r.status_code == 303 and r.headers["location"] == f"/{repo_id}"
    info = api.model_info(repo_id)
    assert info.private is False and info.card_data["license"] == "apache-2.0"
    card = open(api.hf_hub_download(repo_id, "README.md"), encoding="utf-8").read()
    assert yaml.safe_load(card.split("---")[1]) == {"license": "apache-2.0"}
    assert f"# {repo_id}" in card
    # without a license: no card, private as asked
    bare = f"{name}/{unique_name('bare')}"
    assert create(client, name, bare.split("/")[1], private="1").status_code == 303
    assert api.model_info(bare).private is True
    assert "README.md" not in api.list_repo_files(bare)


def test_new_repo_refusals(hub_server, author):
    name, client, api = author
    csrf = csrf_of(client.get("/new").text, "/new")
    r = client.post("/new", data={"owner": name, "name": "bad name!", "type": "model", "csrf": csrf})
    assert r.status_code == 400 and "invalid repository id" in r.text
    taken = unique_name("taken")
    assert create(client, name, taken).status_code == 303
    r = create(client, name, taken)
    assert r.status_code == 409 and "already created" in r.text
    other = unique_name("someone")
    hub_server.create_user(other)
    r = create(client, other, unique_name("theirs"))
    assert r.status_code == 403 and "may not create repositories" in r.text
    r = client.post("/new", data={"owner": name, "name": unique_name("nocsrf"), "type": "model", "csrf": "x"})
    assert r.status_code == 403 and not list(api.list_models(author=name, search="nocsrf"))
    r = create(client, name, unique_name("lic"), license="made-up")
    assert r.status_code == 400 and "unknown license" in r.text
    anon = browser(hub_server.url)
    assert anon.get("/new").headers["location"] == "/login?next=/new"


def test_upload_text_and_binary_in_one_commit(author):
    name, client, api = author
    repo_id = f"{name}/{unique_name('up')}"
    assert create(client, name, repo_id.split("/")[1]).status_code == 303
    text = b"hello from the browser\n"
    binary = bytes(range(256)) * 40  # has NUL bytes: binary, so LFS as preupload decides
    before = len(api.list_repo_commits(repo_id))
    r = upload(client, repo_id, [("notes.txt", text), ("blob.dat", binary)], message="Two files <b>at once</b>")
    assert r.status_code == 303, r.text
    commits = api.list_repo_commits(repo_id)
    assert len(commits) == before + 1 and commits[0].title == "Two files <b>at once</b>"
    infos = {i.path: i for i in api.get_paths_info(repo_id, ["notes.txt", "blob.dat"])}
    assert infos["notes.txt"].lfs is None
    assert infos["blob.dat"].lfs is not None and infos["blob.dat"].lfs.sha256 == hashlib.sha256(binary).hexdigest()
    assert infos["blob.dat"].lfs.size == len(binary)
    assert open(api.hf_hub_download(repo_id, "blob.dat"), "rb").read() == binary
    assert open(api.hf_hub_download(repo_id, "notes.txt"), "rb").read() == text
    # drag and drop only enhances the plain file input, from a script the hub serves itself
    assert 'src="/-/static/upload.js"' in client.get(f"/{repo_id}/upload/main").text
    js = client.get("/-/static/upload.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    # the commit page escapes the message
    page = client.get(f"/{repo_id}/commit/{commits[0].commit_id}").text
    assert "<b>at once</b>" not in page and "&lt;b&gt;at once&lt;/b&gt;" in page


def test_stale_form_is_refused(author):
    name, client, api = author
    repo_id = f"{name}/{unique_name('stale')}"
    assert create(client, name, repo_id.split("/")[1]).status_code == 303
    html = client.get(f"/{repo_id}/upload/main").text
    old_parent = field(html, "parent")
    api.upload_file(path_or_fileobj=b"meanwhile\n", path_in_repo="other.txt", repo_id=repo_id)
    r = upload(client, repo_id, [("late.txt", b"late\n")], parent=old_parent)
    assert r.status_code == 409 and "has moved since this page was loaded" in r.text
    assert "late.txt" not in api.list_repo_files(repo_id)


def test_edit_card_yaml_errors_then_tags_and_delete_a_file(author):
    name, client, api = author
    repo_id = f"{name}/{unique_name('card')}"
    assert create(client, name, repo_id.split("/")[1]).status_code == 303
    page = client.get(f"/{repo_id}/edit/main/README.md").text
    assert "Start from the card template" in page  # no card yet
    count = len(api.list_repo_commits(repo_id))
    r = edit(client, repo_id, "README.md", "---\ntags: [unclosed\n---\n# Card\n")
    assert r.status_code == 400 and "invalid" in r.text.lower()
    assert len(api.list_repo_commits(repo_id)) == count  # nothing committed
    r = edit(client, repo_id, "README.md", "---\nlicense: mit\ntags:\n- browser-made\n---\n# Card\n")
    assert r.status_code == 303
    info = api.model_info(repo_id)
    assert "browser-made" in info.tags and info.card_data["license"] == "mit"
    assert "browser-made" in client.get(f"/{repo_id}").text
    # a new file through the edit page, then edit it
    assert edit(client, repo_id, "docs/notes.md", "first\n", new=True).status_code == 303
    assert edit(client, repo_id, "docs/notes.md", "second\n", message="Second take").status_code == 303
    assert open(api.hf_hub_download(repo_id, "docs/notes.md"), encoding="utf-8").read() == "second\n"
    assert api.list_repo_commits(repo_id)[0].title == "Second take"
    # delete it from the blob page's form
    blob = client.get(f"/{repo_id}/blob/main/docs/notes.md").text
    action = f"/{repo_id}/delete/main/docs/notes.md"
    r = client.post(action, data={"csrf": csrf_of(blob, action), "parent": field(blob, "parent")})
    assert r.status_code == 303
    assert "docs/notes.md" not in api.list_repo_files(repo_id)


def test_settings_visibility_move_delete(hub_server, author):
    name, client, api = author
    short = unique_name("settings")
    repo_id = f"{name}/{short}"
    assert create(client, name, short).status_code == 303
    url = f"/{repo_id}/settings"

    def post(**data):
        return client.post(url, data={"csrf": csrf_of(client.get(url).text), **data})

    assert post(action="visibility", visibility="private").status_code == 200
    assert api.model_info(repo_id).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub_server.url).model_info(repo_id)
    assert browser(hub_server.url).get(f"/{repo_id}").status_code == 404
    assert post(action="visibility", visibility="public").status_code == 200
    assert HfApi(endpoint=hub_server.url).model_info(repo_id).private is False
    # transfer to an organisation the user writes to
    org = unique_name("pubteam")
    hub_server.create_org(org, name)
    r = post(action="move", new_owner=org, new_name=short)
    assert r.status_code == 303 and r.headers["location"] == f"/{org}/{short}/settings"
    assert api.repo_exists(f"{org}/{short}") and not api.repo_exists(repo_id)
    url = f"/{org}/{short}/settings"
    # an org's writers publish files but do not manage its repositories: that is for its admins
    assert client.get(url).status_code == 403
    with pytest.raises(HfHubHTTPError) as refused:
        api.update_repo_settings(f"{org}/{short}", private=True)
    assert refused.value.response.status_code == 403
    assert f'href="/{org}/{short}/settings"' not in client.get(f"/{org}/{short}").text
    _promote(hub_server, org, name)
    r = post(action="move", new_owner=org, new_name="bad name!")
    assert r.status_code == 400 and "invalid repository id" in r.text
    # delete: the name must be typed
    r = post(action="delete", confirm=short)
    assert r.status_code == 400 and api.repo_exists(f"{org}/{short}")
    r = post(action="delete", confirm=f"{org}/{short}")
    assert r.status_code == 303 and not api.repo_exists(f"{org}/{short}")


def test_who_may_publish(hub_server, author):
    name, client, api = author
    public, private = unique_name("pub"), unique_name("priv")
    assert create(client, name, public).status_code == 303
    assert create(client, name, private, private="1").status_code == 303
    reader = browser(hub_server.url)
    assert sign_up(reader, unique_name("reader")).status_code == 303
    for path in ("settings", "upload/main", "edit/main/README.md"):
        assert reader.get(f"/{name}/{public}/{path}").status_code == 403
        assert reader.get(f"/{name}/{private}/{path}").status_code == 404
    anon = browser(hub_server.url)
    assert anon.get(f"/{name}/{public}/settings").status_code == 303
    assert anon.get(f"/{name}/{private}/settings").status_code == 404
    # a reader's form post is refused too, and changes nothing
    csrf = csrf_of(reader.get("/new").text, "/new")
    r = reader.post(f"/{name}/{public}/settings", data={"csrf": csrf, "action": "visibility", "visibility": "private"})
    assert r.status_code == 403 and api.model_info(f"{name}/{public}").private is False
    # the owner sees the links; the reader does not
    assert "Upload files" in client.get(f"/{name}/{public}").text
    assert "Upload files" not in reader.get(f"/{name}/{public}").text


def _promote(hub_server, org: str, user: str) -> None:
    from haven.server import auth

    with hub_server._sessionmaker()() as session:
        auth.add_member(session, org, user, role="admin")
        session.commit()
