"""One cache with the ecosystem: by default Haven reads and writes the cache `huggingface_hub` and
`transformers` use, so a download by any of them serves the others offline. `HAVEN_HOME` still
moves Haven's cache (to `$HAVEN_HOME/hub`). The token file of `huggingface_hub` is a fallback,
for the endpoint it belongs to only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from unittest import mock

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hf_constants

from haven import AutoModelForMaskedLM, AutoTokenizer
from haven.hub import auth
from haven.hub.client import HubClient
from hub.helpers import reference_pointed_at

CACHE_VARS = ("HAVEN_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_TOKEN_PATH")

# huggingface_hub computes its paths once, at import: reload its constants under each environment.
_REFERENCE = f"""
import importlib, json, os, sys
from huggingface_hub import constants
out = []
for env in json.loads(sys.argv[1]):
    for name in {CACHE_VARS!r}:
        os.environ.pop(name, None)
    os.environ.update(env)
    importlib.reload(constants)
    out.append([constants.HF_HUB_CACHE, constants.HF_TOKEN_PATH])
print(json.dumps(out))
"""


def test_default_cache_and_token_file_are_huggingface_hubs(tmp_path, monkeypatch):
    """The same precedence as huggingface_hub 2.x, checked against its own constants."""
    home = str(tmp_path / "user")
    cases = [
        {},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg")},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HF_HOME": str(tmp_path / "hf")},
        {"HF_HOME": "~/hf-in-home"},
        {"HF_HOME": str(tmp_path / "hf"), "HUGGINGFACE_HUB_CACHE": str(tmp_path / "legacy")},
        {"HF_HOME": str(tmp_path / "hf"), "HUGGINGFACE_HUB_CACHE": str(tmp_path / "legacy"),
         "HF_HUB_CACHE": str(tmp_path / "hub-cache")},
        {"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN_PATH": str(tmp_path / "tok")},
    ]
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS}
    env["HOME"] = home
    proc = subprocess.run([sys.executable, "-c", _REFERENCE, json.dumps(cases)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(proc.stdout)
    monkeypatch.setenv("HOME", home)
    for case, (hub_cache, token_file) in zip(cases, expected, strict=True):
        for name in CACHE_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in case.items():
            monkeypatch.setenv(name, value)
        assert auth.default_cache_dir() == hub_cache, case
        assert auth.hf_token_path() == token_file, case
    assert expected[0][0] == os.path.join(home, ".cache", "huggingface", "hub")

    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "haven"))  # Haven's own override still wins
    assert auth.default_cache_dir() == str(tmp_path / "haven" / "hub")


def test_token_falls_back_to_huggingface_hubs_file_for_its_endpoint_only(tmp_path, monkeypatch):
    for name in ("HAVEN_TOKEN", "HF_TOKEN", "HAVEN_ENDPOINT", "HF_ENDPOINT", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "haven"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_from_hf_login\n")
    with mock.patch.object(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token")):
        assert huggingface_hub.get_token() == "hf_from_hf_login"  # the file the reference reads
    assert auth.get_token() == "hf_from_hf_login"  # public Hub: the endpoint that token is for
    assert HubClient().token == "hf_from_hf_login"
    monkeypatch.setenv("HAVEN_ENDPOINT", "http://haven.local:8080")
    assert auth.get_token() is None  # a huggingface.co token never goes to another hub
    assert HubClient().token is None
    monkeypatch.setenv("HF_ENDPOINT", "http://haven.local:8080/")
    assert auth.get_token() == "hf_from_hf_login"  # ... unless huggingface_hub is pointed there too
    auth.save_token("hv_from_haven_login")
    assert auth.get_token() == "hv_from_haven_login"  # `haven login` comes first
    assert (tmp_path / "hf" / "token").read_text() == "hf_from_hf_login\n"  # and never touches HF's file


@pytest.fixture
def shared(hub, tmp_path, monkeypatch):
    """The `hub` environment without HAVEN_HOME: Haven's cache is HF_HOME's."""
    monkeypatch.delenv("HAVEN_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    assert auth.default_cache_dir() == str(hf_home / "hub")
    return hf_home


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(["Hello world!", "A longer second sentence."], padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits


def test_a_download_by_haven_serves_huggingface_hub_and_transformers_offline(
    hub, shared, bert_masked_lm_dir, monkeypatch
):
    import transformers

    repo = hub.new_repo("shared-h2hf")
    hub.client.create_repo(repo)
    hub.client.upload_folder(repo_id=repo, folder_path=bert_masked_lm_dir)
    model = AutoModelForMaskedLM.from_pretrained(repo)  # Haven's loader fills the default cache
    tokenizer = AutoTokenizer.from_pretrained(repo)
    assert (shared / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots").is_dir()
    ours = _logits(model, tokenizer)

    with reference_pointed_at(hub.url, None, shared), mock.patch.object(hf_constants, "HF_HUB_OFFLINE", True):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        config = huggingface_hub.hf_hub_download(repo, "config.json")  # no cache_dir: the default one
        assert config.startswith(str(shared / "hub"))
        ref_model = transformers.AutoModelForMaskedLM.from_pretrained(repo).eval()
        ref_tokenizer = transformers.AutoTokenizer.from_pretrained(repo)
    torch.testing.assert_close(_logits(ref_model, ref_tokenizer), ours, atol=1e-4, rtol=1e-4)


def test_a_download_by_huggingface_hub_serves_havens_loader_offline(hub, shared, bert_masked_lm_dir, monkeypatch):
    import transformers

    repo = hub.new_repo("shared-hf2h")
    hub.client.create_repo(repo)
    hub.client.upload_folder(repo_id=repo, folder_path=bert_masked_lm_dir)
    with reference_pointed_at(hub.url, hub.token, shared):
        folder = huggingface_hub.snapshot_download(repo)  # no cache_dir: the default one
        ref_model = transformers.AutoModelForMaskedLM.from_pretrained(folder).eval()
        ref_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert folder.startswith(str(shared / "hub"))

    monkeypatch.setenv("HAVEN_OFFLINE", "1")
    monkeypatch.setenv("HAVEN_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would fail
    model = AutoModelForMaskedLM.from_pretrained(repo)
    tokenizer = AutoTokenizer.from_pretrained(repo)
    torch.testing.assert_close(_logits(model, tokenizer), _logits(ref_model, ref_tokenizer), atol=1e-4, rtol=1e-4)
    offline = HubClient()
    assert offline.snapshot_download(repo) == folder
    assert offline.stats["requests"] == 0
