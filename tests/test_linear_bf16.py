"""bfloat16 products of a few rows (haven/linear/kernels/bf16_rows.cpp) and the layers that call
them: a bfloat16 `Linear` (weight (out, in)) and GPT-2's `Conv1D` (weight (in, out)).

The kernel is checked against the float64 product of the same bfloat16 values computed here:
its float32 sum is within K * 2^-23 * (|x| @ |W|) of it (K terms summed in float32, any order),
and the output is that sum rounded to bfloat16 (at most 2^-8 of its size away). The models are
checked against the reference library in bfloat16, step by step with a cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fixtures.compiling import assert_compiles_with, compiled_decode_step
from fixtures.decoders import random_ids
from haven import AutoModelForCausalLM
from haven.linear import Linear, kernels
from haven.linear.dense import bf16_product
from haven.models.gpt2 import Conv1D

BF16 = torch.bfloat16


@pytest.fixture(scope="module")
def built():
    if not kernels.bf16_available():
        pytest.skip("haven::bf16_rows is not built here (no compiler, or no AVX512-BF16)")


def assert_within_bf16_rounding(got: torch.Tensor, x: torch.Tensor, w_out_in: torch.Tensor, bias=None):
    want = x.double() @ w_out_in.double().t()
    scale = x.double().abs() @ w_out_in.double().abs().t()
    if bias is not None:
        want = want + bias.double()
        scale = scale + bias.double().abs()
    summed = (w_out_in.shape[1] + 2) * 2.0**-23 * scale
    bound = summed + 2.0**-8 * (want.abs() + summed) + 1e-30
    assert got.dtype == BF16 and got.shape == want.shape
    excess = ((got.double() - want).abs() - bound).max().item() if got.numel() else 0.0
    assert excess <= 0, f"off by more than float32 summation and bfloat16 rounding allow ({excess})"


def weight(out: int, k: int, layout: str) -> torch.Tensor:
    """An (out, in) bfloat16 matrix whose rows ("rows": a Linear's) or columns ("columns": a
    Conv1D's (in, out) weight, transposed) are contiguous in memory."""
    return torch.randn(out, k).to(BF16) if layout == "rows" else torch.randn(k, out).to(BF16).t()


@pytest.mark.parametrize("rows", range(0, kernels.DENSE_MAX_ROWS + 1))
@pytest.mark.parametrize("out_in", [(1280, 768), (37, 100), (8, 32), (9, 33), (1, 5), (16, 130), (3, 1000)])
@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_kernel_is_the_product_up_to_bf16_rounding(built, rows, out_in, layout, bias):
    # in: whole 32-value lines or not, under one line, one thread's share or several; out: a
    # whole number of 8-row blocks or 16-float vectors or not, one column
    n, k = out_in
    torch.manual_seed(rows + k + n)
    x, w = torch.randn(rows, k).to(BF16), weight(n, k, layout)
    b = torch.randn(n).to(BF16) if bias else None
    assert_within_bf16_rounding(torch.ops.haven.bf16_rows(x, w, b), x, w, b)


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_a_weight_cut_from_a_wider_matrix(built, layout):
    """Rows (or columns) longer than the matrix uses: a block of a wider one."""
    torch.manual_seed(1)
    w = torch.randn(53, 100).to(BF16)[:, 10:80] if layout == "rows" else torch.randn(70, 90).to(BF16)[:, 20:73].t()
    x = torch.randn(3, 70).to(BF16)
    assert_within_bf16_rounding(torch.ops.haven.bf16_rows(x, w, None), x, w)


def test_leading_dimensions_and_strided_inputs(built):
    torch.manual_seed(0)
    w, b = torch.randn(40, 96).to(BF16), torch.randn(40).to(BF16)
    x = torch.randn(2, 3, 192).to(BF16)[..., ::2]  # (2, 3, 96), not contiguous
    got = torch.ops.haven.bf16_rows(x, w, b)
    assert got.shape == (2, 3, 40)
    assert_within_bf16_rounding(got.reshape(6, 40), x.reshape(6, 96), w, b)


@pytest.mark.parametrize(
    ("x", "w", "b", "message"),
    [
        (torch.randn(9, 8).to(BF16), torch.randn(4, 8).to(BF16), None, "at most 8"),
        (torch.randn(2, 8), torch.randn(4, 8).to(BF16), None, "must be bfloat16"),
        (torch.randn(2, 7).to(BF16), torch.randn(4, 8).to(BF16), None, "is not the weight's in"),
        (torch.randn(2, 8).to(BF16), torch.randn(8, 16).to(BF16)[::2, ::2], None, "rows or its columns"),
        (torch.randn(2, 8).to(BF16), torch.randn(4, 8).to(BF16), torch.randn(4), "bias"),
    ],
)
def test_bad_arguments_are_refused_by_name(built, x, w, b, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.haven.bf16_rows(x, w, b)


@pytest.mark.parametrize("bias", [True, False])
def test_a_bf16_linear_runs_the_kernel_for_one_to_eight_rows(built, bias):
    torch.manual_seed(0)
    layer = Linear(100, 37, bias=bias).to(BF16)
    with torch.inference_mode():
        for rows in range(1, kernels.DENSE_MAX_ROWS + 1):
            x = torch.randn(rows, 1, 100).to(BF16)
            kernel = torch.ops.haven.bf16_rows(x, layer.weight, layer.bias)
            assert torch.equal(layer(x), kernel), rows
            assert_within_bf16_rounding(kernel.reshape(rows, 37), x.reshape(rows, 100), layer.weight, layer.bias)
        x = torch.randn(9, 100).to(BF16)  # more rows: F.linear
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_a_bf16_conv1d_runs_the_kernel_for_one_to_eight_rows(built):
    torch.manual_seed(0)
    layer = Conv1D(37, 100)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    layer = layer.to(BF16)
    with torch.inference_mode():
        for rows in range(1, kernels.DENSE_MAX_ROWS + 1):
            x = torch.randn(1, rows, 100).to(BF16)
            got = layer(x)
            assert got.shape == (1, rows, 37)
            assert torch.equal(got, torch.ops.haven.bf16_rows(x, layer.weight.t(), layer.bias)), rows
            assert_within_bf16_rounding(got[0], x[0], layer.weight.t(), layer.bias)


def test_autograd_runs_the_plain_product(built, monkeypatch):
    """A bfloat16 weight that requires grad trains as before: the kernel has no backward and is
    not called while autograd records."""
    torch.manual_seed(0)
    layer = Linear(12, 20).to(BF16)

    def refuse(*args):
        raise AssertionError("the kernel ran under autograd")

    monkeypatch.setattr(torch.ops.haven, "bf16_rows", refuse, raising=False)
    x = torch.randn(2, 12).to(BF16)
    layer(x).float().square().sum().backward()
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    F.linear(x, w, b).float().square().sum().backward()
    assert torch.equal(layer.weight.grad, w.grad) and torch.equal(layer.bias.grad, b.grad)


def test_without_the_kernel_f_linear_runs(monkeypatch):
    monkeypatch.setattr(kernels, "_bf16", False)
    layer = Linear(12, 20).to(BF16)
    x = torch.randn(1, 12).to(BF16)
    with torch.inference_mode():
        assert bf16_product(x, layer.weight, layer.bias) is None
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_float32_and_other_layouts_are_not_the_kernels(built):
    x = torch.randn(1, 8)
    assert bf16_product(x, torch.randn(4, 8), None) is None  # float32
    assert bf16_product(x.to(BF16), torch.randn(8, 16).to(BF16)[::2, ::2], None) is None  # no contiguous dimension


def test_torch_compile_calls_the_kernel_without_a_graph_break(built):
    torch.manual_seed(0)
    layer = Linear(64, 40).to(BF16)
    x = torch.randn(1, 1, 64).to(BF16)
    assert_compiles_with(layer, x, "haven.bf16_rows")


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("batch", [1, 2])
def test_bf16_decode_steps_close_to_the_reference_in_bf16(built, name, batch, request):
    """Cached one-token steps (the kernel's rows) against the reference in bfloat16, and the
    prepared model (pipelines call optimize_for_inference()) gives the same logits."""
    import transformers

    path = request.getfixturevalue(f"{name}_dir")
    ours = AutoModelForCausalLM.from_pretrained(path, dtype=BF16).optimize_for_inference()
    ref = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=BF16).eval()
    ids = random_ids(ours.config.vocab_size, (batch, 14))
    with torch.inference_mode():
        a, b = ours(ids[:, :10], use_cache=True), ref(ids[:, :10], use_cache=True)
        cache, ref_cache = a.past_key_values, b.cache
        for t in range(10, 14):
            step = ours(ids[:, t : t + 1], past_key_values=cache).logits
            want = ref(ids[:, t : t + 1], cache=ref_cache).logits
            assert step.dtype == BF16
            assert (step.float() - want.float()).abs().max() < 0.05, t


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("biases", [(True, True, True), (False, False, False), (True, False, True)])
def test_two_or_three_matrices_in_one_call(built, rows, biases):
    """A block's q, k and v in one call: the outputs side by side, each its own product."""
    torch.manual_seed(rows)
    outs = (48, 16, 19)
    x = torch.randn(rows, 70).to(BF16)
    ws = [torch.randn(n, 70).to(BF16) for n in outs]
    bs = [torch.randn(n).to(BF16) if has else None for n, has in zip(outs, biases)]
    for count in (2, 3):
        args = [t for pair in zip(ws[:count], bs[:count]) for t in pair]
        got = torch.ops.haven.bf16_rows(x, *args)
        assert got.shape == (rows, sum(outs[:count]))
        for part, w, b in zip(got.split(outs[:count], dim=-1), ws, bs):
            assert torch.equal(part, torch.ops.haven.bf16_rows(x, w, b))
            assert_within_bf16_rounding(part, x, w, b)


def test_several_matrices_need_contiguous_rows_and_one_in(built):
    x = torch.randn(1, 8).to(BF16)
    w = torch.randn(4, 8).to(BF16)
    with pytest.raises(RuntimeError, match="several matrices"):
        torch.ops.haven.bf16_rows(x, w, None, torch.randn(8, 4).to(BF16).t(), None)
    with pytest.raises(RuntimeError, match="share their in"):
        torch.ops.haven.bf16_rows(x, w, None, torch.randn(4, 9).to(BF16), None)
    with pytest.raises(RuntimeError, match="needs a second"):
        torch.ops.haven.bf16_rows(x, w, None, None, None, w, None)


def test_project_multiplies_a_bf16_blocks_layers_in_one_call(built, llama_dir, monkeypatch):
    """Llama's q/k/v and gate/up in bfloat16: one kernel call per group, the same values as
    each layer's own call."""
    from haven.linear.project import project

    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=BF16)
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    x = torch.randn(2, 1, attn.q_proj.in_features).to(BF16)
    calls = []
    real = torch.ops.haven.bf16_rows

    class Spy:
        default = staticmethod(lambda *a: calls.append(len(a)) or real.default(*a))

    with torch.inference_mode():
        each = [layer(x) for layer in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj)]
        monkeypatch.setattr(torch.ops.haven, "bf16_rows", Spy, raising=False)
        together = project(x, attn.q_proj, attn.k_proj, attn.v_proj) + project(x, mlp.gate_proj, mlp.up_proj)
    assert calls == [7, 5]  # x and three (weight, bias) pairs; x and two
    for a, b in zip(together, each):
        assert torch.equal(a, b)


