"""DistilBERT against the reference implementation, on tiny checkpoints the reference saved."""

from __future__ import annotations

import pytest
import torch

from fixtures.encoders import MAX_TOKENS, assert_close, load_both, run_both
from haven import AutoConfig, AutoModel
from haven.errors import InputTooLongError
from haven.models.distilbert import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertModel,
)


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
