"""How the inference API serves: 503 while a model loads, an LRU bounded by weight bytes, a new
commit picked up by the next request, private repos, a full queue (429), and bad requests
answered 400/413 with a message."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from fixtures.server import start_server, stop_server, unique_name

from .conftest import post, publish, with_card


def _weights(folder) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def test_loading_answers_503_then_success(inference_hub, bert_sequence_classification_dir, tmp_path):
    repo = f"{inference_hub.user}/{unique_name('fresh')}"
    publish(inference_hub.url, inference_hub.token, repo,
            with_card(bert_sequence_classification_dir, tmp_path / "m", "text-classification"))
    first = post(inference_hub.url, repo, {"inputs": "hello"}, inference_hub.token, wait=False)
    assert first.status_code == 503, first.text
    assert first.json()["error"] == f"Model {repo} is currently loading"
    assert first.json()["estimated_time"] > 0 and int(first.headers["Retry-After"]) >= 1
    done = post(inference_hub.url, repo, {"inputs": "hello"}, inference_hub.token)  # wait_for_model
    assert done.status_code == 200 and done.json()[0][0]["label"] in ("NEGATIVE", "POSITIVE")
    again = post(inference_hub.url, repo, {"inputs": "hello"}, inference_hub.token, wait=False)
    assert again.status_code == 200  # loaded once, served from memory


def test_new_commit_is_picked_up(inference_hub, bert_sequence_classification_dir, tmp_path):
    from huggingface_hub import HfApi

    repo = f"{inference_hub.user}/{unique_name('moving')}"
    folder = with_card(bert_sequence_classification_dir, tmp_path / "m", "text-classification")
    publish(inference_hub.url, inference_hub.token, repo, folder)
    before = post(inference_hub.url, repo, {"inputs": "hi", "parameters": {"top_k": 2}}, inference_hub.token)
    assert {x["label"] for x in before.json()[0]} == {"NEGATIVE", "POSITIVE"}
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "BAD", "1": "GOOD"}
    config["label2id"] = {"BAD": 0, "GOOD": 1}
    HfApi(endpoint=inference_hub.url, token=inference_hub.token).upload_file(
        path_or_fileobj=json.dumps(config).encode(), path_in_repo="config.json", repo_id=repo)
    after = post(inference_hub.url, repo, {"inputs": "hi", "parameters": {"top_k": 2}}, inference_hub.token)
    assert {x["label"] for x in after.json()[0]} == {"BAD", "GOOD"}
    # the scores are the same model's: only the names changed
    assert sorted(x["score"] for x in after.json()[0]) == pytest.approx(sorted(x["score"] for x in before.json()[0]))


def test_private_repo_needs_a_token(inference_hub, bert_sequence_classification_dir, tmp_path):
    repo = f"{inference_hub.user}/{unique_name('secret')}"
    publish(inference_hub.url, inference_hub.token, repo,
            with_card(bert_sequence_classification_dir, tmp_path / "m", "text-classification"), private=True)
    anonymous = post(inference_hub.url, repo, {"inputs": "hi"})
    assert anonymous.status_code == 404 and "not found" in anonymous.json()["error"].lower()
    stranger = inference_hub.server.create_user(unique_name("stranger"))
    assert post(inference_hub.url, repo, {"inputs": "hi"}, stranger).status_code == 404
    reader = inference_hub.server.create_token(inference_hub.user, "read")
    assert post(inference_hub.url, repo, {"inputs": "hi"}, reader).status_code == 200


def test_bad_requests_say_what_is_wrong(inference_hub, tmp_path, bert_masked_lm_dir):
    url, tok, repos = inference_hub.url, inference_hub.token, inference_hub.repos
    r = post(url, repos["text-classification"], {"inputs": "hi", "parameters": {"temperature": 1}}, tok)
    assert r.status_code == 400 and "temperature" in r.json()["error"] and "top_k" in r.json()["error"]
    r = post(url, repos["text-classification"], {"inputs": "hi", "nonsense": 1}, tok)
    assert r.status_code == 400 and "nonsense" in r.json()["error"]
    r = post(url, repos["fill-mask"], {"inputs": "no mask here"}, tok)
    assert r.status_code == 400 and "mask" in r.json()["error"].lower()
    r = post(url, repos["text-generation"], {"inputs": "hi", "parameters": {"max_new_tokens": 100000}}, tok)
    assert r.status_code == 400 and "max_new_tokens" in r.json()["error"]
    r = post(url, repos["text-classification"], {"inputs": "word " * 400}, tok)
    assert r.status_code == 400 and "tokens" in r.json()["error"]
    r = post(url, repos["text-classification"], {"inputs": "x" * (2 << 20)}, tok)
    assert r.status_code == 413
    r = httpx.post(f"{url}/models/{repos['text-classification']}", content=b"{not json", timeout=30,
                   headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    odd = f"{inference_hub.user}/{unique_name('translator')}"
    publish(url, tok, odd, with_card(bert_masked_lm_dir, tmp_path / "t", "translation"))
    r = post(url, odd, {"inputs": "hi"}, tok)
    assert r.status_code == 400 and "translation" in r.json()["error"] and "fill-mask" in r.json()["error"]
    assert post(url, f"{inference_hub.user}/no-such-model", {"inputs": "hi"}, tok).status_code == 404


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory, bert_sequence_classification_dir):
    """A hub whose inference memory holds one tiny classifier (not two), and whose queue holds one request."""
    base = tmp_path_factory.mktemp("small-hub")
    budget = int(_weights(bert_sequence_classification_dir) * 1.5)
    server = start_server(base, args=("--inference-memory", str(budget), "--inference-queue", "1"))
    try:
        user = unique_name("lru")
        token = server.create_user(user)
        for name in ("a", "b"):
            shutil.rmtree(base / name, ignore_errors=True)
            publish(server.url, token, f"{user}/{name}",
                    with_card(bert_sequence_classification_dir, base / name, "text-classification"))
        yield server, user, token
    finally:
        stop_server(server)


def test_lru_evicts_the_least_recently_used(small_hub):
    server, user, token = small_hub
    a, b = f"{user}/a", f"{user}/b"
    assert post(server.url, a, {"inputs": "x"}, token).status_code == 200
    assert post(server.url, a, {"inputs": "x"}, token, wait=False).status_code == 200  # a is in memory
    assert post(server.url, b, {"inputs": "x"}, token).status_code == 200  # loading b evicts a
    assert post(server.url, b, {"inputs": "x"}, token, wait=False).status_code == 200
    assert post(server.url, a, {"inputs": "x"}, token, wait=False).status_code == 503  # a must load again


def test_full_queue_answers_429(small_hub):
    server, user, token = small_hub
    repo = f"{user}/b"
    assert post(server.url, repo, {"inputs": "x"}, token).status_code == 200
    answers = []

    def one():
        answers.append(post(server.url, repo, {"inputs": ["some words " * 12] * 8}, token, wait=False))

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    codes = [r.status_code for r in answers]
    assert 429 in codes and 200 in codes, codes
    busy = next(r for r in answers if r.status_code == 429)
    assert int(busy.headers["Retry-After"]) >= 1 and "retry" in busy.json()["error"]


def test_no_inference_flag(tmp_path):
    """`haven serve --no-inference` (Settings.inference=False): the routes say the API is off."""
    from fastapi.testclient import TestClient

    from haven.server import db
    from haven.server.app import create_app
    from haven.server.commands import _settings
    from haven.server.settings import Settings

    settings = Settings.load(data_dir=tmp_path, inference=False)
    db.upgrade(settings.db_url)
    with TestClient(create_app(settings)) as client:
        r = client.post("/models/a/b", json={"inputs": "x"})
        assert r.status_code == 404 and "--no-inference" in r.json()["error"]
    import argparse

    parsed = argparse.ArgumentParser()
    from haven.server.commands import register

    register(parsed.add_subparsers())
    args = parsed.parse_args(["serve", "--no-inference", "--inference-memory", "2GB", "--data", str(tmp_path)])
    flags = _settings(args)
    assert flags.inference is False and flags.inference_memory == 2 * 10**9


def test_web_session_cookie_reads_a_private_model(inference_hub, bert_sequence_classification_dir, tmp_path):
    """The model page's widget posts with the browser's session cookie: its member may use a
    private model, and the same request without the cookie is 404."""
    from web.account_helpers import browser, sign_up

    name = unique_name("webber")
    with browser(inference_hub.url) as page:
        assert sign_up(page, name).status_code == 303
        repo = f"{name}/private-cls"
        publish(inference_hub.url, inference_hub.server.create_token(name), repo,
                with_card(bert_sequence_classification_dir, tmp_path / "m", "text-classification"), private=True)
        body = {"inputs": "hi", "options": {"wait_for_model": True}}
        signed_in = page.post(f"/models/{repo}", json=body, timeout=120)
        assert signed_in.status_code == 200, signed_in.text
    assert httpx.post(f"{inference_hub.url}/models/{repo}", json=body, timeout=30).status_code == 404
