"""Who may manage a repository (visibility, move, delete): its owner, an admin of its organisation
or a site admin, on the API as on the web's settings page. An organisation's writers publish files
but do not manage its repositories."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from fixtures.server import unique_name
from haven.server import auth


@pytest.fixture()
def team(hub_server):
    org, admin, writer = unique_name("team"), unique_name("org-admin"), unique_name("org-writer")
    admin_token, writer_token = hub_server.create_user(admin), hub_server.create_user(writer)
    hub_server.create_org(org, writer)  # haven admin create-org: members write
    with hub_server._sessionmaker()() as session:
        auth.add_member(session, org, admin, role="admin")
        session.commit()
    repo_id = HfApi(endpoint=hub_server.url, token=writer_token).create_repo(f"{org}/shared").repo_id
    return (HfApi(endpoint=hub_server.url, token=admin_token), HfApi(endpoint=hub_server.url, token=writer_token),
            repo_id, org)


def test_writers_publish_but_do_not_manage(team):
    admin, writer, repo_id, org = team
    writer.upload_file(path_or_fileobj=b"hello", path_in_repo="notes.txt", repo_id=repo_id)
    for call in (
        lambda: writer.update_repo_settings(repo_id, private=True),
        lambda: writer.move_repo(repo_id, f"{org}/renamed"),
        lambda: writer.delete_repo(repo_id),
    ):
        with pytest.raises(HfHubHTTPError) as info:
            call()
        assert info.value.response.status_code == 403
        assert "admin of the organization" in info.value.response.json()["error"]
    assert admin.model_info(repo_id).private is False and "notes.txt" in admin.list_repo_files(repo_id)


def test_org_admins_and_owners_manage(team):
    admin, writer, repo_id, org = team
    admin.update_repo_settings(repo_id, private=True)
    assert admin.model_info(repo_id).private is True
    admin.move_repo(repo_id, f"{org}/renamed")
    admin.delete_repo(f"{org}/renamed")
    mine = writer.create_repo(f"{writer.whoami()['name']}/own").repo_id  # owners manage their own
    writer.update_repo_settings(mine, private=True)
    writer.delete_repo(mine)
