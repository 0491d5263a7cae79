"""The compiled few-rows kernels (haven/linear/kernels) against y = x W^T + b computed in float64
on the weight the codes stand for, read here from the documented format (haven/linear/quantize.py:
int8 codes, or two int4 codes per byte with the even input in the low nibble; (q - zero) * scale
per group). Builds the extension on first run (cached in HAVEN_KERNELS_DIR,
~/.cache/haven/kernels); skipped where no C++ compiler can build it.

Tolerance: the kernels multiply the exact dequantized float32 weights with x in float32, so the
only difference from float64 is the rounding of float32 sums: each output is within
1e-5 * sum_k |x_k| |w_k| (about 80 float32 ulps of that sum) of the float64 value."""

from __future__ import annotations

import logging

import pytest
import torch

from haven import AutoModelForCausalLM
from haven.linear import kernels
from haven.linear.quantized import QuantizedLinear


@pytest.fixture(scope="module")
def built():
    if kernels.load() is None:
        pytest.skip("the kernels could not be built here (no compiler?); the portable path is tested elsewhere")


def float64_weight(layer: QuantizedLinear) -> torch.Tensor:
    """The (out, in) weight in float64, from the codes as the format describes them."""
    q = layer.qweight
    if layer.bits == 4:
        codes = torch.empty(q.shape[0], 2 * q.shape[1], dtype=torch.float64)
        codes[:, 0::2] = (q & 0xF).double()
        codes[:, 1::2] = (q >> 4).double()
    else:
        codes = q.double()
    if layer.zeros is not None:
        zero = layer.zeros.double()
    else:
        zero = torch.full_like(layer.scales, 8.0 if layer.bits == 4 else 0.0, dtype=torch.float64)
    g = layer.group_size
    # the kernels compute (q - zero) * scale in float32, as dequantize() does: the same rounding here
    w = (codes.float() - zero.float().repeat_interleave(g, 1)) * layer.scales.repeat_interleave(g, 1)
    return w.double()


def check(layer: QuantizedLinear, x: torch.Tensor, got: torch.Tensor) -> None:
    w = float64_weight(layer)
    x64 = x.reshape(-1, layer.in_features).double()
    want = x64 @ w.t()
    if layer.bias is not None:
        want = want + layer.bias.double()
    bound = 1e-5 * (x64.abs() @ w.abs().t()) + 1e-6
    err = (got.reshape(-1, layer.out_features).double() - want).abs()
    assert got.dtype == torch.float32 and got.shape == (*x.shape[:-1], layer.out_features)
    assert bool((err <= bound).all()), f"worst error {(err / bound).max().item():.2f} x the bound"


def make(in_features, out_features, bits, group, symmetric, bias, seed=0) -> QuantizedLinear:
    torch.manual_seed(seed)
    layer = QuantizedLinear(in_features, out_features, bias=bias, bits=bits, group_size=group, symmetric=symmetric)
    layer.set_float_weight(torch.randn(out_features, in_features))
    if bias:
        layer.bias.data = torch.randn(out_features)
    return layer


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("bits, symmetric", [(8, True), (8, False), (4, True), (4, False)])
def test_kernel_matches_float64_for_1_to_16_rows(bits, symmetric, group, built):
    # 37 outputs: not a multiple of the kernel's block of 4 output rows
    for bias in (True, False):
        layer = make(256, 37, bits, group, symmetric, bias, seed=group + bits)
        for rows in range(1, kernels.MAX_ROWS + 1):
            x = torch.randn(rows, 256)
            got = kernels.run(layer, x, rows)
            assert got is not None
            check(layer, x, got)


@pytest.mark.parametrize("bits", [8, 4])
def test_layer_shapes_and_non_contiguous_input(bits, built):
    layer = make(128, 51, bits, 32, symmetric=False, bias=True)
    x = torch.randn(128, 3).t()  # (3, 128), not contiguous
    assert not x.is_contiguous()
    check(layer, x, layer(x))
    x = torch.randn(2, 1, 256)[..., ::2]  # (batch, positions, in) with a stride in the last dimension
    check(layer, x, layer(x))
    x = torch.randn(1, 128)
    check(layer, x, layer(x))  # one row, one output block and a remainder


