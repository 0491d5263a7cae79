"""DistilBERT against the reference implementation, on tiny checkpoints the reference saved."""

from __future__ import annotations

import pytest
import torch

from fixtures.encoders import (
    HEADS,
    MAX_TOKENS,
    assert_close,
    check_classifier_shortcut,
    check_logits_at,
    check_losses,
    check_padded_batch,
    check_pairs,
    check_sequence_loss,
    load_both,
    run_both,
)
from haven import AutoConfig, AutoModel
from haven.errors import InputTooLongError
from haven.models.distilbert import (
    DistilBertConfig,
    DistilBertForMaskedLM,
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


@pytest.mark.parametrize("head", HEADS)
def test_losses(head, request):
    check_losses("distilbert", head, request.getfixturevalue(f"distilbert_{head}_dir"), seed=1)


@pytest.mark.parametrize(
    ("num_labels", "labels", "problem_type"),
    [
        (1, torch.tensor([0.25, -2.0]), "regression"),
        (3, torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), "multi_label_classification"),
    ],
)
def test_regression_and_multi_label_losses(
    tmp_path, distilbert_tokenizer_dir, num_labels, labels, problem_type
):
    assert (
        check_sequence_loss("distilbert", distilbert_tokenizer_dir, tmp_path, 31, labels, num_labels)
        == problem_type
    )


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
    check_classifier_shortcut("distilbert", distilbert_sequence_classification_dir)


@pytest.mark.parametrize("head", ["masked_lm", "token_classification"])
def test_logits_at_selected_positions(head, request):
    check_logits_at("distilbert", request.getfixturevalue(f"distilbert_{head}_dir"), head)
