"""RoBERTa, CamemBERT and XLM-RoBERTa against the reference implementation."""

from __future__ import annotations

import pytest
import torch

from fixtures.encoders import MAX_TOKENS, assert_close, build_reference_model, load_both, run_both
from haven import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification
from haven.errors import InputTooLongError
from haven.models.roberta import (
    CamembertForMaskedLM,
    RobertaForSequenceClassification,
    RobertaModel,
    XLMRobertaForMaskedLM,
    position_ids_from_input_ids,
)


def test_position_ids_skip_padding():
    ids = torch.tensor([[0, 5, 6, 2, 1, 1], [0, 7, 2, 1, 1, 1]])
    assert position_ids_from_input_ids(ids, 1).tolist() == [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]]


def test_padding_does_not_change_real_tokens(roberta_masked_lm_dir):
    """Left-to-right positions of real tokens are the same alone or in a padded batch."""
    ours, ref, tok = load_both("roberta", "masked_lm", roberta_masked_lm_dir)
    alone = dict(tok(["Hello world!"], return_tensors="pt"))
    batch = dict(
        tok(
            ["Hello world!", "The quick brown fox jumps over the lazy dog."],
            padding=True,
            return_tensors="pt",
        )
    )
    with torch.inference_mode():
        a = ours(**alone).logits[0]
        b = ours(**batch).logits[0, : a.shape[0]]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert_close(*run_both(ours, ref, batch))


def test_base_model_with_pooler(tmp_path, roberta_tokenizer_dir):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(roberta_tokenizer_dir)
    config = build_reference_model("roberta", "masked_lm", tok, 41).config
    torch.manual_seed(41)
    ref = transformers.RobertaModel(config).eval()
    ref.save_pretrained(tmp_path)
    ours = RobertaModel.from_pretrained(tmp_path)
    batch = dict(tok(["Hello world!", "How are you today?"], padding=True, return_tensors="pt"))
    out, expected = run_both(ours, ref, batch)
    assert out.pooler_output is not None
    assert_close(out, expected)


def test_inputs_embeds_use_sequential_positions(roberta_masked_lm_dir):
    ours, ref, tok = load_both("roberta", "masked_lm", roberta_masked_lm_dir)
    ids = tok(["Hello world!"], return_tensors="pt")["input_ids"]
    embeds = ref.get_input_embeddings()(ids).detach()
    out, expected = run_both(ours, ref, {"inputs_embeds": embeds})
    assert_close(out, expected)


def test_auto_classes_pick_the_family(camembert_masked_lm_dir, roberta_sequence_classification_dir):
    assert type(AutoModelForMaskedLM.from_pretrained(camembert_masked_lm_dir)) is CamembertForMaskedLM
    model = AutoModelForSequenceClassification.from_pretrained(roberta_sequence_classification_dir)
    assert type(model) is RobertaForSequenceClassification
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert AutoConfig.for_model("camembert").model_type == "camembert"


def test_xlm_roberta_matches_reference(tmp_path, roberta_tokenizer_dir):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(roberta_tokenizer_dir)
    config = transformers.XLMRobertaConfig(
        **build_reference_model("roberta", "masked_lm", tok, 44).config.to_diff_dict()
    )
    torch.manual_seed(44)
    ref = transformers.XLMRobertaForMaskedLM(config).eval()
    ref.save_pretrained(tmp_path)
    ours = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert type(ours) is XLMRobertaForMaskedLM
    batch = dict(tok(["Hello world!", "How are you today?"], padding=True, return_tensors="pt"))
    assert_close(*run_both(ours, ref, batch))


def test_input_longer_than_max_positions(roberta_masked_lm_dir):
    model = AutoModelForMaskedLM.from_pretrained(roberta_masked_lm_dir)
    ok = torch.full((1, MAX_TOKENS), 7)  # positions 2..129 fit a table of 130
    assert model(input_ids=ok).logits.shape[1] == MAX_TOKENS
    with pytest.raises(InputTooLongError, match=r"at most 128.*truncation=True"):
        model(input_ids=torch.full((1, MAX_TOKENS + 1), 7))


def test_padding_beyond_the_position_table_is_fine(roberta_masked_lm_dir):
    """Only real tokens take positions: a batch padded past the table still runs, as in the reference."""
    ours, ref, _ = load_both("roberta", "masked_lm", roberta_masked_lm_dir)
    ids = torch.full((2, MAX_TOKENS + 10), 1)  # pad_token_id = 1
    ids[0, :MAX_TOKENS] = 7
    ids[1, :5] = 8
    mask = (ids != 1).long()
    assert_close(*run_both(ours, ref, {"input_ids": ids, "attention_mask": mask}))
