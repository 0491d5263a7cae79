"""Tokenizers over the hub: Haven's push_to_hub, then loading by repository id with Haven and
(in a subprocess pointed at the same server) the reference library."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fixtures.server import unique_name
from haven.errors import HubError
from haven.tokenizer import AutoTokenizer

TEXTS = ["Bonjour le monde !", "naïve café 東京 😀", "x"]
CHAT = [{"role": "user", "content": "Salut ?"}]
REFERENCE = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    texts, chat = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    print(json.dumps({"enc": dict(tok(texts)), "ids": tok.all_special_ids,
                      "chat": tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)}))
    """
)


@pytest.fixture
def hub_user(hub_server, monkeypatch, tmp_path):
    """A fresh user whose token and endpoint Haven's client reads from the environment."""
    user = unique_name("tok")
    token = hub_server.create_user(user)
    monkeypatch.setenv("HAVEN_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HAVEN_TOKEN", token)
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "haven-home"))
    return user, token


@pytest.mark.parametrize("name", ["llama_tokenizer_dir", "camembert_legacy_tokenizer_dir"])
def test_push_to_hub_then_load_by_id(request, hub_server, hub_user, name):
    user, token = hub_user
    local = AutoTokenizer.from_pretrained(request.getfixturevalue(name))
    repo_id = f"{user}/{unique_name('tokenizer')}"
    local.push_to_hub(repo_id, token=token)

    ours = AutoTokenizer.from_pretrained(repo_id)
    assert dict(ours(TEXTS)) == dict(local(TEXTS))
    assert ours.all_special_ids == local.all_special_ids and ours.chat_template == local.chat_template

    if name == "llama_tokenizer_dir":  # the reference, over the same server
        proc = subprocess.run(
            [sys.executable, "-c", REFERENCE, repo_id, json.dumps(TEXTS), json.dumps(CHAT)],
            env=hub_server.env(token),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        ref = json.loads(proc.stdout.strip().splitlines()[-1])
        assert ref["enc"] == dict(ours(TEXTS)) and ref["ids"] == ours.all_special_ids
        assert ref["chat"] == ours.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)


def test_missing_repository(hub_user):
    with pytest.raises(HubError):
        AutoTokenizer.from_pretrained(f"{hub_user[0]}/{unique_name('nothing-here')}")
