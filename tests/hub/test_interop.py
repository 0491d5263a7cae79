"""Interop with the real `huggingface_hub` client (and `transformers`), both ways, plus the cache:
Haven's cache is laid out exactly as `huggingface_hub` reads it, and the other way round."""

from __future__ import annotations

import hashlib

import huggingface_hub
import pytest
import torch

from haven import AutoModelForMaskedLM, AutoTokenizer
from haven.hub.client import HubClient
from hub.helpers import read_tree, reference_pointed_at, write_tree

TREE = {
    "config.json": b'{"a": 1}\n',
    "weights.bin": hashlib.sha256(b"w").digest() * 50000,  # 1.6 MB, LFS
    "nested/dir/file.txt": b"nested\n",
}


@pytest.fixture
def hf_api(hub):
    return huggingface_hub.HfApi(endpoint=hub.url, token=hub.token)


def test_uploaded_with_haven_downloads_with_huggingface_hub(hub, tmp_path, monkeypatch):
    repo = hub.new_repo("h2hf")
    hub.client.create_repo(repo)
    hub.client.upload_folder(repo_id=repo, folder_path=write_tree(tmp_path / "src", TREE))
    hf_cache = tmp_path / "hf-cache"
    folder = huggingface_hub.snapshot_download(repo, endpoint=hub.url, token=hub.token, cache_dir=hf_cache)
    assert read_tree(folder) == TREE
    path = huggingface_hub.hf_hub_download(repo, "weights.bin", endpoint=hub.url, token=hub.token,
                                           cache_dir=tmp_path / "hf-cache-2")
    assert open(path, "rb").read() == TREE["weights.bin"]

    # ... and Haven reads that huggingface_hub cache offline
    monkeypatch.setenv("HAVEN_OFFLINE", "1")
    offline = HubClient(cache_dir=hf_cache)
    assert read_tree(offline.snapshot_download(repo)) == TREE
    assert offline.stats["requests"] == 0


def test_uploaded_with_huggingface_hub_downloads_with_haven(hub, hf_api, tmp_path):
    repo = hub.new_repo("hf2h")
    hf_api.create_repo(repo)
    hf_api.upload_folder(repo_id=repo, folder_path=write_tree(tmp_path / "src", TREE), commit_message="from hf")
    assert read_tree(hub.client.snapshot_download(repo)) == TREE
    assert hub.client.list_repo_commits(repo)[0].title == "from hf"
    hf_api.create_branch(repo, branch="exp")
    hf_api.upload_file(path_or_fileobj=b"exp", path_in_repo="config.json", repo_id=repo, revision="exp")
    assert open(hub.client.hf_hub_download(repo, "config.json", revision="exp"), "rb").read() == b"exp"


def test_huggingface_hub_reads_havens_cache_offline(hub, tmp_path):
    repo = hub.new_repo("cache")
    hub.client.create_repo(repo)
    hub.client.upload_folder(repo_id=repo, folder_path=write_tree(tmp_path / "src", TREE))
    folder = hub.client.snapshot_download(repo)
    hub.client.create_branch(repo, "v2")
    hub.client.hf_hub_download(repo, "config.json", revision="v2")
    from haven.hub import resolve_file

    assert resolve_file(repo, "missing.json", optional=True) is None  # leaves a .no_exist marker

    cache = str(hub.cache_dir)
    for name in TREE:
        path = huggingface_hub.hf_hub_download(repo, name, cache_dir=cache, local_files_only=True)
        assert path.startswith(folder) and open(path, "rb").read() == TREE[name]
    assert huggingface_hub.snapshot_download(repo, cache_dir=cache, local_files_only=True) == folder
    assert huggingface_hub.try_to_load_from_cache(repo, "config.json", cache_dir=cache, revision="v2")
    assert huggingface_hub.try_to_load_from_cache(repo, "missing.json", cache_dir=cache) is huggingface_hub.file_download._CACHED_NO_EXIST
    info = huggingface_hub.scan_cache_dir(cache)
    assert not info.warnings
    (entry,) = [r for r in info.repos if r.repo_id == repo]
    assert entry.repo_type == "model" and entry.nb_files == len(TREE) + 1  # + .gitattributes
    assert {"main", "v2"} <= {ref for rev in entry.revisions for ref in rev.refs}


def test_transformers_loads_a_model_pushed_with_haven(hub, bert_masked_lm_dir, tmp_path):
    import transformers

    model = AutoModelForMaskedLM.from_pretrained(bert_masked_lm_dir)
    tokenizer = AutoTokenizer.from_pretrained(bert_masked_lm_dir)
    repo = hub.new_repo("for-transformers")
    model.push_to_hub(repo, tokenizer=tokenizer)
    AutoModelForMaskedLM.from_pretrained(repo)  # fills Haven's cache
    batch = tokenizer(["Hello world!", "A longer second sentence."], padding=True, return_tensors="pt")
    with reference_pointed_at(hub.url, hub.token, tmp_path / "hf-home"):
        online = transformers.AutoModelForMaskedLM.from_pretrained(repo).eval()
        # the same model read from Haven's cache, with no network at all
        offline = transformers.AutoModelForMaskedLM.from_pretrained(
            repo, cache_dir=str(hub.cache_dir), local_files_only=True
        ).eval()
    assert (tmp_path / "hf-home" / "hub" / f"models--{repo.replace('/', '--')}").is_dir()  # really fetched online
    with torch.inference_mode():
        ours = model(**batch).logits
        online_logits, offline_logits = (m(**batch).logits for m in (online, offline))
    torch.testing.assert_close(ours, online_logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(online_logits, offline_logits)
