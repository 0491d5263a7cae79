"""GPT-2 against the reference library on tiny random checkpoints (fp32, atol 1e-4)."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures.decoders import (
    build_reference,
    check_cache_batch_change,
    check_incremental,
    check_left_padding,
    check_logits_and_loss,
    check_two_calls,
    load_pair,
    random_ids,
)
from haven.auto import AutoConfig, AutoModelForCausalLM
from haven.errors import InputTooLongError
from haven.models.gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model


@pytest.fixture(scope="module")
def variants(tmp_path_factory, gpt2_dir) -> dict[str, str]:
    base = tmp_path_factory.mktemp("gpt2_variants")
    return {
        "default": gpt2_dir,
        "inverse_layer_idx+upcast": build_reference(
            base / "scaled",
            "gpt2",
            seed=31,
            scale_attn_by_inverse_layer_idx=True,
            reorder_and_upcast_attn=True,
        ),
        "untied+n_inner+relu": build_reference(
            base / "untied",
            "gpt2",
            seed=32,
            tie_word_embeddings=False,
            n_inner=48,
            activation_function="relu",
        ),
    }


@pytest.mark.parametrize("name", ["default", "inverse_layer_idx+upcast", "untied+n_inner+relu"])
def test_logits_and_loss_match_reference(variants, name):
    check_logits_and_loss(variants[name])


def test_left_padded_batch_equals_single_prompts(gpt2_dir):
    check_left_padding(gpt2_dir)


def test_incremental_decoding_equals_full_forward(gpt2_dir):
    check_incremental(gpt2_dir)


def test_past_key_values_reused_across_calls(gpt2_dir):
    check_two_calls(gpt2_dir)


def test_config_aliases_and_defaults(gpt2_dir):
    config = AutoConfig.from_pretrained(gpt2_dir)
    assert isinstance(config, GPT2Config)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (32, 4, 2)
    assert config.max_position_embeddings == config.n_positions == 64
    config.hidden_size = 64
    assert config.n_embd == 64
    import transformers

    ours, ref = GPT2Config(), transformers.GPT2Config()
    for key in (
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "layer_norm_epsilon",
        "bos_token_id",
    ):
        assert getattr(ours, key) == getattr(ref, key), key


def test_tied_lm_head_and_untied(variants):
    tied = AutoModelForCausalLM.from_pretrained(variants["default"])
    assert isinstance(tied, GPT2LMHeadModel)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    untied = AutoModelForCausalLM.from_pretrained(variants["untied+n_inner+relu"])
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_conv1d_weights_keep_checkpoint_layout(gpt2_dir):
    ours = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    weights = load_file(f"{gpt2_dir}/model.safetensors")
    w = weights["transformer.h.0.attn.c_attn.weight"]
    assert w.shape == (32, 96)  # (in, out)
    assert torch.equal(ours.state_dict()["transformer.h.0.attn.c_attn.weight"], w)


def test_old_checkpoint_without_prefix_and_with_mask_buffers(tmp_path, gpt2_dir, caplog):
    """The original gpt2 files: no `transformer.` prefix, plus attn.bias / attn.masked_bias buffers."""
    weights = load_file(f"{gpt2_dir}/model.safetensors")
    old = {k.removeprefix("transformer."): v for k, v in weights.items() if k != "lm_head.weight"}
    for i in range(2):
        old[f"h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
        old[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(old, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(open(f"{gpt2_dir}/config.json").read())
    with caplog.at_level(logging.WARNING):
        ours, info = GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert not [r for r in caplog.records if r.name.startswith("haven")]
    _, ref = load_pair(gpt2_dir)
    ids = random_ids(ours.config.vocab_size, (1, 10))
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=1e-4)


def test_base_model_matches_reference(gpt2_dir):
    ours, ref = load_pair(gpt2_dir, head="model")
    assert isinstance(ours, GPT2Model)
    ids = random_ids(ours.config.vocab_size, (2, 8))
    with torch.no_grad():
        assert torch.allclose(ours(ids).last_hidden_state, ref(ids).last_hidden_state, atol=1e-4)


def test_prompt_longer_than_context_window(gpt2_dir):
    ours = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    with pytest.raises(InputTooLongError, match="context window of 64 positions"):
        ours(random_ids(ours.config.vocab_size, (1, 65)))
    out = ours(random_ids(ours.config.vocab_size, (1, 60)), use_cache=True)
    with pytest.raises(InputTooLongError, match="60 cached"):
        ours(random_ids(ours.config.vocab_size, (1, 5)), past_key_values=out.past_key_values)


@pytest.mark.parametrize("dtype, atol", [(torch.float16, 0.01), (torch.bfloat16, 0.05)])
@pytest.mark.parametrize("name", ["default", "inverse_layer_idx+upcast"])
def test_half_precision_close_to_reference_half(variants, name, dtype, atol):
    """fp16/bf16 against the reference in the same dtype (prefill and a cached step); the
    upcast variant takes Haven's float32-softmax path."""
    import transformers

    ours = AutoModelForCausalLM.from_pretrained(variants[name], dtype=dtype)
    ref = transformers.AutoModelForCausalLM.from_pretrained(variants[name], dtype=dtype).eval()
    ids = random_ids(ours.config.vocab_size, (2, 11))
    with torch.no_grad():
        a, b = ours(ids[:, :10], use_cache=True), ref(ids[:, :10], use_cache=True)
        a2 = ours(ids[:, 10:], past_key_values=a.past_key_values).logits
        b2 = ref(ids[:, 10:], past_key_values=b.past_key_values).logits
    assert a.logits.dtype == dtype
    assert (a.logits.float() - b.logits.float()).abs().max() < atol
    assert (a2.float() - b2.float()).abs().max() < atol


def test_past_key_values_must_be_a_kv_cache(gpt2_dir):
    ours = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids = random_ids(ours.config.vocab_size, (1, 4))
    with pytest.raises(TypeError, match="haven.layers.KVCache"):
        ours(ids, past_key_values=((torch.zeros(1), torch.zeros(1)),))


def test_sequence_classification_matches_reference(tmp_path, gpt2_dir):
    import transformers

    config = transformers.GPT2Config.from_pretrained(gpt2_dir, num_labels=2, pad_token_id=0)
    torch.manual_seed(0)
    ref = transformers.GPT2ForSequenceClassification(config).eval()
    ref.save_pretrained(tmp_path)
    from haven.auto import AutoModelForSequenceClassification

    ours = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    ids = random_ids(config.vocab_size, (2, 8))
    ids[0, 6:] = 0  # padded row: scored at its last real token
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        a, b = ours(ids, labels=labels), ref(ids, labels=labels)
    assert torch.allclose(a.logits, b.logits, atol=1e-4) and torch.allclose(a.loss, b.loss, atol=1e-4)


def test_inputs_embeds_equal_input_ids(gpt2_dir):
    ours = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids = random_ids(ours.config.vocab_size, (2, 6))
    with torch.no_grad():
        a = ours(ids).logits
        b = ours(inputs_embeds=ours.transformer.wte(ids)).logits
    assert torch.equal(a, b)


def test_cache_reused_with_another_batch_size(gpt2_dir):
    check_cache_batch_change(gpt2_dir)
