"""The compiled few-rows kernels (haven/linear/kernels) against y = x W^T + b computed here in
float64, from the documented formats: the weight's (haven/linear/quantize.py: int8 codes, or two
int4 codes per byte with the even input in the low nibble; (q - zero) * scale per group) and the
kernels' rounding of x (haven/linear/kernels/qgemv.cpp: per row and per block of 4 (int8) or 8
(int4) inputs, d = max|x_block| / 127 and xq = round-half-even(x / d), 0 where d is 0). Builds
the extension on first run (cached in HAVEN_KERNELS_DIR, ~/.cache/haven/kernels); skipped where
no C++ compiler can build it.

Two bounds per output:
- against the float64 product of the dequantized weight with the int8-rounded x: the kernels'
  integer sums are exact, so only float32 rounding is left: within 1e-5 * B, where B is the sum
  of the magnitudes that go into the float32 sums, over x's blocks j: |scale| d_j (sum_k
  |q_k xq_k| + |zero| |S_j|), S_j = sum_k xq_k;
- against the exact product with the float x: the rounding of x moves each input by at most
  d_j / 2, so the output by at most sum_j d_j / 2 * sum_{k in j} |w_k| (plus the bound above).
"""

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


def float64_codes(layer: QuantizedLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """The (out, in) codes and the (out, groups) zeros in float64, as the format describes them."""
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
    return codes, zero


def x_block(bits: int, group: int) -> int:
    """The inputs of x that share one d: 4 (int8) or 8 (int4), or the group where it is not a
    multiple of that."""
    size = 4 if bits == 8 else 8
    return size if group % size == 0 else group


def rounded_x(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (rows, in) as the kernels round it: (the int8 codes, the d of each block), in float64."""
    g = x.float().reshape(x.shape[0], -1, block)
    d = g.abs().amax(-1, keepdim=True) / 127  # float32, as the kernels compute it
    xq = torch.where(d > 0, torch.round(g / torch.where(d > 0, d, 1.0)), 0.0)  # round half to even
    assert bool((xq.abs() <= 127).all())
    return xq.reshape(x.shape).double(), d.squeeze(-1).double()


def check(layer: QuantizedLinear, x: torch.Tensor, got: torch.Tensor, *, x_rounded: bool = True) -> None:
    """`got` is the kernels' y for x, within the two bounds of the module docstring; or, with
    `x_rounded=False`, the portable path's (F.linear on the dequantized weight, x as it is), within
    float32 rounding (1e-5 * |x| . |w|) of the exact product."""
    g = layer.group_size
    codes, zero = float64_codes(layer)
    scale = layer.scales.double()
    w = (codes - zero.repeat_interleave(g, 1)) * scale.repeat_interleave(g, 1)
    x64 = x.reshape(-1, layer.in_features).double()
    assert got.dtype == torch.float32 and got.shape == (*x.shape[:-1], layer.out_features)
    if not x_rounded:
        want = x64 @ w.t() + (0.0 if layer.bias is None else layer.bias.double())
        err = (got.reshape(-1, layer.out_features).double() - want).abs()
        bound = 1e-5 * (x64.abs() @ w.abs().t()) + 1e-6
        assert bool((err <= bound).all()), f"worst error {(err / bound).max().item():.2f} x the bound"
        return
    n = x_block(layer.bits, g)
    xq, d = rounded_x(x64, n)
    bias = 0.0 if layer.bias is None else layer.bias.double()
    want = (xq * d.repeat_interleave(n, 1)) @ w.t() + bias
    exact = x64 @ w.t() + bias
    rows, blocks = x64.shape[0], layer.in_features // n
    # B: sum over x's blocks j of |scale| d_j (|q| . |xq| + |zero| |S_j|)
    qx = (xq.abs().reshape(rows, 1, blocks, n) * codes.abs().reshape(1, -1, blocks, n)).sum(-1)
    sums = xq.reshape(rows, blocks, n).sum(-1).abs().unsqueeze(1)
    scale_j, zero_j = (t.abs().repeat_interleave(g // n, 1).unsqueeze(0) for t in (scale, zero))  # (1, out, blocks)
    magnitude = (scale_j * d.unsqueeze(1) * (qx + zero_j * sums)).sum(-1)
    bound = 1e-5 * magnitude + 1e-6
    rounding = (d.unsqueeze(1) / 2 * w.abs().reshape(1, -1, blocks, n).sum(-1).unsqueeze(0)).sum(-1)
    y = got.reshape(-1, layer.out_features).double()
    err = (y - want).abs()
    assert bool((err <= bound).all()), f"worst error {(err / bound).max().item():.2f} x the bound"
    err = (y - exact).abs()
    assert bool((err <= rounding + bound).all()), f"{(err / (rounding + bound)).max().item():.2f} x the x-rounding bound"


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
    # 37 outputs: not a multiple of the kernel's block of 4 output rows; 96 and 576 inputs end in a
    # part of the kernels' block of 64 (int8) or 128 (int4) inputs
    for in_features, bias in ((256, True), (256, False), (96, True), (576, False)):
        if in_features % group:
            continue
        layer = make(in_features, 37, bits, group, symmetric, bias, seed=group + bits)
        for rows in range(1, kernels.MAX_ROWS + 1):
            x = torch.randn(rows, in_features)
            got = kernels.run([layer], x)
            assert got is not None
            check(layer, x, got)


@pytest.mark.parametrize("bits", [8, 4])
def test_x_is_rounded_per_group_and_zero_groups_are_exact(bits, built):
    # groups of very different sizes: one d per row would round the small groups to 0 and break the
    # x-rounding bound; an all-zero group (d = 0) and an all-zero row give 0, not NaN
    layer = make(256, 24, bits, 32, symmetric=False, bias=True)
    x = torch.randn(3, 8, 32) * torch.logspace(-3, 3, 8).unsqueeze(-1)
    x[0, 2] = 0
    x[1] = 0
    x = x.reshape(3, 256)
    got = kernels.run([layer], x)
    check(layer, x, got)
    assert torch.equal(got[1], layer.bias)


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
@pytest.mark.parametrize("symmetric", [True, False])
def test_the_portable_loop_of_the_extension(bits, symmetric, built):
    # groups of 16 are not Haven's (32/64/128), but the extension's portable loop (the one other CPUs
    # run, on the same rounded x) takes them on any CPU: this runs it here
    layer = make(96, 7, bits, 16, symmetric=symmetric, bias=True)
    for rows in (1, 3, 5):
        x = torch.randn(rows, 96)
        got = torch.ops.haven.qlinear(x, layer.qweight, layer.scales, layer.zeros, layer.bias, bits, 16)
        check(layer, x, got)


@pytest.mark.parametrize("bits, symmetric", [(8, True), (8, False), (4, True), (4, False)])
def test_several_layers_in_one_call_equal_each_alone(bits, symmetric, built):
    """One call for layers that multiply the same x (q, k, v): x is rounded once, the same way, so
    each layer's columns of the output equal that layer's own call exactly, whatever the layers'
    sizes and biases."""
    layers = [make(256, out, bits, 32, symmetric, bias, seed=out) for out, bias in ((40, True), (13, False), (96, True))]
    for count in (2, 3):
        for rows in (1, 3, 16):
            x = torch.randn(rows, 256)
            together = kernels.run(layers[:count], x)
            assert together.shape == (rows, sum(layer.out_features for layer in layers[:count]))
            for layer, got in zip(layers, together.split([layer.out_features for layer in layers[:count]], -1)):
                assert torch.equal(got, kernels.run([layer], x))
                check(layer, x, got)


def test_one_call_needs_one_format(built):
    a, b = make(64, 8, 8, 32, symmetric=True, bias=False), make(64, 8, 8, 32, symmetric=False, bias=False)
    x = torch.randn(1, 64)
    with pytest.raises(RuntimeError, match="zeros or none"):
        torch.ops.haven.qlinear(x, a.qweight, a.scales, None, None, 8, 32, b.qweight, b.scales, b.zeros, None)
    with pytest.raises(RuntimeError, match="needs its codes and scales"):
        torch.ops.haven.qlinear(x, a.qweight, a.scales, None, None, 8, 32, b.qweight, None, None, None)


def test_bad_arguments_are_refused(built):
    layer = make(64, 8, 4, 32, symmetric=True, bias=False)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.haven.qlinear(torch.randn(1, 64, dtype=torch.float64), layer.qweight, layer.scales, None, None, 4, 32)
    with pytest.raises(RuntimeError, match="qweight"):
        torch.ops.haven.qlinear(torch.randn(1, 128), layer.qweight, layer.scales, None, None, 4, 32)
    with pytest.raises(RuntimeError, match="bits"):
        torch.ops.haven.qlinear(torch.randn(1, 64), layer.qweight, layer.scales, None, None, 3, 32)
    with pytest.raises(RuntimeError, match="scales must be contiguous float16"):
        torch.ops.haven.qlinear(torch.randn(1, 64), layer.qweight, layer.scales.float(), None, None, 4, 32)


def test_many_rows_and_other_dtypes_take_the_portable_path(built, monkeypatch):
    layer = make(64, 32, 4, 32, symmetric=False, bias=False)
    calls = []
    run = kernels.run
    monkeypatch.setattr(kernels, "run", lambda *args: calls.append(args) or run(*args))
    x = torch.randn(kernels.MAX_ROWS + 1, 64)
    check(layer, x, layer(x), x_rounded=False)  # prefill: the float path, x as it is
    assert not calls
    check(layer, x[:4], layer(x[:4]))
    assert len(calls) == 1
    layer.compute_dtype = torch.bfloat16
    assert kernels.run([layer], torch.randn(1, 64)) is None


@pytest.mark.parametrize("bits", [8, 4])
def test_kernels_off_gives_the_portable_path(bits, built, monkeypatch):
    # the two differ by the rounding of x only: each is checked against its own float64 product,
    # the kernels' also against the exact one within the x-rounding bound
    layer = make(256, 40, bits, 64, symmetric=True, bias=True)
    x = torch.randn(2, 256)
    check(layer, x, layer(x))
    monkeypatch.setenv("HAVEN_QUANT_KERNELS", "0")
    assert kernels.run([layer], x) is None
    check(layer, x, layer(x), x_rounded=False)


@pytest.fixture
def unbuildable(tmp_path, monkeypatch):
    """The kernels as yet unloaded, their source one the compiler refuses, built into tmp_path."""
    bad = tmp_path / "qgemv.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(kernels, "_SOURCES", [bad])
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_failed", False)
    monkeypatch.setenv("HAVEN_KERNELS_DIR", str(tmp_path / "cache"))


def test_a_failed_build_falls_back_to_the_portable_path(unbuildable, caplog):
    layer = make(64, 12, 4, 32, symmetric=True, bias=True)
    x = torch.randn(1, 64)
    with caplog.at_level(logging.WARNING, logger="haven.linear.kernels"):
        assert kernels.run([layer], x) is None
    assert "could not be built" in caplog.text
    check(layer, x, layer(x), x_rounded=False)


def test_a_build_lock_left_by_a_killed_process_does_not_hang_the_next(unbuildable, caplog):
    """torch's build lock is a plain file; a process killed while holding it used to leave every
    later load waiting forever. The next load removes it (a failing source keeps this test fast:
    reaching the compiler is what it shows)."""
    import threading

    folder = kernels._cache_dir()
    folder.mkdir(parents=True)
    (folder / "lock").touch()  # what a killed process leaves
    done = threading.Event()
    with caplog.at_level(logging.WARNING, logger="haven.linear.kernels"):
        worker = threading.Thread(target=lambda: (kernels.load(), done.set()), daemon=True)
        worker.start()
        assert done.wait(120), "load() is still waiting on the stale lock"
    assert "could not be built" in caplog.text


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
