"""haven.linear.Linear: one row multiplies by the weight as stored (a matrix-vector product);
once a model is optimized for inference, the prepacked CPU path gives nn.Linear's results,
follows weight changes, stays out of autograd, autocast and tracing, and is what the encoders
(and their pipelines) actually run."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fixtures.encoders import assert_close, load_both, run_both
from haven.linear import Linear, dense

needs_onednn = pytest.mark.skipif(not dense._ONEDNN, reason="this torch build has no oneDNN linear")


def make(in_features: int = 48, out_features: int = 80, bias: bool = True, prepacked: bool = True) -> Linear:
    torch.manual_seed(0)
    layer = Linear(in_features, out_features, bias=bias)
    layer.prepacked = prepacked
    return layer


def is_packed(layer: Linear) -> bool:
    return layer in dense._packed_weights


def plain(layer: Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(16, 48), (2, 7, 48), (512, 48)])
def test_packed_path_equals_plain_linear(shape, bias):
    layer = make(bias=bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        out = layer(x)
    assert is_packed(layer)
    assert out.shape == (*shape[:-1], 80)
    torch.testing.assert_close(out, plain(layer, x), atol=1e-5, rtol=1e-5)


@needs_onednn
def test_off_unless_asked_for():
    layer = make(prepacked=False)
    x = torch.randn(16, 48)
    with torch.inference_mode():
        assert torch.equal(layer(x), plain(layer, x))
    assert not is_packed(layer)


@needs_onednn
@pytest.mark.parametrize("rows", [3, 513])
def test_rows_outside_the_range_take_the_plain_path(rows):
    layer = make()
    x = torch.randn(rows, 48)
    with torch.no_grad():
        out = layer(x)
    assert not is_packed(layer)
    assert torch.equal(out, plain(layer, x))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(48,), (1, 48), (1, 1, 48)])
def test_one_row_is_a_matrix_vector_product(shape, bias):
    """One row of float32: torch.mv on the (out, in) weight, no packed copy; the result equals
    nn.Linear's to float32 rounding, in nn.Linear's shape, and gradients reach weight, bias and
    input as nn.Linear's do."""
    layer = make(bias=bias)
    reference = torch.nn.Linear(48, 80, bias=bias)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(*shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, expected = layer(x), reference(x_ref)
    assert not is_packed(layer) and out.shape == expected.shape == (*shape[:-1], 80)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad)
    if bias:
        torch.testing.assert_close(layer.bias.grad, reference.bias.grad)


def test_one_row_of_another_dtype_takes_f_linear():
    """The matrix-vector path is for float32 only: a bfloat16 row gives F.linear's exact result."""
    layer = make().to(torch.bfloat16)
    x = torch.randn(1, 48, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(x), plain(layer, x))


@needs_onednn
def test_non_contiguous_inputs():
    layer = make()
    for x in (torch.randn(48, 16).t(), torch.randn(2, 48, 9).transpose(1, 2), torch.randn(20, 96)[:, ::2]):
        with torch.no_grad():
            out = layer(x)
        torch.testing.assert_close(out, plain(layer, x), atol=1e-5, rtol=1e-5)
    assert is_packed(layer)


