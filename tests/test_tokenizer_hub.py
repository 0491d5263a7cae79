"""Tokenizers over the hub: Haven's push_to_hub, then loading by repository id with Haven and
with the reference library pointed at the same server."""

from __future__ import annotations

import pytest
import transformers

from fixtures.server import unique_name
from haven import AutoTokenizer
from haven.errors import HubError
from hub.helpers import reference_pointed_at

TEXTS = ["Bonjour le monde !", "naïve café 東京 😀", "x"]
CHAT = [{"role": "user", "content": "Salut ?"}]


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
def test_push_to_hub_then_load_by_id(request, hub_server, hub_user, name, tmp_path):
    user, token = hub_user
    local = AutoTokenizer.from_pretrained(request.getfixturevalue(name))
    repo_id = f"{user}/{unique_name('tokenizer')}"
    local.push_to_hub(repo_id, token=token)

    ours = AutoTokenizer.from_pretrained(repo_id)
    assert dict(ours(TEXTS)) == dict(local(TEXTS))
    assert ours.all_special_ids == local.all_special_ids and ours.chat_template == local.chat_template

    if name == "llama_tokenizer_dir":  # the reference, over the same server
        with reference_pointed_at(hub_server.url, token, tmp_path / "hf-home"):
            ref = transformers.AutoTokenizer.from_pretrained(repo_id)
        assert (tmp_path / "hf-home" / "hub" / f"models--{repo_id.replace('/', '--')}").is_dir()
        assert dict(ref(TEXTS)) == dict(ours(TEXTS)) and ref.all_special_ids == ours.all_special_ids
        assert ref.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True) == ours.apply_chat_template(
            CHAT, tokenize=False, add_generation_prompt=True
        )


def test_missing_repository(hub_user):
    with pytest.raises(HubError):
        AutoTokenizer.from_pretrained(f"{hub_user[0]}/{unique_name('nothing-here')}")
