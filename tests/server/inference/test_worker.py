"""`haven worker`: a hub started with `--inference-worker URL` keeps the access rules and hands the
work to a separate worker process, which downloads the model from the hub and answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid

import httpx
from huggingface_hub import InferenceClient

from fixtures.server import _free_port, start_server, stop_server, unique_name

from .conftest import post, publish, with_card


def test_hub_forwards_to_a_worker(tmp_path, monkeypatch, bert_sequence_classification_dir, gpt2_dir):
    from haven import pipeline

    secret = uuid.uuid4().hex
    monkeypatch.setenv("HAVEN_WORKER_SECRET", secret)
    worker_url = f"http://127.0.0.1:{_free_port()}"
    (tmp_path / "hub").mkdir()
    hub = start_server(tmp_path / "hub", args=("--inference-worker", worker_url))
    worker = None
    try:
        admin = hub.create_user(unique_name("admin"), admin=True)
        user = unique_name("owner")
        token = hub.create_user(user)
        env = {**os.environ, "HAVEN_WORKER_TOKEN": admin}
        worker = subprocess.Popen(
            [sys.executable, "-m", "haven.cli", "worker", "--hub", hub.url, "--port", worker_url.rsplit(":", 1)[1],
             "--data", str(tmp_path / "worker"), "--log-level", "warning"],
            env=env, stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{worker_url}/api/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        cls = f"{user}/cls"
        publish(hub.url, token, cls, with_card(bert_sequence_classification_dir, tmp_path / "cls", "text-classification"),
                private=True)
        r = post(hub.url, cls, {"inputs": "hello there", "parameters": {"top_k": 2}}, token)
        assert r.status_code == 200, r.text + (tmp_path / "worker.log").read_text()
        assert r.headers["X-Inference-Worker"] == worker_url
        assert "forward;dur=" in r.headers["Server-Timing"]  # the worker's stage timings reach the caller
        want = pipeline("text-classification", model=bert_sequence_classification_dir)(["hello there"], top_k=2)
        assert [[(x["label"], round(x["score"], 6)) for x in row] for row in r.json()] == \
            [[(x["label"], round(x["score"], 6)) for x in row] for row in want]
        assert post(hub.url, cls, {"inputs": "hi"}).status_code == 404  # the hub's access rule, as everywhere
        direct = httpx.post(f"{worker_url}/models/{cls}", json={"inputs": "hi"}, timeout=30)
        assert direct.status_code == 401  # the worker answers its hub only

        gen = f"{user}/gen"
        publish(hub.url, token, gen, with_card(gpt2_dir, tmp_path / "gen", "text-generation"))
        assert post(hub.url, gen, {"inputs": "x", "parameters": {"max_new_tokens": 1}}, token).status_code == 200
        client = InferenceClient(model=f"{hub.url}/models/{gen}", token=token)
        streamed = "".join(client.text_generation("once upon", max_new_tokens=8, do_sample=False, stream=True,
                                                  return_full_text=False))
        want = pipeline("text-generation", model=gpt2_dir)("once upon", max_new_tokens=8, do_sample=False,
                                                             return_full_text=False)
        assert streamed == want[0]["generated_text"]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        stop_server(hub)