@needs_onednn
def test_packed_copy_follows_weight_changes():
    layer = make()
    x = torch.randn(16, 48)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)  # in place: the weight's version moves
        layer.bias.zero_()
        doubled = layer(x)
        torch.testing.assert_close(doubled, F.linear(x, layer.weight), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(before, doubled)
        layer.weight = torch.nn.Parameter(torch.ones(80, 48))  # replaced: another tensor
        torch.testing.assert_close(layer(x), x.sum(-1, keepdim=True).expand(16, 80), atol=1e-4, rtol=1e-5)
        layer.load_state_dict({"weight": torch.full((80, 48), 0.5), "bias": torch.ones(80)})
        torch.testing.assert_close(layer(x), 0.5 * x.sum(-1, keepdim=True).expand(16, 80) + 1, atol=1e-4, rtol=1e-5)


@needs_onednn
def test_gpt2_conv1d_packs_its_in_out_weight():
    """GPT-2's Conv1D (weight stored (in, out)): up to 8 rows take the few-row kernel where it is
    built (no packed copy), more rows the packed transpose; both give x @ W + b to float32
    rounding, and in-place changes are seen."""
    from haven.linear import kernels
    from haven.models.gpt2 import Conv1D

    torch.manual_seed(0)
    layer = Conv1D(80, 48)
    torch.nn.init.normal_(layer.weight)
    torch.nn.init.normal_(layer.bias)
    layer.prepacked = True
    with torch.no_grad():
        for shape in ((1, 1, 48), (2, 4, 48)):
            x = torch.randn(*shape)
            torch.testing.assert_close(layer(x), x @ layer.weight + layer.bias, atol=1e-4, rtol=1e-5)
        assert is_packed(layer) != kernels.dense_available()
        for shape in ((16, 48), (3, 5, 48)):
            x = torch.randn(*shape)
            torch.testing.assert_close(layer(x), x @ layer.weight + layer.bias, atol=1e-4, rtol=1e-5)
        assert is_packed(layer) and layer.packed_nbytes == 48 * 80 * 4
        layer.weight.mul_(-1)
        torch.testing.assert_close(layer(x), x @ layer.weight + layer.bias, atol=1e-4, rtol=1e-5)
    layer.prepacked = False
    assert layer.packed_nbytes == 0


@needs_onednn
def test_writes_through_data_are_seen_after_optimizing_again(bert_sequence_classification_dir):
    """`.data` writes bypass the version counter (documented); optimize_for_inference() again
    drops the stale copies."""
    ours, _, tok = load_both("bert", "sequence_classification", bert_sequence_classification_dir)
    ours.optimize_for_inference()
    batch = dict(tok(["the quick brown fox jumps over the lazy dog"], return_tensors="pt"))
    query = ours.bert.encoder.layer[0].attention.self.query
    with torch.inference_mode():
        ours(**batch)
        assert is_packed(query)
        query.weight.data.mul_(3)
        ours.optimize_for_inference()
        assert not is_packed(query)
        out = ours(**batch).logits
        ours.optimize_for_inference(False)
        expected = ours(**batch).logits  # the plain path, on the changed weight
    assert all(not is_packed(m) for m in ours.modules() if isinstance(m, Linear))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_training_uses_autograd_not_the_packed_copy():
    layer = make()
    x = torch.randn(16, 48)
    layer(x).sum().backward()  # grad mode, weight requires grad
    assert not is_packed(layer)
    torch.testing.assert_close(layer.weight.grad, x.sum(0).expand(80, 48))


@needs_onednn
def test_a_trainable_bias_with_a_frozen_weight_gets_its_gradient():
    layer = make()
    layer.weight.requires_grad_(False)  # BitFit-style fine-tuning
    layer(torch.randn(16, 48)).sum().backward()
    assert not is_packed(layer)
    torch.testing.assert_close(layer.bias.grad, torch.full((80,), 16.0))


@needs_onednn
def test_other_dtypes_and_autocast_take_the_plain_path():
    layer = make().to(torch.bfloat16)
    x = torch.randn(16, 48, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(layer(x), plain(layer, x))
    assert not is_packed(layer)
    layer = make()
    x = torch.randn(16, 48)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        expected = torch.nn.Linear.forward(layer, x)
    assert out.dtype == expected.dtype == torch.bfloat16
    assert torch.equal(out, expected) and not is_packed(layer)


@needs_onednn
def test_moving_or_casting_frees_the_packed_copy():
    layer = make()
    x = torch.randn(16, 48)
    with torch.inference_mode():
        layer(x)
        assert is_packed(layer)
        layer.double()
        layer(x.double())
    assert not is_packed(layer)


@needs_onednn
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_tracing_a_model_works(bert_sequence_classification_dir):
    """torch.jit.trace cannot record the oneDNN op; a traced optimized model runs the plain path
    (tracing raised 'unsupported input list type' before)."""
    ours, ref, tok = load_both("bert", "sequence_classification", bert_sequence_classification_dir)
    ours.optimize_for_inference()
    ids = tok(["the quick brown fox jumps over the lazy dog"], return_tensors="pt")["input_ids"]
    assert ids.shape[1] >= Linear.PACKED_ROWS[0]

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model(input_ids=input_ids).logits

    with torch.no_grad():
        traced = torch.jit.trace(Logits(ours), (ids,), check_trace=False)
        torch.testing.assert_close(traced(ids), ref(input_ids=ids).logits, atol=1e-4, rtol=0)


@needs_onednn
def test_a_model_with_packed_weights_still_deep_copies_and_saves(bert_sequence_classification_dir, tmp_path):
    ours, ref, tok = load_both("bert", "sequence_classification", bert_sequence_classification_dir)
    ours.optimize_for_inference()
    batch = dict(tok(["the quick brown fox jumps over the lazy dog"], return_tensors="pt"))
    assert batch["input_ids"].shape[1] >= Linear.PACKED_ROWS[0]
    out, expected = run_both(ours, ref, batch)
    assert_close(out, expected)  # the parity the other tests check, on the packed path:
    query = ours.bert.encoder.layer[0].attention.self.query
    assert isinstance(query, Linear) and is_packed(query)
    clone = copy.deepcopy(ours)  # the packed copies live outside the module
    ours.save_pretrained(tmp_path)
    reloaded = type(ours).from_pretrained(tmp_path)
    with torch.inference_mode():
        assert torch.equal(clone(**batch).logits, out.logits)
        torch.testing.assert_close(reloaded(**batch).logits, expected.logits, atol=1e-4, rtol=0)


@needs_onednn
def test_pipelines_turn_it_on(bert_sequence_classification_dir):
    from haven import pipeline

    pipe = pipeline("text-classification", model=bert_sequence_classification_dir)
    pipe("the quick brown fox jumps over the lazy dog")
    query = pipe.model.bert.encoder.layer[0].attention.self.query
    assert query.prepacked and is_packed(query)


@needs_onednn
def test_a_model_loaded_under_inference_mode_runs(bert_sequence_classification_dir):
    """Weights made under inference_mode have no version counter: they take the plain path
    (this raised 'Inference tensors do not track version counter' before)."""
    from haven import AutoModelForSequenceClassification

    _, ref, tok = load_both("bert", "sequence_classification", bert_sequence_classification_dir)
    batch = dict(tok(["the quick brown fox jumps over the lazy dog"], return_tensors="pt"))
    with torch.inference_mode():
        model = AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir)
        model.optimize_for_inference()
        query = model.bert.encoder.layer[0].attention.self.query
        assert query.weight.is_inference()
        out, expected = model(**batch), ref(**batch)
        query.weight.mul_(2)  # seen: nothing was packed
        changed = model(**batch)
    assert_close(out, expected)
    assert not is_packed(query)
    assert not torch.allclose(changed.logits, out.logits)
