"""`transformers` loads a checkpoint pushed to the Haven hub, by repo id, over HF_ENDPOINT."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch
from huggingface_hub import HfApi

from fixtures.server import unique_name

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from transformers import AutoModel, AutoTokenizer
    repo_id, out = sys.argv[1], sys.argv[2]
    model = AutoModel.from_pretrained(repo_id).eval()
    tok = AutoTokenizer.from_pretrained(repo_id)
    ids = tok(["hello world", "a hub of our own"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**ids).last_hidden_state
    torch.save({"hidden": hidden, "input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}, out)
    """
)


def test_transformers_from_pretrained_over_the_hub(hub_server, bert_masked_lm_dir, tmp_path):
    from transformers import AutoModel

    name = unique_name("erin")
    token = hub_server.create_user(name)
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/tiny-bert").repo_id
    api.upload_folder(repo_id=repo_id, folder_path=bert_masked_lm_dir)
    out = tmp_path / "out.pt"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, repo_id, str(out)],
        env=hub_server.env(token),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out)
    local = AutoModel.from_pretrained(bert_masked_lm_dir).eval()
    with torch.no_grad():
        want = local(input_ids=got["input_ids"], attention_mask=got["attention_mask"]).last_hidden_state
    torch.testing.assert_close(got["hidden"], want, rtol=0, atol=0)