@pytest.mark.parametrize("rows", [1, 2])
def test_a_bf16_decoder_step_compiles_without_a_graph_break(built, llama_dir, rows):
    """compile_decoding() on a bf16 Llama: the one-token step, its q/k/v and gate/up in one
    kernel call each, is one graph (fullgraph raises on a break) with the eager step's logits."""
    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=BF16).optimize_for_inference()
    ids = random_ids(model.config.vocab_size, (rows, 6))
    got, want = compiled_decode_step(model, ids)
    assert torch.equal(got, want)


def test_a_weight_re_laid_in_float32_then_cast_runs_the_kernel(built, monkeypatch):
    """optimize_for_inference() then .to(torch.bfloat16): the weight keeps its (in, out) memory
    layout through the cast, and the kernel's other layout takes it."""
    from haven.linear.dense import store_in_out

    torch.manual_seed(0)
    layer = Linear(64, 40)
    store_in_out([layer])
    layer = layer.to(BF16)
    assert layer.weight.stride(0) == 1  # (in, out) in memory
    x = torch.randn(1, 64).to(BF16)
    calls = []
    real = torch.ops.haven.bf16_rows

    class Spy:
        default = staticmethod(lambda *a: calls.append(a[1].stride()) or real.default(*a))

    monkeypatch.setattr(torch.ops.haven, "bf16_rows", Spy, raising=False)
    with torch.inference_mode():
        got = layer(x)
    assert calls == [(1, 40)]
    assert_within_bf16_rounding(got, x, layer.weight, layer.bias)