@pytest.mark.parametrize("bits", [8, 4])
def test_the_portable_loop_of_the_extension(bits, built):
    # groups of 16 are not Haven's (32/64/128), but the extension's portable loop (the one other CPUs
    # run) takes them on any CPU: this runs it here
    layer = make(96, 7, bits, 16, symmetric=bits == 4, bias=True)
    x = torch.randn(3, 96)
    got = torch.ops.haven.qgemv(x, layer.qweight, layer.scales, layer.zeros, layer.bias, bits, 16)
    check(layer, x, got)


def test_bad_arguments_are_refused(built):
    layer = make(64, 8, 4, 32, symmetric=True, bias=False)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.haven.qgemv(torch.randn(1, 64, dtype=torch.float64), layer.qweight, layer.scales, None, None, 4, 32)
    with pytest.raises(RuntimeError, match="qweight"):
        torch.ops.haven.qgemv(torch.randn(1, 128), layer.qweight, layer.scales, None, None, 4, 32)
    with pytest.raises(RuntimeError, match="bits"):
        torch.ops.haven.qgemv(torch.randn(1, 64), layer.qweight, layer.scales, None, None, 3, 32)


def test_many_rows_and_other_dtypes_take_the_portable_path(built):
    layer = make(64, 32, 4, 32, symmetric=False, bias=False)
    assert kernels.run(layer, torch.randn(kernels.MAX_ROWS + 1, 64), kernels.MAX_ROWS + 1) is None
    layer.compute_dtype = torch.bfloat16
    assert kernels.run(layer, torch.randn(1, 64), 1) is None


@pytest.mark.parametrize("bits", [8, 4])
def test_kernels_off_gives_the_portable_path_with_the_same_result(bits, built, monkeypatch):
    layer = make(256, 40, bits, 64, symmetric=True, bias=True)
    x = torch.randn(2, 256)
    fast = layer(x)
    monkeypatch.setenv("HAVEN_QUANT_KERNELS", "0")
    assert kernels.run(layer, x, 2) is None
    portable = layer(x)
    check(layer, x, portable)
    torch.testing.assert_close(fast, portable, rtol=1e-5, atol=1e-5)


def test_a_failed_build_falls_back_to_the_portable_path(tmp_path, monkeypatch, caplog):
    bad = tmp_path / "qgemv.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(kernels, "_SOURCE", bad)
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_failed", False)
    monkeypatch.setenv("HAVEN_KERNELS_DIR", str(tmp_path / "cache"))
    layer = make(64, 12, 4, 32, symmetric=True, bias=True)
    x = torch.randn(1, 64)
    with caplog.at_level(logging.WARNING, logger="haven.linear.kernels"):
        assert kernels.run(layer, x, 1) is None
    assert "could not be built" in caplog.text
    check(layer, x, layer(x))


@pytest.mark.parametrize("bits", [8, 4])
def test_torch_compile_calls_the_kernel_without_a_graph_break(bits, built):
    layer = make(128, 20, bits, 32, symmetric=False, bias=True)
    x = torch.randn(1, 1, 128)
    with torch.inference_mode():
        want = layer(x)
        torch._dynamo.reset()
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")  # fullgraph: a break raises
        assert torch.equal(compiled(x), want)


def test_a_model_decodes_the_same_with_and_without_kernels(gpt2_dir, built, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir, load_in_4bit=True)
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())
    prompt = torch.tensor([[3, 14, 15, 92]])
    fast = model.generate(prompt, max_new_tokens=12, do_sample=False)
    monkeypatch.setenv("HAVEN_QUANT_KERNELS", "0")
    portable = model.generate(prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(fast, portable)
