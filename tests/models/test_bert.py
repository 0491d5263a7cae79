"""BERT against the reference implementation, on tiny checkpoints the reference saved."""

from __future__ import annotations

import pytest
import torch

from fixtures.encoders import MAX_TOKENS, assert_close, load_both, run_both
from haven import AutoModel, AutoModelForMaskedLM
from haven.errors import InputTooLongError
from haven.models.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel


def test_token_type_ids_change_the_output(bert_masked_lm_dir):
    ours, ref, tok = load_both("bert", "masked_lm", bert_masked_lm_dir)
    batch = dict(tok(["hello world", "the fox"], padding=True, return_tensors="pt"))
    batch["token_type_ids"] = torch.ones_like(batch["input_ids"])
    out, expected = run_both(ours, ref, batch)
    assert_close(out, expected)
    default, _ = run_both(ours, ref, {k: v for k, v in batch.items() if k != "token_type_ids"})
    assert (out.logits - default.logits).abs().max() > 1e-2


def test_base_model_has_pooler_output(bert_sequence_classification_dir):
    # the classification checkpoint carries bert.pooler.*; the base model strips the "bert." prefix
    ours, ref, tok = load_both("bert", "model", bert_sequence_classification_dir)
    assert isinstance(ours, BertModel)
    batch = dict(tok(["hello world", "the quick brown fox"], padding=True, return_tensors="pt"))
    out, expected = run_both(ours, ref, batch)
    assert out.pooler_output.shape == (2, 32)
    assert_close(out, expected)


def test_position_and_inputs_embeds_arguments(bert_masked_lm_dir):
    ours, ref, tok = load_both("bert", "masked_lm", bert_masked_lm_dir)
    ids = tok(["hello world"], return_tensors="pt")["input_ids"]
    position_ids = torch.arange(3, 3 + ids.shape[1])[None]
    assert_close(*run_both(ours, ref, {"input_ids": ids, "position_ids": position_ids}))
    embeds = ref.get_input_embeddings()(ids).detach()
    assert_close(*run_both(ours, ref, {"inputs_embeds": embeds}))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        ours(input_ids=ids, inputs_embeds=embeds)


def test_return_dict_false_gives_a_tuple(bert_masked_lm_dir):
    ours, _, tok = load_both("bert", "masked_lm", bert_masked_lm_dir)
    batch = dict(tok(["hello world"], return_tensors="pt"))
    with torch.inference_mode():
        as_tuple = ours(**batch, return_dict=False)
        as_dict = ours(**batch)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    assert torch.equal(as_tuple[0], as_dict.logits) and torch.equal(as_dict[0], as_dict["logits"])


def test_input_longer_than_max_positions_is_a_clear_error(bert_masked_lm_dir):
    model = AutoModelForMaskedLM.from_pretrained(bert_masked_lm_dir)
    ids = torch.full((1, MAX_TOKENS + 1), 7)
    with pytest.raises(InputTooLongError, match=r"129 tokens.*at most 128.*truncation=True"):
        model(input_ids=ids)
    assert model(input_ids=ids[:, :MAX_TOKENS]).logits.shape[1] == MAX_TOKENS


def test_built_from_config_is_randomly_initialised():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37
    )
    model = BertForMaskedLM(config)
    emb = model.bert.embeddings.word_embeddings.weight
    assert not emb.is_meta and 0.015 < emb.std().item() < 0.025  # N(0, initializer_range)
    assert model.cls.predictions.decoder.weight is emb  # tied
    assert torch.count_nonzero(emb[config.pad_token_id]) == 0
    assert torch.count_nonzero(model.cls.predictions.bias) == 0
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    assert torch.equal(model.bert.embeddings.LayerNorm.weight, torch.ones(32))
    out = model(input_ids=torch.tensor([[2, 5, 6, 3]]))
    assert out.logits.shape == (1, 4, 99)


def test_auto_model_from_a_head_checkpoint_strips_the_prefix(bert_masked_lm_dir):
    model = AutoModel.from_pretrained(bert_masked_lm_dir)
    assert type(model).__name__ == "BertModel"
    ours, ref, tok = load_both("bert", "model", bert_masked_lm_dir)
    batch = dict(tok(["hello world"], return_tensors="pt"))
    out, expected = run_both(ours, ref, batch)
    # the MLM checkpoint has no pooler: both libraries initialise it randomly, so compare the encoder only
    assert_close(out, expected, fields=("last_hidden_state",))


def test_training_mode_backpropagates_and_uses_dropout():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    model = BertForSequenceClassification(config).train()
    ids = torch.randint(5, 50, (4, 9))
    a, b = model(input_ids=ids).logits, model(input_ids=ids).logits
    assert not torch.equal(a, b)  # dropout is active while training
    mask = torch.ones_like(ids)
    mask[1:, 6:] = 0  # padded: the packed path trains too
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 1, 0]))
    out.loss.backward()
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    model.eval()
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
