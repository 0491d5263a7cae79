"""`transformers` loads a checkpoint pushed to the Haven hub, by repo id, over HF_ENDPOINT.

In-process (the test session has transformers imported already; a subprocess spent most of its
time importing it again): the environment gets HF_ENDPOINT / HF_HOME / HF_TOKEN and
`huggingface_hub.constants` is re-read from it, exactly as a fresh process would at import;
both are restored afterwards.
"""

from __future__ import annotations

import importlib
import os
from contextlib import contextmanager

import torch
from huggingface_hub import HfApi

from fixtures.server import unique_name

ENV_KEYS = ("HF_ENDPOINT", "HF_HOME", "HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE")


@contextmanager
def hub_environment(env: dict):
    """Run with the hub client configured from `env` as a new process would be."""
    import huggingface_hub.constants as constants

    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    try:
        for k in ENV_KEYS:
            if env.get(k) is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = env[k]
        importlib.reload(constants)
        yield constants
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        importlib.reload(constants)


def test_transformers_from_pretrained_over_the_hub(hub_server, bert_masked_lm_dir):
    from transformers import AutoModel, AutoTokenizer

    name = unique_name("erin")
    token = hub_server.create_user(name)
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/tiny-bert", private=True).repo_id
    api.upload_folder(repo_id=repo_id, folder_path=bert_masked_lm_dir)

    with hub_environment(hub_server.env(token)) as constants:
        assert constants.ENDPOINT == hub_server.url
        model = AutoModel.from_pretrained(repo_id).eval()  # private: needs HF_TOKEN from the env
        tok = AutoTokenizer.from_pretrained(repo_id)
        files = sorted(os.listdir(constants.HF_HUB_CACHE))
    assert any(name in f for f in files)  # the downloads landed in the hub env's cache
    import huggingface_hub.constants

    assert huggingface_hub.constants.ENDPOINT == (os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    ids = tok(["hello world", "a hub of our own"], padding=True, return_tensors="pt")
    local = AutoModel.from_pretrained(bert_masked_lm_dir).eval()
    with torch.no_grad():
        got = model(**ids).last_hidden_state
        want = local(**ids).last_hidden_state
    torch.testing.assert_close(got, want, rtol=0, atol=0)
