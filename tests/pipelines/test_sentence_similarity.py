"""sentence-similarity: pooled embeddings + cosine, against an independent computation with the
reference library's AutoModel outputs (the sentence-transformers convention)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from haven import pipeline
from haven.pipelines import PipelineError

SOURCE = "A man is eating food."
SENTENCES = ["A man eats something.", "The weather was cold, so they stayed inside.", "Un homme mange.", "ok"]


def _write_sentence_transformers_dir(
    root: Path, tokenizer_dir: str, pooling: str | None, normalize: bool
) -> str:
    import transformers

    from fixtures.encoders import randomize, reference_config

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    model = transformers.BertModel(reference_config("bert", tokenizer), add_pooling_layer=True)
    randomize(model, 31)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    if pooling is None:
        return str(root)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (root / "2_Normalize").mkdir()
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    modes = {f"pooling_mode_{m}": m == pooling for m in ("cls_token", "mean_tokens", "max_tokens")}
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    (root / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 16, "do_lower_case": False})
    )
    return str(root)


def reference_embeddings(
    path: str, sentences: list[str], pooling: str, max_length: int | None
) -> torch.Tensor:
    """Pool the reference AutoModel's token vectors by hand, one sentence at a time."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    rows = []
    for sentence in sentences:
        options = {"truncation": True, "max_length": max_length} if max_length else {}
        enc = tokenizer(sentence, return_tensors="pt", **options)
        with torch.no_grad():
            tokens = model(**enc).last_hidden_state[0]  # (T, H)
        if pooling == "cls_token":
            rows.append(tokens[0])
        elif pooling == "max_tokens":
            rows.append(tokens.max(dim=0).values)
        else:
            rows.append(tokens.mean(dim=0))
    return torch.stack(rows)


def cosine(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return ((b @ a) / (b.norm(dim=-1) * a.norm())).tolist()


CONFIGS = [(None, False), ("mean_tokens", True), ("cls_token", False), ("max_tokens", True)]


@pytest.mark.parametrize(("pooling", "normalize"), CONFIGS)
def test_scores_match_independent_computation(tmp_path, bert_tokenizer_dir, pooling, normalize):
    path = _write_sentence_transformers_dir(tmp_path, bert_tokenizer_dir, pooling, normalize)
    max_length = 16 if pooling else None
    vectors = reference_embeddings(path, [SOURCE, *SENTENCES], pooling or "mean_tokens", max_length)
    expected = cosine(vectors[0], vectors[1:])

    task = None if pooling else "sentence-similarity"  # modules.json alone tells the task
    pipe = pipeline(task, model=path, batch_size=3)
    assert pipe.task == "sentence-similarity"
    for got in (pipe(SOURCE, SENTENCES), pipe({"source_sentence": SOURCE, "sentences": SENTENCES})):
        assert all(isinstance(x, float) for x in got)
        assert got == pytest.approx(expected, abs=1e-4)

    embeddings = pipe.encode([SOURCE, *SENTENCES])
    assert embeddings.shape == vectors.shape
    if normalize:
        assert torch.allclose(embeddings.norm(dim=-1), torch.ones(len(embeddings)), atol=1e-5)
        assert torch.allclose(embeddings, torch.nn.functional.normalize(vectors, dim=-1), atol=1e-4)
    else:
        assert torch.allclose(embeddings, vectors, atol=1e-4)


def test_batch_of_queries_keeps_order(tmp_path, bert_tokenizer_dir):
    path = _write_sentence_transformers_dir(tmp_path, bert_tokenizer_dir, "mean_tokens", False)
    pipe = pipeline("sentence-similarity", model=path)
    queries = [{"source_sentence": s, "sentences": SENTENCES} for s in (SOURCE, "ok", SENTENCES[1])]
    batched = pipe(queries, batch_size=4)
    assert batched == [pytest.approx(pipe(q), abs=1e-5) for q in queries]
    assert batched[1][3] == pytest.approx(1.0, abs=1e-5)  # "ok" against itself


def test_bad_input(tmp_path, bert_tokenizer_dir):
    path = _write_sentence_transformers_dir(tmp_path, bert_tokenizer_dir, None, False)
    pipe = pipeline("sentence-similarity", model=path)
    with pytest.raises(PipelineError, match="source_sentence"):
        pipe("just one sentence")
    with pytest.raises(PipelineError, match="strings"):
        pipe(SOURCE, [1, 2])
