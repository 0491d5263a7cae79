"""The lists' search box over names and card text, and their facet counts.

- the web's search matches words of a card's body (Markdown stripped, case-blind, `%` and `_`
  literal); the API's `search` still matches repo ids only, as the Hub's does (checked with the
  real client); a private repo's card text never selects it for someone who may not see it;
- an unfiltered list counts its facets in SQL (`repo_facets`): the counts equal those computed
  here from the API's listing (`cardData`) for an anonymous visitor and for the owner;
- migration 0006 on a database from before it: every repository is re-indexed when the server
  starts, so card text and facets exist for repos indexed before.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import httpx
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from huggingface_hub import HfApi
from starlette.testclient import TestClient

from fixtures.server import unique_name
from web.test_pages import facet, get, listed


def test_search_box_reads_card_text(site):
    # the card body says "A *tiny* model with **demo** weights." and has a "Results table" heading
    for term in ("tiny model with demo weights", "TINY MODEL", "results table", "pipe = pipeline"):
        assert f"{site.owner}/tiny-bert" in listed(get(site, "/models", search=term).text), term
    for term in ("*tiny* model", "**demo**", "t_ny model", "%model", "license: mit"):  # syntax, front matter, wildcards
        assert f"{site.owner}/tiny-bert" not in listed(get(site, "/models", search=term).text), term
    # the API's search matches ids only, as the Hub's: the real client finds no card words
    client = HfApi(endpoint=site.url)
    assert [m.id for m in client.list_models(search="demo weights")] == []
    assert f"{site.owner}/tiny-bert" in [m.id for m in client.list_models(search="tiny-bert")]
    # a private repo's card ("# Secret") selects it only for those who may see it
    assert "secret-model" not in get(site, "/models", search="secret", author=site.owner).text
    assert "secret-model" not in get(site, "/models", search="secret", token=site.stranger_token).text
    assert f"{site.owner}/secret-model" in listed(get(site, "/models", search="secret", token=site.token).text)
    # datasets are searched the same way ("# Reviews")
    assert f"{site.owner}/fr-reviews" in listed(get(site, "/datasets", search="reviews", author=site.owner).text)


def _expected(models: list[dict]) -> dict[str, Counter]:
    """Facet counts computed here from the API's listing: card license/language/datasets values,
    the pipeline tag and library of each model."""
    counts = {name: Counter() for name in ("license", "language", "dataset", "pipeline_tag", "library")}

    def values(v) -> set[str]:
        return {str(x) for x in (v if isinstance(v, list) else [v])} if v is not None else set()

    for m in models:
        card = m.get("cardData") or {}
        counts["license"].update(values(card.get("license")))
        counts["language"].update(values(card.get("language")))
        counts["dataset"].update(values(card.get("datasets")))
        counts["pipeline_tag"].update(values(m.get("pipeline_tag")))
        counts["library"].update(values(m.get("library_name")))
    return counts


def test_unfiltered_counts_equal_counts_from_the_api(site):
    for token in (None, site.token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        models = httpx.get(f"{site.url}/api/models", params={"cardData": "true", "limit": 1000}, headers=headers).json()
        assert len(models) < 1000
        expected = _expected(models)
        html = get(site, "/models", token=token).text
        for name, counter in expected.items():
            shown = facet(html, name)
            top = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:40]
            assert shown == dict(top), (name, token)
        assert ("secret-license" in facet(html, "license")) == (token is not None)


def test_marked_repos_are_reindexed_at_start(tmp_path, monkeypatch):
    """A database indexed before migration 0006 (no card text, no facet rows) gets both when the
    server starts after the upgrade."""
    monkeypatch.delenv("HAVEN_DB_URL", raising=False)
    from haven.server import auth, db
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path / "data")
    db.upgrade(settings.db_url)
    owner = unique_name("old")
    with db.make_sessionmaker(db.make_engine(settings.db_url))() as session:
        auth.create_user(session, owner)
        token = auth.create_token(session, owner, "write")
        session.commit()
    card = "---\nlicense: mit\nlanguage: [fr]\n---\n# Old model\n\nIt predates **card search**.\n"
    lines = [{"key": "header", "value": {"summary": "card"}},
             {"key": "file", "value": {"path": "README.md", "encoding": "base64",
                                       "content": base64.b64encode(card.encode()).decode()}}]
    headers = {"authorization": f"Bearer {token}"}
    with TestClient(create_app(settings), base_url=settings.public_url) as client:
        assert client.post("/api/repos/create", json={"name": "old-model"}, headers=headers).status_code == 200
        r = client.post(f"/api/models/{owner}/old-model/commit/main", headers=headers,
                        content="\n".join(json.dumps(line) for line in lines))
        assert r.status_code == 200, r.text

    # back to 0005 (as the database was before this version), then up again
    cfg = Config()
    cfg.set_main_option("script_location", str(db.Path(db.__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", settings.db_url)
    command.downgrade(cfg, "0005")
    engine = db.make_engine(settings.db_url)
    with engine.connect() as conn:
        assert "card_text" not in {c["name"] for c in sa.inspect(conn).get_columns("repos")}
    db.upgrade(settings.db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sha, card_text FROM repos")).all() == [("", None)]
    with TestClient(create_app(settings), base_url=settings.public_url) as client:
        assert f"{owner}/old-model" in listed(client.get("/models", params={"search": "card search"}).text)
        html = client.get("/models").text
        assert facet(html, "license") == {"mit": 1} and facet(html, "language") == {"fr": 1}
        # the API's tag filters read the re-indexed term rows
        found = client.get("/api/models", params={"license": "mit", "language": "fr", "filter": f"{owner}/old-model"})
        assert [m["id"] for m in found.json()] == [f"{owner}/old-model"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM repo_facets WHERE facet != 'term'")).scalar() == 2
        assert conn.execute(sa.text("SELECT card_text FROM repos")).scalar() == "old model it predates card search."


def test_pages_and_counts_on_a_seeded_index(tmp_path, monkeypatch):
    """65 models written into the index as the indexer writes them (rows, then their facet rows):
    pages of 30 in downloads order, private ones left out, and facet counts, all computed here from
    the seeded values, for the unfiltered list and for a filtered one with a search."""
    monkeypatch.delenv("HAVEN_DB_URL", raising=False)
    from haven.server import db
    from haven.server.api import index
    from haven.server.app import create_app
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path / "data")
    db.upgrade(settings.db_url)
    app = create_app(settings)
    licenses = ["mit", "apache-2.0", "cc-by-4.0"]
    seeded = []  # (id, downloads, private, license)
    with app.state.sessionmaker() as session:
        for i in range(65):
            lic, private = licenses[i % 3], i % 13 == 0
            repo = db.Repo(type="model", namespace="seed", name=f"m{i:02d}", private=private, sha="0" * 40,
                           downloads=1000 - i * 7 % 500 * 2 - i, pipeline_tag="fill-mask", library_name="transformers",
                           tags=["fill-mask", f"license:{lic}"], card_data={"license": lic},
                           card_text=f"card number {i} {'even' if i % 2 == 0 else 'odd'}")
            session.add(repo)
            session.flush()
            index.write_facets(session, repo)
            seeded.append((f"seed/m{i:02d}", repo.downloads, private, lic, i))
        session.commit()
    public = sorted((s for s in seeded if not s[2]), key=lambda s: -s[1])
    with TestClient(app, base_url=settings.public_url) as client:
        shown = []
        for p in (1, 2, 3):
            html = client.get("/models", params={"p": p, "sort": "downloads"}).text
            shown += listed(html)
            assert facet(html, "license") == dict(Counter(s[3] for s in public))
            assert facet(html, "pipeline_tag") == {"fill-mask": len(public)}
        assert shown == [s[0] for s in public]
        # narrowed: a license and a word of the card text, page 2
        odd_mit = [s for s in public if s[3] == "mit" and s[4] % 2 == 1]
        params = {"license": "mit", "search": "ODD", "sort": "downloads"}
        first = client.get("/models", params=params).text
        assert listed(first) == [s[0] for s in odd_mit][:30]
        assert facet(first, "license") == {"mit": len(odd_mit)}
        # narrowed to every public model (a tag and a card phrase): the same pages through the id list
        params = {"filter": "fill-mask", "search": "CARD NUMBER", "sort": "downloads"}
        pages = [client.get("/models", params={**params, "p": p}).text for p in (1, 2, 3)]
        assert [r for html in pages for r in listed(html)] == [s[0] for s in public]
        assert facet(pages[1], "license") == dict(Counter(s[3] for s in public))
        assert client.get("/models", params={"p": "0"}).status_code == 400


def test_a_repo_row_is_loaded_without_its_card_text(tmp_path, monkeypatch):
    """Every request that names a repo loads its row (`find_repo`); the card's text (up to the
    indexer's bound) is read by the search's SQL only, so loading a row leaves it out until asked."""
    monkeypatch.delenv("HAVEN_DB_URL", raising=False)
    from haven.server import db
    from haven.server.api.common import find_repo
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path / "data")
    db.upgrade(settings.db_url)
    sessions = db.make_sessionmaker(sa.create_engine(settings.db_url))
    with sessions() as session:
        session.add(db.Repo(type="model", namespace="a", name="m", card_text="words " * 1000))
        session.commit()
    with sessions() as session:
        repo = find_repo(session, "model", "a/m")
        assert "card_text" in sa.inspect(repo).unloaded and "pipeline_tag" not in sa.inspect(repo).unloaded
        assert repo.card_text == "words " * 1000  # still there when asked, in its session
