"""push_to_hub and from_pretrained by id, end to end against a real hub server."""

from __future__ import annotations

import torch

from haven import AutoConfig, AutoModelForMaskedLM, AutoTokenizer
from haven.hub.card import ModelCard
from haven.hub.client import HubClient

TEXTS = ["Hello world!", "The quick brown fox jumps over the lazy dog."]


def test_push_model_and_tokenizer_then_load_by_id(hub, bert_masked_lm_dir, monkeypatch, tmp_path):
    model = AutoModelForMaskedLM.from_pretrained(bert_masked_lm_dir)
    tokenizer = AutoTokenizer.from_pretrained(bert_masked_lm_dir)
    repo = hub.new_repo("tiny-bert")
    info = model.push_to_hub(repo, tokenizer=tokenizer, commit_message="add tiny bert")

    commits = HubClient().list_repo_commits(repo)
    assert commits[0].title == "add tiny bert" and commits[0].commit_id == info.oid
    assert len(commits) == 2  # the repository's initial commit + ONE commit with everything
    files = set(hub.client.list_repo_files(repo, revision=info.oid))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= files
    card = ModelCard.load(repo)
    assert card.data.pipeline_tag == "fill-mask" and "haven" in card.data.tags
    card.validate()

    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "fresh-home"))  # nothing cached
    loaded = AutoModelForMaskedLM.from_pretrained(repo)
    loaded_tok = AutoTokenizer.from_pretrained(repo)
    batch = loaded_tok(TEXTS, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == tokenizer(TEXTS, padding=True, return_tensors="pt")["input_ids"].tolist()
    with torch.inference_mode():
        expected = model(**batch).logits
        got = loaded(**batch).logits
    assert torch.equal(expected, got)
    assert (loaded.config.vocab_size, loaded.config.hidden_size) == (model.config.vocab_size, model.config.hidden_size)

    # a second push keeps the existing card, and only touches what changed
    again = model.push_to_hub(repo, tokenizer=tokenizer)
    assert again.skipped and again.oid == info.oid


def test_config_and_tokenizer_push_private_org_and_branch(hub, hub_server, bert_masked_lm_dir):
    config = AutoConfig.from_pretrained(bert_masked_lm_dir)
    org = hub.new_repo("org").split("/")[1]
    hub_server.create_org(org, hub.user)
    info = config.push_to_hub("cfg-only", organization=org, private=True, commit_message="config")
    repo = f"{org}/cfg-only"
    assert info.commit_url.startswith(f"{hub.url}/{repo}/commit/")
    assert hub.client.model_info(repo).private is True
    assert hub.client.list_repo_files(repo) == [".gitattributes", "README.md", "config.json"]
    assert AutoConfig.from_pretrained(repo).hidden_size == config.hidden_size

    tokenizer = AutoTokenizer.from_pretrained(bert_masked_lm_dir)
    tokenizer.push_to_hub(repo, revision="tok", commit_message="tokenizer on a branch")
    assert "tokenizer.json" not in hub.client.list_repo_files(repo)
    assert "tokenizer.json" in hub.client.list_repo_files(repo, revision="tok")
    again = AutoTokenizer.from_pretrained(repo, revision="tok")
    assert again("Hello world!")["input_ids"] == tokenizer("Hello world!")["input_ids"]


def test_sharded_checkpoint_round_trip(hub, bert_masked_lm_dir, monkeypatch, tmp_path):
    model = AutoModelForMaskedLM.from_pretrained(bert_masked_lm_dir)
    repo = hub.new_repo("sharded")
    model.push_to_hub(repo, max_shard_size="100KB")
    files = hub.client.list_repo_files(repo)
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in files
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "fresh"))
    loaded = AutoModelForMaskedLM.from_pretrained(repo)
    ids = torch.tensor([[2, 5, 7, 9, 3]])
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
