"""The inference timeout is a setting: `haven serve --inference-timeout SECONDS` (or
HAVEN_INFERENCE_TIMEOUT); a request still unanswered after it gets 504 with a message."""

from __future__ import annotations

import time

import pytest

from fixtures.server import start_server, stop_server, unique_name
from haven.server.settings import Settings, SettingsError

from .conftest import minilm_folder, post, publish, with_card


def test_a_slow_request_is_504_after_the_configured_timeout(tmp_path):
    server = start_server(tmp_path, args=("--inference-timeout", "1"))
    try:
        user = unique_name("slow")
        token = server.create_user(user)
        repo = f"{user}/st"
        publish(server.url, token, repo, with_card(minilm_folder(), tmp_path / "st", "feature-extraction"))
        # loaded (the load's own wait is not the request timeout; on a busy machine even this may take 1 s)
        assert post(server.url, repo, {"inputs": "warm up"}, token).status_code in (200, 504)
        # 128 texts of ~120 tokens through a 22M-parameter encoder: ~700 GFLOP, several seconds on any CPU
        texts = [" ".join(f"word{i}x{j}" for j in range(40)) for i in range(128)]
        started = time.monotonic()
        r = post(server.url, repo, {"inputs": texts}, token, wait=False)
        waited = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert r.json()["error"] == "the model did not answer within 1 s: retry later"
        assert waited < 1 + 4  # answered at the timeout, not when the batch finished
    finally:
        stop_server(server)


def test_the_setting_reads_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HAVEN_INFERENCE_TIMEOUT", raising=False)
    assert Settings.load(data_dir=tmp_path).inference_timeout == 120.0
    monkeypatch.setenv("HAVEN_INFERENCE_TIMEOUT", "2.5")
    assert Settings.load(data_dir=tmp_path).inference_timeout == 2.5
    assert Settings.load(data_dir=tmp_path, inference_timeout=7).inference_timeout == 7.0
    for bad in ("soon", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("HAVEN_INFERENCE_TIMEOUT", bad)
        with pytest.raises(SettingsError, match="HAVEN_INFERENCE_TIMEOUT"):
            Settings.load(data_dir=tmp_path)
