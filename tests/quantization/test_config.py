"""Quantization arguments: Haven's QuantizationConfig, the reference's BitsAndBytesConfig by field
name (fields Haven cannot honour raise), and the quantize / pack / dequantize primitives checked
against values computed independently here."""

from __future__ import annotations

import pytest
import torch
import transformers

from haven import BitsAndBytesConfig, QuantizationConfig
from haven.errors import CheckpointError
from haven.linear.config import resolve
from haven.linear.quantize import dequantize, pack_int4, quantize, unpack_int4


def test_load_in_flags_become_haven_configs():
    assert resolve(load_in_8bit=True) == QuantizationConfig(bits=8, group_size=32, symmetric=True)
    assert resolve(load_in_4bit=True) == QuantizationConfig(bits=4, group_size=32, symmetric=False)
    assert resolve() is None


def test_the_references_bitsandbytes_config_is_read_by_its_field_names():
    ref = transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=["classifier"]
    )
    given = {k: v for k, v in ref.to_dict().items() if k in ("load_in_4bit", "bnb_4bit_compute_dtype", "llm_int8_skip_modules")}
    ours = BitsAndBytesConfig(**given)
    expected = QuantizationConfig(bits=4, modules_to_not_convert=["classifier"], compute_dtype=torch.bfloat16)
    assert ours.to_haven() == expected
    assert resolve(quantization_config=given) == expected
    assert resolve(quantization_config={"quant_method": "bitsandbytes", **given}) == expected


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "neither bitsandbytes' 'fp4' nor 'nf4'"),
        ({"load_in_4bit": True, "bnb_4bit_use_double_quant": True}, "does not quantize them again"),
        ({"load_in_8bit": True, "llm_int8_threshold": 4.0}, "no outlier decomposition"),
        ({"load_in_8bit": True, "llm_int8_has_fp16_weight": True}, "for inference"),
        ({"load_in_8bit": True, "llm_int8_enable_fp32_cpu_offload": True}, "does not offload"),
        ({"load_in_4bit": True, "bnb_4bit_quant_storage": "float16"}, "two 4-bit codes per uint8"),
        ({"load_in_4bit": True, "load_in_8bit": True}, "pick one"),
        ({}, "needs load_in_8bit=True or load_in_4bit=True"),
    ],
    ids=repr,
)
def test_fields_haven_cannot_honour_raise(fields, reason):
    with pytest.raises(ValueError, match=reason):
        BitsAndBytesConfig(**fields)


def test_unknown_fields_and_types_are_refused():
    with pytest.raises(TypeError, match="unknown field"):
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_blocksize=64)
    with pytest.raises(ValueError, match="neither a BitsAndBytesConfig dict"):
        resolve(quantization_config={"quant_method": "gptq", "bits": 4})
    with pytest.raises(TypeError, match="quantization_config must be"):
        resolve(quantization_config="int4")
    with pytest.raises(ValueError, match="not both"):
        resolve(load_in_4bit=True, quantization_config=QuantizationConfig(bits=4))


@pytest.mark.parametrize("kwargs", [{"bits": 3}, {"group_size": 48}, {"compute_dtype": torch.int8}], ids=repr)
def test_quantization_config_checks_its_values(kwargs):
    with pytest.raises(ValueError):
        QuantizationConfig(**kwargs)


def test_config_json_round_trip_and_foreign_formats():
    config = QuantizationConfig(bits=4, group_size=64, modules_to_not_convert=["lm_head"], compute_dtype="bfloat16")
    assert QuantizationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(CheckpointError, match="quantized with 'awq'"):
        QuantizationConfig.from_dict({"quant_method": "awq", "bits": 4})


def test_skips_matches_whole_name_parts():
    config = QuantizationConfig(modules_to_not_convert=["c_proj", "classifier"])
    assert config.skips("transformer.h.0.mlp.c_proj") and config.skips("classifier")
    assert not config.skips("transformer.h.0.attn.c_projection")


@pytest.mark.parametrize("bits, symmetric", [(8, True), (8, False), (4, True), (4, False)])
def test_quantized_weights_stay_within_half_a_step(bits, symmetric):
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    q = quantize(w, bits, 32, symmetric)
    back = dequantize(q.qweight, q.scales, q.zeros, bits, 32)
    step = q.scales.repeat_interleave(32, dim=1)
    # clipping may move a group's extreme values by more than half a step, never by more than the range
    inside = (back - w).abs() <= step / 2 + 1e-6
    assert inside.float().mean() > 0.95
    assert ((back - w).abs() <= w.abs().amax() * 0.3).all()
    # a finer grid is closer: int8 error is far below int4's
    if bits == 8:
        assert (back - w).abs().max() < 0.02 * w.abs().max()


def test_int4_packing_round_trip_and_nibble_order():
    codes = torch.randint(0, 16, (3, 8), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (3, 4)
    assert int(packed[0, 0]) == int(codes[0, 0]) + 16 * int(codes[0, 1])
    assert torch.equal(unpack_int4(packed), codes)


def test_error_minimising_scales_beat_round_to_nearest():
    """Round-to-nearest from the range (scale = max|w| / 7) is the baseline; the fitted scales
    must give a smaller squared error on heavy-tailed weights."""
    torch.manual_seed(1)
    w = torch.distributions.StudentT(3.0).sample((64, 128))
    q = quantize(w, 4, 32, symmetric=True)
    ours = (dequantize(q.qweight, q.scales, None, 4, 32) - w).square().sum()
    g = w.reshape(-1, 32)
    scale = g.abs().amax(1, keepdim=True) / 7
    rtn = ((torch.clamp(torch.round(g / scale), -8, 7) * scale) - g).square().sum()
    assert ours < 0.95 * rtn
