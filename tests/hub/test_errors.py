"""How hub error responses map to Haven's exceptions (statuses and X-Error-Code as the Hub sends them)."""

from __future__ import annotations

import httpx
import pytest

from haven.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HubAuthError,
    HubError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from haven.hub.http import raise_for_status


def _response(status: int, code: str | None = None, body: dict | None = None) -> httpx.Response:
    headers = {"x-error-code": code} if code else {}
    request = httpx.Request("GET", "http://hub.test/api/models/me/x")
    return httpx.Response(status, headers=headers, json=body or {"error": "server text"}, request=request)


@pytest.mark.parametrize(
    ("status", "code", "filename", "expected", "hint"),
    [
        (404, "RepoNotFound", None, RepositoryNotFoundError, "haven login"),
        (401, "RepoNotFound", None, RepositoryNotFoundError, "owner/name"),  # private + anonymous, as the Hub does
        (404, "RevisionNotFound", None, RevisionNotFoundError, "git ls-remote"),
        (404, "EntryNotFound", "f.bin", EntryNotFoundError, "tree/main"),
        (404, None, "f.bin", EntryNotFoundError, "f.bin"),
        (403, "GatedRepo", None, GatedRepoError, "access"),
        (401, None, None, HubAuthError, "HAVEN_TOKEN"),
        (403, None, None, HubAuthError, "write role"),
        (409, None, None, HubError, "conflict"),
        (500, None, None, HubError, "HTTP 500"),
    ],
)
def test_status_and_error_code_choose_the_exception(status, code, filename, expected, hint):
    with pytest.raises(expected, match=hint) as info:
        raise_for_status(_response(status, code), repo_id="me/x", revision="main", filename=filename)
    assert info.value.status == status
    assert info.value.server_message == "server text"
    assert "server text" in str(info.value)


def test_gated_is_a_repository_error_and_all_are_oserrors():
    assert issubclass(GatedRepoError, RepositoryNotFoundError)
    with pytest.raises(OSError):
        raise_for_status(_response(404, "RepoNotFound"), repo_id="me/x")
    raise_for_status(_response(200), repo_id="me/x")  # success passes through


@pytest.mark.parametrize(
    ("url", "web", "api"),
    [
        ("http://hub.test/me/x/resolve/main/f.bin", "http://hub.test/me/x", "http://hub.test/api/models/me/x"),
        ("http://hub.test/datasets/me/x/resolve/v1/f.bin", "http://hub.test/datasets/me/x",
         "http://hub.test/api/datasets/me/x"),
        ("http://hub.test/api/datasets/me/x/revision/v1", "http://hub.test/datasets/me/x",
         "http://hub.test/api/datasets/me/x"),
    ],
)
def test_not_found_errors_point_at_a_command_and_a_listing(url, web, api):
    """What to run or open, for models and datasets alike; never a Python call (the CLI prints these)."""
    def raised(code: str, filename: str | None) -> str:
        response = httpx.Response(404, headers={"x-error-code": code}, request=httpx.Request("HEAD", url))
        with pytest.raises(HubError) as info:
            raise_for_status(response, repo_id="me/x", revision="v1", filename=filename)
        return str(info.value)

    assert f"`git ls-remote {web}`" in raised("RevisionNotFound", None)
    assert f"{api}/tree/v1?recursive=true" in raised("EntryNotFound", "f.bin")
    assert "HubClient" not in raised("RevisionNotFound", None) + raised("EntryNotFound", "f.bin")
