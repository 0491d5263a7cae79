"""DistilBERT against the reference implementation, on tiny checkpoints the reference saved."""

from __future__ import annotations

import pytest
import torch

from fixtures.encoders import (
    HEADS,
    MAX_TOKENS,
    assert_close,
    build_reference_model,
    check_logits_at,
    check_padded_batch,
    check_pairs,
    load_both,
    run_both,
)
from haven import AutoConfig, AutoModel
from haven.errors import InputTooLongError
from haven.models.distilbert import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    DistilBertModel,
)


@pytest.mark.parametrize("head", HEADS)
def test_padded_batch_matches_reference(head, request):
    check_padded_batch("distilbert", head, request.getfixturevalue(f"distilbert_{head}_dir"))


@pytest.mark.parametrize("head", HEADS)
def test_sentence_pairs(head, request):
    batch = check_pairs("distilbert", head, request.getfixturevalue(f"distilbert_{head}_dir"))
    assert "token_type_ids" not in batch  # DistilBERT has no segment embeddings


def test_token_type_ids_are_accepted_and_ignored(distilbert_sequence_classification_dir):
    ours, _, tok = load_both("distilbert", "sequence_classification", distilbert_sequence_classification_dir)
    batch = dict(tok(["hello world"], return_tensors="pt"))
    with torch.inference_mode():
        plain = ours(**batch).logits
        typed = ours(**batch, token_type_ids=torch.ones_like(batch["input_ids"])).logits
    assert torch.equal(plain, typed)


def test_config_aliases():
    config = AutoConfig.for_model("distilbert", dim=48, n_heads=3, n_layers=1)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (48, 3, 1)
    assert DistilBertConfig().hidden_dim == 3072


def test_base_model(distilbert_masked_lm_dir):
    ours, ref, tok = load_both("distilbert", "model", distilbert_masked_lm_dir)
    assert isinstance(ours, DistilBertModel) and isinstance(
        AutoModel.from_pretrained(distilbert_masked_lm_dir), DistilBertModel
    )
    batch = dict(tok(["hello world", "the lazy dog"], padding=True, return_tensors="pt"))
    out, expected = run_both(ours, ref, batch)
    assert out.pooler_output is None
    assert_close(out, expected)


def test_losses(
    distilbert_masked_lm_dir, distilbert_sequence_classification_dir, distilbert_token_classification_dir
):
    for head, path in (
        ("masked_lm", distilbert_masked_lm_dir),
        ("sequence_classification", distilbert_sequence_classification_dir),
        ("token_classification", distilbert_token_classification_dir),
    ):
        ours, ref, tok = load_both("distilbert", head, path)
        batch = dict(tok(["hello world", "the quick brown fox"], padding=True, return_tensors="pt"))
        if head == "sequence_classification":
            labels = torch.tensor([1, 0])
        else:
            labels = torch.randint(0, 5, batch["input_ids"].shape, generator=torch.Generator().manual_seed(1))
            labels[batch["attention_mask"] == 0] = -100
        out, expected = run_both(ours, ref, {**batch, "labels": labels})
        assert out.loss is not None
        assert_close(out, expected)


@pytest.mark.parametrize(
    ("num_labels", "labels"),
    [(1, torch.tensor([0.25, -2.0])), (3, torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))],
)
def test_regression_and_multi_label_losses(tmp_path, distilbert_tokenizer_dir, num_labels, labels):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(distilbert_tokenizer_dir)
    ref = build_reference_model("distilbert", "sequence_classification", tok, 31, num_labels=num_labels)
    ref.config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    ref.config.label2id = {v: k for k, v in ref.config.id2label.items()}
    ref.save_pretrained(tmp_path)
    ours = DistilBertForSequenceClassification.from_pretrained(tmp_path)
    batch = dict(tok(["a good day", "a bad day indeed"], padding=True, return_tensors="pt"))
    out, expected = run_both(ours, ref, {**batch, "labels": labels})
    assert ours.config.problem_type == ref.config.problem_type
    assert_close(out, expected)


def test_sinusoidal_position_embeddings_match_reference_init():
    import transformers

    kwargs = dict(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=20)
    ref = transformers.DistilBertModel(transformers.DistilBertConfig(sinusoidal_pos_embds=True, **kwargs))
    ours = DistilBertModel(DistilBertConfig(sinusoidal_pos_embds=True, **kwargs))
    torch.testing.assert_close(
        ours.embeddings.position_embeddings.weight,
        ref.embeddings.position_embeddings.weight,
        atol=1e-6,
        rtol=0,
    )


def test_input_longer_than_max_positions(distilbert_masked_lm_dir):
    model = DistilBertForMaskedLM.from_pretrained(distilbert_masked_lm_dir)
    with pytest.raises(InputTooLongError, match="truncation=True"):
        model(input_ids=torch.full((2, MAX_TOKENS + 5), 7))


def test_classifier_shortcut_matches_full_computation(distilbert_sequence_classification_dir):
    ours, ref, tok = load_both(
        "distilbert", "sequence_classification", distilbert_sequence_classification_dir
    )
    batch = dict(
        tok(
            ["hi", "hello world", "the quick brown fox jumps over the lazy dog"],
            padding=True,
            return_tensors="pt",
        )
    )
    out, expected = run_both(ours, ref, batch)
    assert_close(out, expected)
    with torch.inference_mode():
        full = ours(**batch, output_attentions=True).logits
    torch.testing.assert_close(out.logits, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", ["masked_lm", "token_classification"])
def test_logits_at_selected_positions(head, request):
    check_logits_at("distilbert", request.getfixturevalue(f"distilbert_{head}_dir"), head)
