"""`POST /models/{ns}/{name}` against a live `haven serve`: `huggingface_hub.InferenceClient` gets
exactly what `haven.pipeline` answers for the same folder and parameters, for every task."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
from huggingface_hub import InferenceClient

from .conftest import post

TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def client(inference_hub):
    def make(task: str) -> InferenceClient:
        repo = inference_hub.repos[task]
        r = post(inference_hub.url, repo, {"inputs": "warm [MASK] up" if task != "sentence-similarity"
                                           else {"source_sentence": "a", "sentences": ["b"]}},
                 inference_hub.token)
        # loaded (zero-shot needs candidate labels: its 400 comes after the load)
        assert r.status_code in (200, 400), r.text + inference_hub.server.log()[-3000:]
        return InferenceClient(model=f"{inference_hub.url}/models/{repo}", token=inference_hub.token)

    return make


def test_fill_mask(client, pipelines):
    pipe = pipelines("fill-mask")
    text = f"the quick brown {pipe.tokenizer.mask_token} jumps"
    got = client("fill-mask").fill_mask(text, top_k=3)
    want = pipe(text, top_k=3)
    assert [(g.token, g.token_str, g.sequence) for g in got] == [(w["token"], w["token_str"], w["sequence"]) for w in want]
    assert [g.score for g in got] == pytest.approx([w["score"] for w in want], abs=1e-6)


def test_text_classification(client, pipelines):
    got = client("text-classification").text_classification(TEXT, top_k=2)
    want = pipelines("text-classification")(TEXT, top_k=2)
    assert [(g.label, round(g.score, 6)) for g in got] == [(w["label"], round(w["score"], 6)) for w in want]


def test_token_classification(client, pipelines):
    got = client("token-classification").token_classification(TEXT, aggregation_strategy="simple")
    want = pipelines("token-classification")(TEXT, aggregation_strategy="simple")
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g.entity_group, g.word, g.start, g.end) == (w["entity_group"], w["word"], w["start"], w["end"])
        assert g.score == pytest.approx(float(w["score"]), abs=1e-6)


def test_zero_shot_classification(client, pipelines):
    labels = ["sports", "politics", "cooking"]
    got = client("zero-shot-classification").zero_shot_classification(TEXT, labels, multi_label=True)
    want = pipelines("zero-shot-classification")(TEXT, candidate_labels=labels, multi_label=True)
    assert [g.label for g in got] == want["labels"]
    assert [g.score for g in got] == pytest.approx(want["scores"], abs=1e-6)


def test_feature_extraction_token_states(client, pipelines):
    got = client("feature-extraction").feature_extraction(TEXT)
    want = np.array(pipelines("feature-extraction")(TEXT))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def _reference_sentence_embeddings(folder: str, texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2's sentence embedding computed with the reference library: mean pooling over
    the attention mask, then L2 normalisation (what its modules.json lists)."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_feature_extraction_sentence_transformers(client, inference_hub):
    got = client("st-feature-extraction").feature_extraction(TEXT)
    want = _reference_sentence_embeddings(inference_hub.folders["st-feature-extraction"], [TEXT])[0]
    assert got.shape == want.shape == (384,)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_sentence_similarity(client, pipelines, inference_hub):
    others = ["a fast fox leaps over a dog", "stock markets fell sharply today"]
    got = client("sentence-similarity").sentence_similarity(TEXT, other_sentences=others)
    want = pipelines("sentence-similarity")(TEXT, others)
    assert got == pytest.approx(want, abs=1e-6)
    ref = _reference_sentence_embeddings(inference_hub.folders["sentence-similarity"], [TEXT, *others])
    assert got == pytest.approx([float(ref[0] @ ref[1]), float(ref[0] @ ref[2])], abs=1e-4)


def test_text_generation_and_stream(client, pipelines):
    gen = client("text-generation")
    pipe = pipelines("text-generation")
    whole = gen.text_generation("once upon a time", max_new_tokens=12, do_sample=False)
    assert whole == pipe("once upon a time", max_new_tokens=12, do_sample=False)[0]["generated_text"]
    new = pipe("once upon a time", max_new_tokens=12, do_sample=False, return_full_text=False)[0]["generated_text"]
    pieces = list(gen.text_generation("once upon a time", max_new_tokens=12, do_sample=False, stream=True,
                                      return_full_text=False))
    assert "".join(pieces) == new  # greedy streaming gives the unstreamed text
    details = list(gen.text_generation("once upon a time", max_new_tokens=12, do_sample=False, stream=True,
                                       return_full_text=False, details=True))
    assert len(details) == 12 and details[-1].generated_text == new
    assert [d.token.id for d in details] == pipe(
        "once upon a time", max_new_tokens=12, do_sample=False, return_tensors=True
    )[0]["generated_token_ids"][-12:]


def test_stream_is_server_sent_events(inference_hub):
    body = {"inputs": "hello", "parameters": {"max_new_tokens": 3, "do_sample": False}, "stream": True,
            "options": {"wait_for_model": True}}
    with httpx.stream("POST", f"{inference_hub.url}/models/{inference_hub.repos['text-generation']}", json=body,
                      headers={"Authorization": f"Bearer {inference_hub.token}"}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    assert [e["index"] for e in events] == [0, 1, 2]
    assert all(e["generated_text"] is None for e in events[:-1]) and isinstance(events[-1]["generated_text"], str)
    assert set(events[0]["token"]) == {"id", "text", "logprob", "special"}


def test_revision_route_and_seeded_sampling(inference_hub, pipelines):
    from haven.generation import set_seed

    body = {"inputs": "the fox", "parameters": {"max_new_tokens": 6, "do_sample": True, "seed": 7,
                                                  "return_full_text": False}}
    r = post(inference_hub.url, inference_hub.repos["text-generation"] + "/revision/main", body, inference_hub.token)
    assert r.status_code == 200, r.text
    again = post(inference_hub.url, inference_hub.repos["text-generation"], body, inference_hub.token)
    assert again.json() == r.json()  # the same seed draws the same tokens
    set_seed(7)
    want = pipelines("text-generation")("the fox", max_new_tokens=6, do_sample=True, return_full_text=False)
    assert r.json() == want
