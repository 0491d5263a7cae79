"""Llama against the reference library on tiny random checkpoints (fp32, atol 1e-4)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

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
from haven.auto import AutoModelForCausalLM, AutoModelForSequenceClassification
from haven.models.llama import LlamaConfig, LlamaForCausalLM, LlamaModel


@pytest.fixture(scope="module")
def variants(tmp_path_factory, llama_dir, llama_dynamic_rope_dir) -> dict[str, str]:
    base = tmp_path_factory.mktemp("llama_variants")
    out = {"llama3+gqa": llama_dir, "dynamic": llama_dynamic_rope_dir}
    out["linear"] = build_reference(
        base / "linear",
        "llama",
        seed=11,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0},
    )
    out["head_dim+biases+tied"] = build_reference(
        base / "hd",
        "llama",
        seed=12,
        head_dim=16,
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
        num_key_value_heads=4,
    )
    # An older config.json: `rope_scaling` with `type`, and a top-level `rope_theta`.
    old = build_reference(
        base / "old", "llama", seed=13, rope_parameters={"rope_type": "linear", "factor": 3.0}
    )
    path = os.path.join(old, "config.json")
    cfg = json.load(open(path))
    cfg.pop("rope_parameters")
    cfg["rope_scaling"] = {"type": "linear", "factor": 3.0}
    cfg["rope_theta"] = 2000.0
    json.dump(cfg, open(path, "w"))
    out["old-rope_scaling"] = old
    return out


VARIANTS = ["llama3+gqa", "dynamic", "linear", "head_dim+biases+tied", "old-rope_scaling"]


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_and_loss_match_reference(variants, name):
    check_logits_and_loss(variants[name], seq_len=20)  # 20 > 16: past the dynamic/llama3 original length


@pytest.mark.parametrize("name", ["llama3+gqa", "head_dim+biases+tied"])
def test_left_padded_batch_equals_single_prompts(variants, name):
    check_left_padding(variants[name])


@pytest.mark.parametrize("name", ["llama3+gqa", "dynamic", "linear"])
def test_incremental_decoding_equals_full_forward(variants, name):
    check_incremental(variants[name], prompt_len=10, steps=10)  # crosses 16 for the dynamic variant


def test_past_key_values_reused_across_calls(llama_dir):
    check_two_calls(llama_dir)


def test_old_config_keys_read(variants):
    ours = AutoModelForCausalLM.from_pretrained(variants["old-rope_scaling"])
    assert isinstance(ours, LlamaForCausalLM)
    from haven.layers import rope_parameters

    params = rope_parameters(ours.config)
    assert params["rope_type"] == "linear" and params["rope_theta"] == 2000.0


def test_tied_embeddings_share_storage(variants):
    ours = AutoModelForCausalLM.from_pretrained(variants["head_dim+biases+tied"])
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    untied = AutoModelForCausalLM.from_pretrained(variants["llama3+gqa"])
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight


def test_save_pretrained_round_trip_loads_in_reference(tmp_path, llama_dir):
    import transformers

    ours = AutoModelForCausalLM.from_pretrained(llama_dir)
    ours.save_pretrained(tmp_path)
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids(ours.config.vocab_size, (1, 9))
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=1e-4)


def test_base_model_and_sequence_classification_match_reference(tmp_path):
    import transformers

    path = build_reference(tmp_path, "llama", seed=21, pad_token_id=0)
    ref_cls = transformers.LlamaForSequenceClassification
    torch.manual_seed(0)
    head = ref_cls(transformers.LlamaConfig.from_pretrained(path, num_labels=3)).eval()
    head.save_pretrained(tmp_path / "cls")
    ours = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")
    ids = random_ids(ours.config.vocab_size, (2, 7))
    ids[1, 5:] = 0  # right-padded row: the reference scores its last non-pad token
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        a, b = ours(ids, labels=labels), head(ids, labels=labels)
    assert torch.allclose(a.logits, b.logits, atol=1e-4) and torch.allclose(a.loss, b.loss, atol=1e-4)

    base, ref_base = load_pair(path, head="model")
    assert isinstance(base, LlamaModel)
    with torch.no_grad():
        assert torch.allclose(base(ids).last_hidden_state, ref_base(ids).last_hidden_state, atol=1e-4)


def test_unknown_rope_type_is_rejected():
    config = LlamaConfig(
        vocab_size=16,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        rope_parameters={"rope_type": "su-per", "factor": 2.0},
    )
    with pytest.raises(ValueError, match="rope type 'su-per' is not supported"):
        LlamaForCausalLM(config)


def test_bad_head_counts_and_mask_shape_are_rejected(llama_dir):
    from haven.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of num_key_value_heads"):
        LlamaConfig(num_attention_heads=4, num_key_value_heads=3)
    ours = AutoModelForCausalLM.from_pretrained(llama_dir)
    ids = random_ids(ours.config.vocab_size, (1, 5))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        ours(ids, attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        ours()


def test_loads_without_warnings(llama_dir, caplog):
    with caplog.at_level(logging.WARNING):
        _, info = LlamaForCausalLM.from_pretrained(llama_dir, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []


def test_bfloat16_close_to_reference_bfloat16(llama_dir):
    import transformers

    ours = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.bfloat16)
    ref = transformers.AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.bfloat16).eval()
    ids = random_ids(ours.config.vocab_size, (2, 12))
    with torch.no_grad():
        a, b = ours(ids).logits, ref(ids).logits
    assert a.dtype == torch.bfloat16
    assert (a.float() - b.float()).abs().max() < 0.05


def test_tuple_output_and_no_cache(llama_dir):
    ours = AutoModelForCausalLM.from_pretrained(llama_dir)
    ids = random_ids(ours.config.vocab_size, (1, 5))
    with torch.no_grad():
        out = ours(ids, use_cache=False)
        tup = ours(ids, use_cache=False, return_dict=False)
    assert out.past_key_values is None
    assert torch.equal(tup[0], out.logits)


def test_old_rotary_buffers_in_checkpoint_are_ignored(tmp_path, llama_dir):
    """Older Llama files carry `self_attn.rotary_emb.inv_freq` buffers: skipped without a warning."""
    import shutil

    from safetensors.torch import load_file, save_file

    weights = load_file(os.path.join(llama_dir, "model.safetensors"))
    for i in range(2):
        weights[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    save_file(weights, tmp_path / "model.safetensors")
    shutil.copy(os.path.join(llama_dir, "config.json"), tmp_path / "config.json")
    _, info = LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == [] and info["missing_keys"] == []


def test_training_gradients_match_reference(llama_dir):
    ours, ref = load_pair(llama_dir)
    ours.train()
    ref.train()
    ids = random_ids(ours.config.vocab_size, (2, 10))
    a, b = ours(ids, labels=ids), ref(ids, labels=ids)
    assert a.past_key_values is None  # no cache while training unless asked
    a.loss.backward()
    b.loss.backward()
    for name in (
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "lm_head.weight",
    ):
        ga, gb = ours.get_parameter(name).grad, ref.get_parameter(name).grad
        assert torch.allclose(ga, gb, atol=1e-5), name


def test_cache_reused_with_another_batch_size(llama_dir):
    check_cache_batch_change(llama_dir)


@torch.no_grad()
def test_cached_decoding_past_max_position_embeddings(llama_dir):
    """Llama has no position table: decoding past max_position_embeddings (64) goes on, as in
    the reference (RoPE tables grow), token by token through the cache."""
    ours, ref = load_pair(llama_dir)
    ids = random_ids(ours.config.vocab_size, (1, 70), seed=9)
    cache = ours(ids[:, :62], use_cache=True).past_key_values
    ref_cache = ref(ids[:, :62], use_cache=True).past_key_values
    for t in range(62, 70):
        a = ours(ids[:, t : t + 1], past_key_values=cache).logits
        b = ref(ids[:, t : t + 1], past_key_values=ref_cache).logits
        assert torch.allclose(a, b, atol=1e-4), t
    assert cache.get_seq_length() == 70


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_is_bit_identical_to_the_reference(dtype):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from haven.layers import RMSNorm

    torch.manual_seed(0)
    ours, ref = RMSNorm(96, eps=1e-5), LlamaRMSNorm(96, eps=1e-5)
    with torch.no_grad():
        ref.weight.normal_()
        ours.weight.copy_(ref.weight)
    ours, ref = ours.to(dtype), ref.to(dtype)
    for shape in [(1, 1, 96), (3, 7, 96), (2, 40, 96)]:
        x = (torch.randn(shape) * torch.rand(()) * 10).to(dtype)
        with torch.inference_mode():
            assert torch.equal(ours(x), ref(x)), shape
    x = torch.randn(2, 5, 96, requires_grad=True)  # training: autograd through the float32 path
    ours.float()(x).sum().backward()
    assert x.grad is not None and ours.weight.grad is not None
