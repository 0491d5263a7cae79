"""Mistral (Llama + sliding-window attention) against the reference library (fp32, atol 1e-4)."""

from __future__ import annotations

import pytest
import torch

from fixtures.decoders import (
    build_reference,
    check_incremental,
    check_left_padding,
    check_logits_and_loss,
    check_two_calls,
    load_pair,
    random_ids,
)
from haven.auto import AutoConfig, AutoModelForCausalLM
from haven.models.llama import LlamaForCausalLM, MistralConfig, MistralForCausalLM


def test_logits_and_loss_match_reference(mistral_dir):
    check_logits_and_loss(mistral_dir, seq_len=12)  # 12 > sliding_window 4


def test_window_changes_the_output(mistral_dir, tmp_path):
    """The window is really applied: the same weights without a window give other logits."""
    ours = AutoModelForCausalLM.from_pretrained(mistral_dir)
    assert isinstance(ours, MistralForCausalLM) and isinstance(ours, LlamaForCausalLM)
    assert ours.config.sliding_window == 4
    unwindowed = AutoModelForCausalLM.from_pretrained(
        mistral_dir, config=MistralConfig.from_pretrained(mistral_dir)
    )
    unwindowed.model.sliding_window = None
    ids = random_ids(ours.config.vocab_size, (1, 10))
    with torch.no_grad():
        a, b = ours(ids).logits, unwindowed(ids).logits
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)  # within the window: identical
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)


def test_left_padded_batch_equals_single_prompts(mistral_dir):
    check_left_padding(mistral_dir, lengths=(9, 5, 7))


def test_incremental_decoding_with_window_equals_full_forward(mistral_dir):
    check_incremental(mistral_dir, prompt_len=6, steps=6)


def test_past_key_values_reused_across_calls(mistral_dir):
    check_two_calls(mistral_dir)


def test_null_window_and_defaults(tmp_path):
    import transformers

    path = build_reference(tmp_path, "mistral", seed=41, sliding_window=None)
    config = AutoConfig.from_pretrained(path)
    assert isinstance(config, MistralConfig) and config.sliding_window is None
    check_logits_and_loss(path, seq_len=10)
    ours, ref = MistralConfig(), transformers.MistralConfig()
    for key in (
        "intermediate_size",
        "num_key_value_heads",
        "max_position_embeddings",
        "sliding_window",
        "head_dim",
    ):
        assert getattr(ours, key) == getattr(ref, key), key


def test_reference_loads_haven_save(tmp_path, mistral_dir):
    ours, _ = load_pair(mistral_dir)
    ours.save_pretrained(tmp_path)
    import transformers

    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(ref).__name__ == "MistralForCausalLM"
    ids = random_ids(ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=1e-4)


@pytest.mark.parametrize("window", [1, 3])
def test_small_windows(tmp_path, window):
    check_logits_and_loss(build_reference(tmp_path, "mistral", seed=42, sliding_window=window), seq_len=8)
