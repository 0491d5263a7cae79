"""The copy-paste snippets on model pages and the empty home page: since the hub speaks Xet, none of
them tells the user to turn Xet off (they did: HF_HUB_DISABLE_XET=1 in every export line)."""

from __future__ import annotations

from types import SimpleNamespace

from haven.server.web.snippets import snippets


def test_no_snippet_turns_xet_off():
    for kind in ("model", "dataset"):
        repo = SimpleNamespace(type=kind, pipeline_tag="fill-mask", repo_id="alice/tiny-bert")
        found = snippets(repo, "http://127.0.0.1:8080", "AutoModelForMaskedLM")
        assert any("hf download alice/tiny-bert" in s.code for s in found)
        for s in found:
            assert "HF_HUB_DISABLE_XET" not in s.code, s.title


def test_the_empty_home_page_does_not_turn_xet_off():
    from haven.server.web.render import HERE

    assert "HF_HUB_DISABLE_XET" not in (HERE / "templates" / "home.html").read_text()
