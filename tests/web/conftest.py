"""A small populated hub for the web page tests, built with the real huggingface_hub client.

`site` (session-scoped, on the shared `hub_server`): one owner with
- `tiny-bert`: a full card (license, languages, datasets, base model, model-index, a table, fenced
  code), config.json (BertForMaskedLM), tokenizer.json, an LFS weights file, then a second commit
  that edits the card and config and replaces the weights;
- `secret-model`: private, card license `secret-license`, pipeline `text-classification`;
- `hostile`: a card with script tags, event attributes, javascript:/data: URLs; a file named
  `<img src=x onerror=alert(1)>.txt`; a commit message with HTML;
- the dataset `fr-reviews`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.torch import save

from fixtures.server import unique_name

CARD_META = {
    "license": "mit",
    "language": ["fr", "en"],
    "datasets": ["wiki-fr"],
    "base_model": "some-org/base-bert",
    "tags": ["tiny", "demo-weights"],
    "pipeline_tag": "fill-mask",
    "model-index": [{
        "name": "tiny-bert",
        "results": [{
            "task": {"type": "fill-mask", "name": "Masked language modelling"},
            "dataset": {"type": "wiki-fr", "name": "Wiki FR"},
            "metrics": [{"type": "accuracy", "value": 0.4242, "name": "Accuracy"}],
        }],
    }],
}
CARD_BODY = """
# Tiny BERT

A *tiny* model with **demo** weights.

## Results table

| metric | value |
|--------|-------|
| acc    | 0.42  |

```python
from haven import pipeline
pipe = pipeline("fill-mask", model="x/y")
```

See [the config](config.json).
"""
HOSTILE_CARD = """---
license: apache-2.0
---
# Hostile card

<script>window.__xss = 1; alert(1)</script>

<img src="x" onerror="window.__xss = 2">

<a href="javascript:window.__xss=3">js link</a>

[md js link](javascript:window.__xss=4)

<a href="data:text/html,<script>alert(1)</script>">data link</a>

<iframe src="javascript:alert(1)"></iframe>

<svg><script>alert(1)</script></svg>

<p onclick="window.__xss=5" style="background:url(javascript:alert(1))">click me</p>
"""
HOSTILE_FILE = "<img src=x onerror=alert(1)>.txt"
HOSTILE_MESSAGE = "<script>window.__xss=6</script><b>bold</b> message"


@dataclass
class Site:
    url: str
    owner: str
    token: str
    api: HfApi
    first_commit: str
    second_commit: str
    weights_v1: bytes
    weights_v2: bytes
    hostile_commit: str
    stranger_token: str  # a signed-in user with no access to the owner's private repos
    hostile_file: str = HOSTILE_FILE


def _card(meta: dict, body: str) -> bytes:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}".encode()


@pytest.fixture(scope="session")
def site(hub_server) -> Site:
    owner = unique_name("webowner")
    token = hub_server.create_user(owner)
    api = HfApi(endpoint=hub_server.url, token=token)

    repo = api.create_repo(f"{owner}/tiny-bert").repo_id
    v1 = save({"w": torch.arange(64, dtype=torch.float32)})
    v2 = save({"w": torch.arange(128, dtype=torch.float32)})
    config = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "hidden_size": 8}
    ops = [
        CommitOperationAdd("README.md", _card(CARD_META, CARD_BODY)),
        CommitOperationAdd("config.json", json.dumps(config, indent=2).encode()),
        CommitOperationAdd("tokenizer.json", b"{}"),
        CommitOperationAdd("model.safetensors", v1),
        CommitOperationAdd("src/notes.py", b"def hello():\n    return 'hi'\n"),
    ]
    first = api.create_commit(repo, ops, commit_message="Add tiny bert").oid
    config["hidden_size"] = 16
    ops = [
        CommitOperationAdd("config.json", json.dumps(config, indent=2).encode()),
        CommitOperationAdd("model.safetensors", v2),
    ]
    second = api.create_commit(repo, ops, commit_message="Grow hidden size", commit_description="Twice as wide.").oid
    api.create_tag(repo, tag="v1.0", revision=first)

    secret = api.create_repo(f"{owner}/secret-model", private=True).repo_id
    secret_meta = {"license": "secret-license", "pipeline_tag": "text-classification", "tags": ["secret-tag"]}
    api.upload_file(path_or_fileobj=_card(secret_meta, "# Secret\n"), path_in_repo="README.md", repo_id=secret)

    hostile = api.create_repo(f"{owner}/hostile").repo_id
    api.upload_file(path_or_fileobj=HOSTILE_CARD.encode(), path_in_repo="README.md", repo_id=hostile)
    hostile_commit = api.upload_file(
        path_or_fileobj=b"<script>alert(1)</script>\n", path_in_repo=HOSTILE_FILE, repo_id=hostile,
        commit_message=HOSTILE_MESSAGE,
    ).oid

    ds = api.create_repo(f"{owner}/fr-reviews", repo_type="dataset").repo_id
    ds_meta = {"language": ["fr"], "license": "cc-by-4.0", "task_categories": ["text-classification"]}
    api.upload_file(path_or_fileobj=_card(ds_meta, "# Reviews\n"), path_in_repo="README.md", repo_id=ds,
                    repo_type="dataset")
    stranger = hub_server.create_user(unique_name("stranger"))
    return Site(hub_server.url, owner, token, api, first, second, v1, v2, hostile_commit, stranger)


# -- a real browser (Playwright driving Debian's chromium, headless) for the browser tests -------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module (the tests skip when /usr/bin/chromium is missing)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    yield pg
    context.close()
