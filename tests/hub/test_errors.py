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
        (404, "RevisionNotFound", None, RevisionNotFoundError, "list_repo_refs"),
        (404, "EntryNotFound", "f.bin", EntryNotFoundError, "list_repo_files"),
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
