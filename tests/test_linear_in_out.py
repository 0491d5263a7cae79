"""Weights held (in, out), joined side by side, and the few-row kernel
(haven/linear/kernels/dense_rows.cpp).

The kernel is checked against the float64 product computed here, within the float32 summation
bound |error| <= K * 2^-23 * (|x| @ |W|) (K terms summed in float32, any order), plus the
rounding of the output. `store_in_out`, `project()` over joined layers and
`optimize_for_inference()` are checked for what a user sees: the same parameter, shape, values,
ties and state dict, and autograd untouched (the reference's logits after optimizing:
tests/test_decoder_blocks.py)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
import torch

from fixtures.compiling import assert_compiles_with, compiled_decode_step
from haven import AutoModelForCausalLM
from haven.linear import Linear, kernels
from haven.linear.dense import in_out_product, joined, store_in_out
from haven.linear.project import project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built():
    if not kernels.dense_available():
        pytest.skip("haven::dense_rows is not built here (no compiler, or no AVX-512)")


def assert_within_float32_bound(got: torch.Tensor, x: torch.Tensor, w_in_out: torch.Tensor, bias=None):
    want = x.double() @ w_in_out.double()
    scale = x.double().abs() @ w_in_out.double().abs()
    if bias is not None:
        want = want + bias.double()
        scale = scale + bias.double().abs()
    bound = (w_in_out.shape[0] + 2) * 2.0**-23 * scale + 1e-30
    assert got.dtype == torch.float32 and got.shape == want.shape
    excess = ((got.double() - want).abs() - bound).max().item() if got.numel() else 0.0
    assert excess <= 0, f"off by more than float32 rounding allows ({excess})"


@pytest.mark.parametrize("rows", range(0, kernels.DENSE_MAX_ROWS + 1))
@pytest.mark.parametrize("in_out", [(768, 2304), (37, 53), (3, 16), (260, 1), (1000, 33)])
@pytest.mark.parametrize("bias", [True, False])
def test_the_kernel_is_the_product_up_to_float32_rounding(built, rows, in_out, bias):
    # in: one thread's share (under 64), several shares, not a multiple of 4; out: a whole
    # number of 16-float vectors or not, one column
    k, n = in_out
    torch.manual_seed(rows + k + n)
    x, w = torch.randn(rows, k), torch.randn(k, n)
    b = torch.randn(n) if bias else None
    assert_within_float32_bound(torch.ops.haven.dense_rows(x, w, b), x, w, b)


def test_a_weight_whose_rows_are_longer_than_its_out(built):
    """A column block of a wider matrix (how joined layers are laid): rows of `ld` floats."""
    torch.manual_seed(1)
    wide = torch.randn(70, 100)
    block = wide[:, 30:83]
    x = torch.randn(3, 70)
    assert_within_float32_bound(torch.ops.haven.dense_rows(x, block, None), x, block)


def test_leading_dimensions_and_strided_inputs(built):
    torch.manual_seed(0)
    w, b = torch.randn(96, 40), torch.randn(40)
    x = torch.randn(2, 3, 192)[..., ::2]  # (2, 3, 96), not contiguous
    got = torch.ops.haven.dense_rows(x, w, b)
    assert got.shape == (2, 3, 40)
    assert_within_float32_bound(got.reshape(6, 40), x.reshape(6, 96), w, b)


@pytest.mark.parametrize(
    ("x", "w", "b", "message"),
    [
        (torch.randn(9, 8), torch.randn(8, 4), None, "at most 8"),
        (torch.randn(1, 8), torch.randn(4, 8).t(), None, "contiguous"),
        (torch.randn(1, 8), torch.randn(7, 4), None, "is not the weight's in"),
        (torch.randn(1, 8).double(), torch.randn(8, 4), None, "float32"),
        (torch.randn(1, 8), torch.randn(8, 4), torch.randn(5), "bias"),
    ],
)
def test_bad_arguments_are_refused_by_name(built, x, w, b, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.haven.dense_rows(x, w, b)


def test_store_in_out_keeps_the_parameter_and_its_values(built):
    torch.manual_seed(0)
    layer = Linear(48, 80)
    param, values = layer.weight, layer.weight.detach().clone()
    assert not layer.stored_in_out
    assert store_in_out([layer]) is True
    assert layer.weight is param and layer.weight.shape == (80, 48) and torch.equal(layer.weight, values)
    assert layer.weight.t().is_contiguous() and layer.stored_in_out
    with torch.no_grad():
        for rows in (1, 3, 8, 9, 40):
            x = torch.randn(rows, 48)
            assert_within_float32_bound(layer(x), x, values.t(), layer.bias)
    assert store_in_out([layer], False) is False
    assert layer.weight is param and layer.weight.is_contiguous() and torch.equal(layer.weight, values)


def qkv(bias=(True, True, True)) -> list[Linear]:
    torch.manual_seed(3)
    return [Linear(40, out, bias=b) for out, b in zip((40, 24, 24), bias)]


@pytest.mark.parametrize("bias", [(True, True, True), (False, False, False), (True, False, True)])
def test_layers_laid_side_by_side_are_one_matrix(built, bias):
    """q, k and v laid together: their weights are the column blocks of one (in, 88) matrix (and
    their biases one vector, when all have one); project() gives each layer's own product at
    every row count, and each layer called alone still gives its own."""
    layers = qkv(bias)
    want_w = [layer.weight.detach().clone() for layer in layers]
    assert store_in_out(layers) is True
    assert all(torch.equal(layer.weight, w) for layer, w in zip(layers, want_w))
    matrix = joined(layers)
    if all(bias):
        assert torch.equal(matrix[0], torch.cat([w.t() for w in want_w], dim=1))
        assert torch.equal(matrix[1], torch.cat([layer.bias for layer in layers]))
    elif not any(bias):
        assert matrix[1] is None
    else:
        assert matrix is None  # mixed biases: each layer is multiplied on its own
    with torch.no_grad():
        for rows in (1, 2, 5, 8, 9, 30):
            x = torch.randn(rows, 40)
            for layer, got in zip(layers, project(x, *layers)):
                assert_within_float32_bound(got, x, layer.weight.t(), layer.bias)
                assert_within_float32_bound(layer(x), x, layer.weight.t(), layer.bias)
    assert store_in_out(layers, False) is False
    assert all(layer.weight.is_contiguous() and torch.equal(layer.weight, w) for layer, w in zip(layers, want_w))


def test_project_over_joined_layers_leaves_gradients_to_each_layer(built):
    layers, twins = qkv(), qkv()
    store_in_out(layers)
    x = torch.randn(2, 40)
    sum(y.square().sum() for y in project(x, *layers)).backward()
    sum(y.square().sum() for y in project(x, *twins)).backward()
    for layer, twin in zip(layers, twins):
        torch.testing.assert_close(layer.weight.grad, twin.weight.grad)
        torch.testing.assert_close(layer.bias.grad, twin.bias.grad)


def test_only_float32_cpu_weights_are_re_laid(built):
    layer = Linear(16, 24).to(torch.bfloat16)
    assert store_in_out([layer]) is False and layer.weight.is_contiguous()


def test_nothing_is_re_laid_where_the_kernel_does_not_run(monkeypatch):
    monkeypatch.setattr(kernels, "dense_available", lambda: False)
    layer = Linear(16, 24)
    assert store_in_out([layer]) is False and layer.weight.is_contiguous()
    x = torch.randn(2, 16)
    assert in_out_product(x, layer.weight.t().contiguous(), None) is None


def test_the_old_tensors_are_released_as_they_are_copied(built, monkeypatch):
    """`release` gets each slice of the old weight once copied (so a mapped checkpoint's pages
    leave as the copy grows: the peak is one slice above the weights), then the whole old weight
    and bias."""
    from haven.linear import dense

    monkeypatch.setattr(dense, "_COPY_ROWS", 10)
    layer = Linear(16, 24)
    weight, bias = layer.weight.detach(), layer.bias.detach()
    released = []
    store_in_out([layer], release=released.append)
    spans = [(t.data_ptr(), t.numel()) for t in released]
    row = 16 * weight.element_size()
    assert spans == [
        (weight.data_ptr(), 160), (weight.data_ptr() + 10 * row, 160), (weight.data_ptr() + 20 * row, 64),
        (weight.data_ptr(), 384), (bias.data_ptr(), 24),
    ]
    assert layer.weight.data_ptr() != weight.data_ptr() and torch.equal(layer.weight, weight)


def test_autograd_runs_the_plain_product(built, monkeypatch):
    """A re-laid weight that requires grad trains as before: the kernel has no backward and is
    not called while autograd records."""
    torch.manual_seed(0)
    layer, twin = Linear(12, 20), Linear(12, 20)
    twin.load_state_dict(layer.state_dict())
    store_in_out([layer])

    def refuse(*args):
        raise AssertionError("the kernel ran under autograd")

    monkeypatch.setattr(torch.ops.haven, "dense_rows", refuse, raising=False)
    x = torch.randn(2, 12)
    layer(x).square().sum().backward()
    twin(x).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, twin.weight.grad)
    torch.testing.assert_close(layer.bias.grad, twin.bias.grad)


def test_torch_compile_calls_the_kernel_without_a_graph_break(built):
    """A compiled step (compile_decoding()) keeps the kernel: it is in the captured graph, which
    has no break (fullgraph raises on one), and gives the eager result."""
    torch.manual_seed(0)
    layer = Linear(64, 40)
    store_in_out([layer])
    x = torch.randn(2, 1, 64)  # two rows: the kernel's
    assert_compiles_with(layer, x, "haven.dense_rows")


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_optimize_for_inference_re_lays_a_decoders_linear_weights(built, name, request):
    """Every float Linear is re-laid, ties survive (GPT-2's output layer is its token embedding:
    one parameter, read the same by both), and the state dict is the checkpoint's layout."""
    path = request.getfixturevalue(f"{name}_dir")
    model = AutoModelForCausalLM.from_pretrained(path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.optimize_for_inference()
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    assert linears and all(m.stored_in_out for m in linears)
    if name == "llama":  # a block's q/k/v and gate/up: one matrix each
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            assert joined([attn.q_proj, attn.k_proj, attn.v_proj]) and joined([mlp.gate_proj, mlp.up_proj])
    embedding = model.get_input_embeddings()
    if name == "gpt2":
        assert model.lm_head.weight is embedding.weight
    ids = torch.tensor([[1, 5, 9, 2]])
    torch.testing.assert_close(embedding(ids), before[next(k for k in before if "wte" in k or "embed_tokens" in k)][ids])
    state = model.state_dict()
    assert state.keys() == before.keys()
    assert all(state[k].is_contiguous() and torch.equal(state[k], before[k]) for k in before)
    if name == "gpt2":
        assert state["lm_head.weight"] is state["transformer.wte.weight"]  # one tensor, saved once
    model.optimize_for_inference(False)
    assert not any(m.stored_in_out for m in linears)


def test_the_kernel_sources_ship_with_the_package():
    """A non-editable install (`make upgrade`'s) compiles the kernels from the installed files."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["haven"]
    sources = sorted((ROOT / "src" / "haven" / "linear" / "kernels").glob("*.cpp"))
    assert sources
    for source in sources:
        relative = source.relative_to(ROOT / "src" / "haven").as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative


@pytest.mark.parametrize("rows", [1, 2])
def test_a_prepared_decoder_step_compiles_without_a_graph_break(built, llama_dir, rows):
    """compile_decoding() on a prepared Llama: the one-token step is one graph (fullgraph raises
    on a break; joined layers are multiplied one by one under compilation, as the data pointers
    joined() reads would break it) and gives the eager step's logits."""
    model = AutoModelForCausalLM.from_pretrained(llama_dir).optimize_for_inference()
    ids = torch.randint(3, model.config.vocab_size, (rows, 6), generator=torch.Generator().manual_seed(0))
    got, want = compiled_decode_step(model, ids)
    torch.testing.assert_close(got, want)
