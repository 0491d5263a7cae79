"""The compiled few-rows kernels (haven/linear/kernels) against the portable path (dequantize,
F.linear) on the same codes. Builds the extension on first run (cached in HAVEN_KERNELS_DIR,
~/.cache/haven/kernels); skipped where no C++ compiler can build it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from haven import AutoModelForCausalLM
from haven.linear import kernels
from haven.linear.quantized import QuantizedLinear


@pytest.fixture(scope="module")
def built():
    if kernels.load() is None:
        pytest.skip("the kernels could not be built here (no compiler?); the portable path is tested elsewhere")


@pytest.mark.parametrize("bits, symmetric", [(8, True), (8, False), (4, True), (4, False)])
@pytest.mark.parametrize("rows", [1, 3, 16])
def test_kernel_matches_the_portable_path(bits, symmetric, rows, built):
    torch.manual_seed(rows)
    layer = QuantizedLinear(128, 48, bias=True, bits=bits, group_size=32, symmetric=symmetric)
    layer.set_float_weight(torch.randn(48, 128))
    layer.bias.data = torch.randn(48)
    x = torch.randn(rows, 128)
    want = F.linear(x, layer.dequantized(), layer.bias)
    got = kernels.run(layer, x, rows)
    assert got is not None
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_many_rows_and_other_dtypes_take_the_portable_path(built):
    layer = QuantizedLinear(64, 32, bias=False, bits=4, group_size=32, symmetric=False)
    layer.set_float_weight(torch.randn(32, 64))
    assert kernels.run(layer, torch.randn(kernels.MAX_ROWS + 1, 64), kernels.MAX_ROWS + 1) is None
    layer.compute_dtype = torch.bfloat16
    assert kernels.run(layer, torch.randn(1, 64), 1) is None


def test_a_model_decodes_the_same_with_and_without_kernels(gpt2_dir, built, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir, load_in_4bit=True)
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())
    prompt = torch.tensor([[3, 14, 15, 92]])
    fast = model.generate(prompt, max_new_tokens=12, do_sample=False)
    monkeypatch.setenv("HAVEN_QUANT_KERNELS", "0")
    portable = model.generate(prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(fast, portable)
