"""Model methods people use, compared with the reference library on tiny checkpoints it saved:
num_parameters, resize_token_embeddings, gradient checkpointing."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

from haven.auto import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

# (fixture, Haven auto class, reference auto class)
CASES = {
    "bert-mlm": ("bert_masked_lm_dir", AutoModelForMaskedLM, transformers.AutoModelForMaskedLM),
    "distilbert-mlm": ("distilbert_masked_lm_dir", AutoModelForMaskedLM, transformers.AutoModelForMaskedLM),
    "roberta-mlm": ("roberta_masked_lm_dir", AutoModelForMaskedLM, transformers.AutoModelForMaskedLM),
    "bert-cls": (
        "bert_sequence_classification_dir",
        AutoModelForSequenceClassification,
        transformers.AutoModelForSequenceClassification,
    ),
    "distilbert-cls": (
        "distilbert_sequence_classification_dir",
        AutoModelForSequenceClassification,
        transformers.AutoModelForSequenceClassification,
    ),
    "bert-base": ("bert_masked_lm_dir", AutoModel, transformers.AutoModel),
    "gpt2": ("gpt2_dir", AutoModelForCausalLM, transformers.AutoModelForCausalLM),
    "llama": ("llama_dir", AutoModelForCausalLM, transformers.AutoModelForCausalLM),
}
LM_CASES = ["bert-mlm", "distilbert-mlm", "roberta-mlm", "gpt2", "llama"]


def _load(case: str, request: pytest.FixtureRequest):
    fixture, ours_cls, ref_cls = CASES[case]
    path = request.getfixturevalue(fixture)
    return ours_cls.from_pretrained(path), ref_cls.from_pretrained(path).eval()


def _ids(vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, vocab, (2, 7), generator=torch.Generator().manual_seed(seed))


# -- num_parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_num_parameters_matches_the_reference(case, request):
    ours, ref = _load(case, request)
    for kwargs in ({}, {"exclude_embeddings": True}):
        assert ours.num_parameters(**kwargs) == ref.num_parameters(**kwargs), kwargs
    # freeze the base model: only the head (or nothing) stays trainable
    for model in (ours, ref):
        for name, p in model.named_parameters():
            p.requires_grad_(not name.startswith(model.base_model_prefix + ".") and model.base_model_prefix != "")
    for kwargs in ({"only_trainable": True}, {"only_trainable": True, "exclude_embeddings": True}):
        assert ours.num_parameters(**kwargs) == ref.num_parameters(**kwargs), kwargs


# -- resize_token_embeddings ----------------------------------------------------------------------


@pytest.mark.parametrize("case", LM_CASES)
@pytest.mark.parametrize("grow", [True, False], ids=["grow", "shrink"])
def test_resize_token_embeddings_matches_the_reference(case, grow, request):
    ours, ref = _load(case, request)
    old_vocab = ours.config.vocab_size
    new_vocab = old_vocab + 13 if grow else old_vocab - 5
    old_rows = ours.get_input_embeddings().weight.detach().clone()
    torch.manual_seed(0)
    emb = ours.resize_token_embeddings(new_vocab)
    ref_emb = ref.resize_token_embeddings(new_vocab)
    assert emb is ours.get_input_embeddings()
    assert ours.config.vocab_size == ref.config.vocab_size == new_vocab
    assert emb.weight.shape == ref_emb.weight.shape == (new_vocab, old_rows.shape[1])
    keep = min(old_vocab, new_vocab)
    assert torch.equal(emb.weight[:keep], old_rows[:keep])
    # new rows: around the old rows' mean, as the reference draws them
    torch.testing.assert_close(emb.weight, ref_emb.weight, atol=1e-3, rtol=0)
    out, ref_out = ours.get_output_embeddings(), ref.get_output_embeddings()
    assert out.weight.shape == ref_out.weight.shape
    torch.testing.assert_close(out.weight, ref_out.weight, atol=1e-3, rtol=0)
    if ref_out.bias is not None:
        torch.testing.assert_close(out.bias, ref_out.bias, atol=1e-5, rtol=0)
    if ours.config.tie_word_embeddings:
        assert out.weight is emb.weight
    ids = _ids(keep)  # old tokens: the same hidden states
    with torch.inference_mode():
        logits, ref_logits = ours(input_ids=ids).logits, ref(input_ids=ids).logits
    assert logits.shape[-1] == new_vocab
    torch.testing.assert_close(logits[..., :keep], ref_logits[..., :keep], atol=1e-4, rtol=0)
    # new tokens' logits: both near h . mean row; the rows' random draws (~1e-5) scale with |h|
    torch.testing.assert_close(logits, ref_logits, atol=1e-2, rtol=0)
    with torch.inference_mode():
        assert torch.isfinite(ours(input_ids=_ids(new_vocab, seed=1)).logits).all()


@pytest.mark.parametrize("case", ["bert-mlm", "llama"])
def test_resized_model_round_trips_through_the_reference(case, request, tmp_path):
    ours, _ = _load(case, request)
    ours.resize_token_embeddings(ours.config.vocab_size + 3, pad_to_multiple_of=8)
    assert ours.config.vocab_size % 8 == 0
    ours.save_pretrained(tmp_path)
    ref = CASES[case][2].from_pretrained(tmp_path).eval()
    ids = _ids(ours.config.vocab_size)
    with torch.inference_mode():
        torch.testing.assert_close(ours(input_ids=ids).logits, ref(input_ids=ids).logits, atol=1e-4, rtol=0)


def test_resize_pad_to_multiple_of_and_no_op(request):
    ours, ref = _load("gpt2", request)
    vocab = ours.config.vocab_size
    assert ours.resize_token_embeddings() is ours.get_input_embeddings()
    assert ours.config.vocab_size == vocab
    emb = ours.resize_token_embeddings(None, pad_to_multiple_of=64)
    ref_emb = ref.resize_token_embeddings(None, pad_to_multiple_of=64)
    assert emb.weight.shape == ref_emb.weight.shape
    assert ours.config.vocab_size == ref.config.vocab_size
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        ours.resize_token_embeddings(100, pad_to_multiple_of=0)


def test_resize_without_mean_resizing_uses_the_init(request):
    ours, _ = _load("llama", request)
    vocab = ours.config.vocab_size
    emb = ours.resize_token_embeddings(vocab + 200, mean_resizing=False)
    std = ours.config.initializer_range
    assert abs(emb.weight[vocab:].std().item() - std) < 0.2 * std
    assert ours.lm_head.weight.shape == (vocab + 200, ours.config.hidden_size)


# -- gradient checkpointing -----------------------------------------------------------------------


def _grads(model, ids, seed=0, **kwargs):
    model.zero_grad()
    torch.manual_seed(seed)  # dropout draws the same masks in both runs
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0  # padding: encoders' classifiers take the packed path
    out = model(input_ids=ids, attention_mask=mask, **kwargs)
    loss = out.loss if out.loss is not None else out.logits.float().pow(2).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _counting(fn, calls):
    def counted(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return counted


def _layer_list(model):
    base = getattr(model, model.base_model_prefix, model) if model.base_model_prefix else model
    for name in ("encoder", "transformer", "h", "layers"):
        stack = getattr(base, name, None)
        if stack is not None:
            return getattr(stack, "layer", stack)
    raise AssertionError("no layer list")


@pytest.mark.parametrize("case", ["bert-mlm", "bert-cls", "distilbert-cls", "roberta-mlm", "gpt2", "llama"])
def test_gradient_checkpointing_gives_the_same_gradients(case, request):
    ours, _ = _load(case, request)
    ours.train()
    ids = _ids(ours.config.vocab_size)
    labels = {"labels": torch.tensor([0, 1])} if "cls" in case else {"labels": ids}
    calls = []
    layer = _layer_list(ours)[0]
    for name in ("forward", "forward_packed"):  # the padded and the packed (padding-free) paths
        if hasattr(layer, name):
            setattr(layer, name, _counting(getattr(layer, name), calls))
    assert not ours.is_gradient_checkpointing
    loss, grads = _grads(ours, ids, **labels)
    plain_calls = len(calls)
    ours.gradient_checkpointing_enable()
    assert ours.is_gradient_checkpointing
    calls.clear()
    loss_ckpt, grads_ckpt = _grads(ours, ids, **labels)
    assert len(calls) == 2 * plain_calls  # the layer ran again in the backward pass
    torch.testing.assert_close(loss_ckpt, loss, atol=0, rtol=0)
    assert grads.keys() == grads_ckpt.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-6, rtol=0, msg=name)
    # eval mode: nothing is recomputed
    ours.eval()
    calls.clear()
    _grads(ours, ids, **labels)
    assert len(calls) == plain_calls
    ours.gradient_checkpointing_disable()
    assert not ours.is_gradient_checkpointing


def test_gradient_checkpointing_kwargs_reach_torch(request):
    ours, _ = _load("bert-mlm", request)
    ours.train()
    ours.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    ids = _ids(ours.config.vocab_size)
    ours.gradient_checkpointing_disable()
    _, grads = _grads(ours, ids, labels=ids)
    ours.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    _, grads_ckpt = _grads(ours, ids, labels=ids)
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-6, rtol=0, msg=name)
    ours.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"not_an_option": 1})
    with pytest.raises(ValueError, match="not_an_option"):
        ours(input_ids=ids, labels=ids).loss.backward()


def test_checkpointing_decoder_turns_the_cache_off_as_the_reference(request, caplog):
    ours, ref = _load("gpt2", request)
    for model in (ours, ref):
        model.train()
        model.gradient_checkpointing_enable()
    ids = _ids(ours.config.vocab_size)
    with caplog.at_level(logging.WARNING):
        out = ours(input_ids=ids, use_cache=True)
        ref_out = ref(input_ids=ids, use_cache=True)
    assert "use_cache=False" in caplog.text
    assert out.past_key_values is None and ref_out.past_key_values is None
    torch.testing.assert_close(out.logits, ref_out.logits, atol=1e-4, rtol=0)
    with torch.no_grad():
        cache = ours(input_ids=ids, use_cache=True).past_key_values  # no grad: nothing is checkpointed
    assert cache is not None
    with pytest.raises(ValueError, match="cannot write a KV cache"):
        ours(input_ids=ids[:, :1], past_key_values=cache)
