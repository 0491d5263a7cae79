"""One reading of dtype names, for from_pretrained, quantization configs and `haven convert`."""

from __future__ import annotations

import pytest
import torch

from haven import QuantizationConfig
from haven.dtypes import dtype_or_auto, parse_dtype


@pytest.mark.parametrize(
    "value, expected",
    [(torch.bfloat16, torch.bfloat16), ("bfloat16", torch.bfloat16), ("torch.float16", torch.float16), ("float32", torch.float32)],
)
def test_names_and_dtypes(value, expected):
    assert parse_dtype(value) is expected


@pytest.mark.parametrize("value", ["float33", "Tensor", "", None])
def test_what_is_not_a_dtype_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"compute_dtype=.* is not a dtype; pass e\.g\. torch\.bfloat16"):
        parse_dtype(value, "compute_dtype")


def test_quantization_config_and_from_pretrained_share_it(tmp_path):
    with pytest.raises(ValueError, match="compute_dtype='half-ish' is not a dtype"):
        QuantizationConfig(bits=8, compute_dtype="half-ish")
    assert dtype_or_auto("auto") is None and dtype_or_auto(None) is None
    with pytest.raises(ValueError, match="dtype='float33' is not a dtype"):
        dtype_or_auto("float33")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_cast_load_equals_casting_the_float32_model(gpt2_dir, dtype):
    """dtype= casts the checkpoint tensor by tensor while loading: the values are the float32
    model's cast, and GPT-2's output layer stays its token embedding (one parameter)."""
    from haven import AutoModelForCausalLM

    cast = AutoModelForCausalLM.from_pretrained(gpt2_dir, dtype=dtype)
    full = AutoModelForCausalLM.from_pretrained(gpt2_dir).to(dtype)
    assert cast.lm_head.weight is cast.transformer.wte.weight
    mine, theirs = cast.state_dict(), full.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key].dtype == theirs[key].dtype and torch.equal(mine[key], theirs[key]), key


def test_a_cast_load_gives_back_the_float32_pages_as_it_copies(gpt2_dir, monkeypatch):
    """Peak memory holds the cast model and a slice of one float32 tensor, not both models:
    every byte of every float32 tensor of the checkpoint is handed to release_mapped_pages once
    copied (the benchmark `generate.py --memory` measures the peak RSS this gives)."""
    import haven.checkpoint as checkpoint
    from haven import AutoModelForCausalLM

    mapped = checkpoint.load_checkpoint(gpt2_dir)
    spans = {(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in mapped.values() if t.is_floating_point()}
    released = []
    real = checkpoint.release_mapped_pages

    def record(tensor):
        released.append((tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * tensor.element_size()))
        return real(tensor)

    import haven.modeling as modeling

    monkeypatch.setattr(checkpoint, "release_mapped_pages", record)
    monkeypatch.setattr(checkpoint, "_CAST_BYTES", 256)  # several slices per matrix
    monkeypatch.setattr(modeling, "load_checkpoint", lambda *a, **k: mapped)  # the views recorded above
    AutoModelForCausalLM.from_pretrained(gpt2_dir, dtype=torch.bfloat16)
    assert len(released) > len(spans)  # the matrices in slices
    for start, end in spans:
        covered = start
        for a, b in sorted(s for s in released if start <= s[0] < end):
            assert a <= covered, "a gap"
            covered = max(covered, b)
        assert covered >= end, "not all of a tensor was released"


def test_cast_floats_takes_empty_and_zero_dim_tensors():
    from haven.checkpoint import cast_floats

    state = {"empty": torch.zeros(0, 4), "scalar": torch.tensor(1.5), "ids": torch.arange(3), "w": torch.randn(3, 2)}
    cast = cast_floats(state, torch.bfloat16)
    assert cast["empty"].shape == (0, 4) and cast["empty"].dtype == torch.bfloat16
    assert cast["scalar"].item() == 1.5 and cast["scalar"].dtype == torch.bfloat16
    assert cast["ids"] is state["ids"]
    assert torch.equal(cast["w"], state["w"].to(torch.bfloat16))
