"""The lists' card-text search and SQL facet counts on PostgreSQL (whose LIKE is case-sensitive,
unlike SQLite's): a live `haven serve` on the throwaway PostgreSQL of tests/server/test_postgres."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi

from fixtures.server import start_server, stop_server, unique_name
from server.test_postgres import PG_BIN, postgres  # noqa: F401 - the fixture, used by name
from web.test_pages import facet, listed

pytestmark = pytest.mark.skipif(
    PG_BIN is None, reason="PostgreSQL binaries (initdb, postgres) not found: apt-get install postgresql"
)


def test_card_search_and_counts_on_postgres(postgres, tmp_path):  # noqa: F811
    import httpx

    server = start_server(tmp_path, db_url=postgres)
    try:
        owner = unique_name("pgweb")
        token = server.create_user(owner)
        api = HfApi(endpoint=server.url, token=token)
        shown = api.create_repo(f"{owner}/shown").repo_id
        card = "---\nlicense: mit\nlanguage: [fr]\n---\n# Übersicht\n\nNearly 100% of *Snake_Case* words.\n"
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=shown)
        hidden = api.create_repo(f"{owner}/hidden", private=True).repo_id
        secret = "---\nlicense: secret-license\n---\n# Snake_case too\n"
        api.upload_file(path_or_fileobj=secret.encode(), path_in_repo="README.md", repo_id=hidden)

        def page(token=None, **params) -> str:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.get(f"{server.url}/models", params=params, headers=headers).text

        for term in ("snake_case words", "SNAKE_CASE", "100% of", "übersicht", "ÜBERSICHT"):
            assert listed(page(search=term)) == [shown], term
        for term in ("snake%case", "snake_case_", "1000%"):  # % and _ are literal characters
            assert listed(page(search=term)) == [], term
        assert sorted(listed(page(token, search="snake_case"))) == sorted([hidden, shown])
        assert facet(page(), "license") == {"mit": 1} and facet(page(), "language") == {"fr": 1}
        assert facet(page(token), "license") == {"mit": 1, "secret-license": 1}
    finally:
        stop_server(server)
    assert "Traceback" not in server.log(), server.log()[-3000:]
