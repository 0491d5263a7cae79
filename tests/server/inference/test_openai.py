"""The `openai` client against a live hub (`base_url="<hub>/v1"`, a Haven token as api_key):
chat and completions, streamed and not, and embeddings, compared with `haven.pipeline`, the
reference tokenizer (usage counts) and the reference model (embeddings)."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from .test_models_api import _reference_sentence_embeddings

PROMPT = "once upon a time"
CHAT = [{"role": "user", "content": "tell me a story"}]


@pytest.fixture(scope="module")
def client(inference_hub):
    return openai.OpenAI(base_url=f"{inference_hub.url}/v1", api_key=inference_hub.token, max_retries=0, timeout=120)


def test_models_lists_generation_and_embedding_repos(client, inference_hub):
    ids = {m.id for m in client.models.list()}
    for task in ("text-generation", "sentence-similarity", "feature-extraction"):
        assert inference_hub.repos[task] in ids
    assert inference_hub.repos["fill-mask"] not in ids


def test_completions(client, inference_hub, pipelines):
    import transformers

    repo = inference_hub.repos["text-generation"]
    got = client.completions.create(model=repo, prompt=PROMPT, max_tokens=10, temperature=0)
    want = pipelines("text-generation")(PROMPT, max_new_tokens=10, do_sample=False, return_full_text=False)
    assert got.choices[0].text == want[0]["generated_text"]
    ref_tok = transformers.AutoTokenizer.from_pretrained(inference_hub.folders["text-generation"])
    assert got.usage.prompt_tokens == len(ref_tok(PROMPT)["input_ids"])
    assert got.usage.completion_tokens <= 10 and got.usage.total_tokens == got.usage.prompt_tokens + got.usage.completion_tokens
    streamed = client.completions.create(model=f"{repo}@main", prompt=PROMPT, max_tokens=10, temperature=0, stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == got.choices[0].text
    assert chunks[-1].choices[0].finish_reason == got.choices[0].finish_reason


def test_chat(client, inference_hub, pipelines):
    import transformers

    repo = inference_hub.repos["text-generation"]
    got = client.chat.completions.create(model=repo, messages=CHAT, max_tokens=8, temperature=0)
    want = pipelines("text-generation")(CHAT, max_new_tokens=8, do_sample=False, return_full_text=False)
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == want[0]["generated_text"]
    ref_tok = transformers.AutoTokenizer.from_pretrained(inference_hub.folders["text-generation"])
    assert got.usage.prompt_tokens == len(ref_tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True,
                                                                     return_dict=True)["input_ids"])
    stream = client.chat.completions.create(model=repo, messages=CHAT, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == got.choices[0].message.content
    last = chunks[-1].usage
    assert (last.prompt_tokens, last.completion_tokens, last.total_tokens) == (
        got.usage.prompt_tokens, got.usage.completion_tokens, got.usage.total_tokens)


def test_chat_n_seed_and_stop(client, inference_hub):
    repo = inference_hub.repos["text-generation"]
    one = client.chat.completions.create(model=repo, messages=CHAT, max_tokens=6, n=2, seed=3, temperature=1.0)
    two = client.chat.completions.create(model=repo, messages=CHAT, max_tokens=6, n=2, seed=3, temperature=1.0)
    assert len(one.choices) == 2
    assert [c.message.content for c in one.choices] == [c.message.content for c in two.choices]
    greedy = client.completions.create(model=repo, prompt=PROMPT, max_tokens=10, temperature=0).choices[0].text
    stop = greedy[4:6]
    cut = client.completions.create(model=repo, prompt=PROMPT, max_tokens=10, temperature=0, stop=[stop])
    text = cut.choices[0].text
    assert cut.choices[0].finish_reason == "stop"
    assert greedy.startswith(text) and len(text) < len(greedy) and stop not in text


def test_embeddings(client, inference_hub):
    import base64

    texts = ["the fox jumps", "markets fell today"]
    want = _reference_sentence_embeddings(inference_hub.folders["sentence-similarity"], texts)
    repo = inference_hub.repos["sentence-similarity"]
    for fmt in ("float", None):  # None: the client asks for base64 itself and decodes it
        got = client.embeddings.create(model=repo, input=texts, **({"encoding_format": fmt} if fmt else {}))
        np.testing.assert_allclose(np.array([d.embedding for d in got.data]), want, atol=1e-4)
    raw = client.embeddings.create(model=repo, input=texts, encoding_format="base64")
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in raw.data]
    np.testing.assert_allclose(np.array(decoded), want, atol=1e-4)
    assert got.usage.prompt_tokens > 0


def test_errors_in_openai_shape(client, inference_hub):
    with pytest.raises(openai.BadRequestError, match="fill-mask"):
        client.completions.create(model=inference_hub.repos["fill-mask"], prompt="x", max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model=f"{inference_hub.user}/no-such-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.completions.create(model=inference_hub.repos["text-generation"], prompt="x", max_tokens=2,
                                  logit_bias={"1": 2})
    with pytest.raises(openai.BadRequestError, match="fewer prompts"):  # could never be queued whole: not 429
        client.completions.create(model=inference_hub.repos["text-generation"], prompt=["x"] * 33, n=8, max_tokens=2)


def test_private_models_are_not_shown_to_others(inference_hub, gpt2_dir, tmp_path):
    """/v1/models lists a private repo to its owner only; its completions are 404 to anyone else."""
    from fixtures.server import unique_name

    from .conftest import publish, with_card

    repo = f"{inference_hub.user}/{unique_name('secret')}"
    publish(inference_hub.url, inference_hub.token, repo, with_card(gpt2_dir, tmp_path / "m", "text-generation"),
            private=True)
    other = inference_hub.server.create_user(unique_name("other"))
    owner = openai.OpenAI(base_url=f"{inference_hub.url}/v1", api_key=inference_hub.token, max_retries=0)
    assert repo in {m.id for m in owner.models.list()}
    for key in (other, "anonymous"):  # another user's token; no token at all (the client needs some key)
        outsider = openai.OpenAI(base_url=f"{inference_hub.url}/v1", api_key=key, max_retries=0)
        if key == "anonymous":
            outsider = outsider.with_options(default_headers={"Authorization": ""})
        assert repo not in {m.id for m in outsider.models.list()}
        with pytest.raises(openai.NotFoundError):
            outsider.completions.create(model=repo, prompt="x", max_tokens=2)
        with pytest.raises(openai.NotFoundError):
            outsider.chat.completions.create(model=repo, messages=CHAT, max_tokens=2)


def test_query_parameters_are_refused(inference_hub):
    """The inference routes take no query parameters: 400 (OpenAI's error shape under /v1), not ignored."""
    import httpx

    auth = {"Authorization": f"Bearer {inference_hub.token}"}
    listed = httpx.get(f"{inference_hub.url}/v1/models?limit=3", headers=auth, timeout=60)
    assert listed.status_code == 400 and "'limit'" in listed.json()["error"]["message"]
    body = {"model": inference_hub.repos["text-generation"], "prompt": "x", "max_tokens": 2}
    done = httpx.post(f"{inference_hub.url}/v1/completions?stream=1", json=body, headers=auth, timeout=60)
    assert done.status_code == 400 and "'stream'" in done.json()["error"]["message"]
    repo = inference_hub.repos["text-classification"]
    hosted = httpx.post(f"{inference_hub.url}/models/{repo}?wait_for_model=true", json={"inputs": "x"}, headers=auth,
                        timeout=60)
    assert hosted.status_code == 400 and "'wait_for_model'" in hosted.json()["error"]
