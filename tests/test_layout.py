"""Weights re-laid out for decoding: `haven.fastpath` (`lay_out_transposed`, `join_linears`,
`joint_linear`), `PreTrainedModel.lay_out_weights` / `optimize_for_inference` (which
`generate()` leaves to the caller), and `haven.checkpoint.release_mapped_pages`.

Expected values come from plain `F.linear` on copies of the weights, from the reference library
(`transformers`) on the same tiny checkpoints, from the checkpoint files themselves (read with
`safetensors`), or from a Haven model that was never laid out.
"""

from __future__ import annotations

import os
import re
import sys
import threading

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from fixtures.decoders import build_reference, random_ids
from haven import AutoModelForCausalLM, fastpath
from haven.checkpoint import load_safetensors, release_mapped_pages
from haven.fastpath import _joint_weights, join_linears, joint_linear, lay_out_transposed

transformers.logging.set_verbosity_error()

ATOL = 1e-4  # Haven against the reference (float32)
EXACT = 1e-6  # one matmul against several on the same numbers


# -- helpers ---------------------------------------------------------------------------------------


class _CountMatmuls(TorchDispatchMode):
    """Counts the matrix products (aten mm / addmm / bmm) run inside the `with` block."""

    NAMES = {"mm", "addmm", "bmm", "baddbmm"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.NAMES:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _matmuls(fn) -> tuple[int, object]:
    with _CountMatmuls() as counter:
        out = fn()
    return counter.count, out


def _linears(outs=(8, 4, 4), n_in=6, bias=True, seed=0) -> list[nn.Linear]:
    torch.manual_seed(seed)
    return [nn.Linear(n_in, n, bias=bias) for n in outs]


def _expected(x, weights, biases) -> torch.Tensor:
    """The concatenated outputs of separate `F.linear` calls on copies of the weights."""
    return torch.cat([F.linear(x, w, b) for w, b in zip(weights, biases, strict=True)], dim=-1)


def _copies(linears):
    weights = [m.weight.detach().clone() for m in linears]
    biases = [None if m.bias is None else m.bias.detach().clone() for m in linears]
    return weights, biases


def _llama_groups(model):
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        yield (
            (attn.q_proj, attn.k_proj, attn.v_proj),
            (mlp.gate_proj, mlp.up_proj),
            (attn.o_proj, mlp.down_proj),
        )


def _is_laid_out(model) -> bool:
    """Whether the decoder's matrices are stored (in, out), with q/k/v and gate/up joined."""
    if model.lm_head.weight.stride(0) != 1:
        return False
    if not hasattr(model, "model"):  # GPT-2: only the (tied) head is re-laid
        return True
    for qkv, gate_up, singles in _llama_groups(model):
        if _joint_weights(qkv) is None or _joint_weights(gate_up) is None:
            return False
        if any(m.weight.stride(0) != 1 for m in singles):
            return False
    return True


def _padded_batch(vocab: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 9) prompts, rows 1 and 2 left-padded (9 > Mistral's window of 4)."""
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, vocab - 1, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :5] = 0
    ids[mask == 0] = pad
    return ids, mask


def _reference(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path).eval()


def _checkpoint(path) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(path, "model.safetensors"))


# -- checkpoints -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, llama_dir, mistral_dir, gpt2_dir) -> dict[str, str]:
    """llama3-rope GQA Llama; a Llama with biases, tied embeddings, GQA and linear rope; Mistral
    (window 4, shorter than the prompts); GPT-2 (tied head)."""
    base = tmp_path_factory.mktemp("layout")
    biased = build_reference(
        base / "llama_bias",
        "llama",
        seed=41,
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
        hidden_size=48,
        intermediate_size=80,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    )
    return {"llama": llama_dir, "llama-tied-bias": biased, "mistral": mistral_dir, "gpt2": gpt2_dir}


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory) -> str:
    """A Llama of about 5 MB, so that its matrices span many whole pages."""
    return build_reference(
        tmp_path_factory.mktemp("layout_big"),
        "llama",
        seed=42,
        hidden_size=256,
        intermediate_size=512,
        num_attention_heads=4,
        num_key_value_heads=2,
    )


MODELS = ["llama", "llama-tied-bias", "mistral", "gpt2"]


# == the building blocks, on plain nn.Linear layers ================================================


def test_lay_out_transposed_keeps_object_shape_values():
    """Same Parameter, shape and values; strides (1, rows); `release` gets the old data once;
    a second call does nothing."""
    p = nn.Parameter(torch.randn(5, 7))
    original, old_ptr = p.detach().clone(), p.data_ptr()
    released = []
    lay_out_transposed(p, released.append)
    assert p.shape == (5, 7) and p.stride() == (1, 5)
    assert torch.equal(p, original)
    assert isinstance(p, nn.Parameter) and p.requires_grad
    assert len(released) == 1 and released[0].data_ptr() == old_ptr and torch.equal(released[0], original)
    ptr = p.data_ptr()
    lay_out_transposed(p, released.append)
    assert p.data_ptr() == ptr and len(released) == 1


@pytest.mark.parametrize("bias", [True, False])
def test_join_linears_lays_blocks_side_by_side(bias):
    """Each weight stays its (out, in) Parameter, now a column block of one (in, 16) matrix;
    biases become one vector; values unchanged; joining again is a no-op."""
    linears = _linears(bias=bias)
    params = [(m.weight, m.bias) for m in linears]
    weights, biases = _copies(linears)
    released = []
    join_linears(linears, released.append)
    assert len(released) == 3
    base = linears[0].weight.data_ptr()
    col = 0
    for m, (w, b), w0, b0 in zip(linears, params, weights, biases, strict=True):
        assert m.weight is w and m.bias is b
        assert m.weight.shape == w0.shape and m.weight.stride() == (1, 16)
        assert m.weight.data_ptr() == base + 4 * col
        assert torch.equal(m.weight, w0)
        if bias:
            assert m.bias.data_ptr() == linears[0].bias.data_ptr() + 4 * col and torch.equal(m.bias, b0)
        else:
            assert m.bias is None
        col += m.out_features
    joint_w, joint_b = _joint_weights(linears)
    assert torch.equal(joint_w, torch.cat(weights))
    assert (joint_b is None) if not bias else torch.equal(joint_b, torch.cat(biases))
    ptrs = [m.weight.data_ptr() for m in linears]
    join_linears(linears, released.append)
    assert [m.weight.data_ptr() for m in linears] == ptrs and len(released) == 3


def test_join_linears_again_with_a_hook_copies_nothing():
    """Layers already joined are left alone by a second join_linears even when one of them has a
    hook (it only makes `joint_linear` take the per-layer path): no copy, no new storage."""
    linears = _linears()
    join_linears(linears)
    linears[1].register_forward_hook(lambda module, args, output: None)
    ptrs = [m.weight.data_ptr() for m in linears]
    released = []
    join_linears(linears, released.append)
    assert [m.weight.data_ptr() for m in linears] == ptrs
    assert released == []


def test_join_single_layer_only_transposes():
    """One layer: its weight is stored transposed (strides (1, out)), its bias untouched."""
    (lin,) = _linears(outs=(5,))
    weights, biases = _copies([lin])
    bias_ptr = lin.bias.data_ptr()
    join_linears([lin])
    assert lin.weight.stride() == (1, 5) and torch.equal(lin.weight, weights[0])
    assert lin.bias.data_ptr() == bias_ptr
    x = torch.randn(3, 6)
    with torch.no_grad():
        assert torch.allclose(lin(x), F.linear(x, weights[0], biases[0]), atol=EXACT)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 6), (2, 5, 6)])
def test_joint_linear_one_matmul_equals_separate_layers(bias, shape):
    """Joined: one matrix product whose output equals the separate layers' concatenated;
    not joined: one product per layer, same result."""
    linears = _linears(bias=bias)
    weights, biases = _copies(linears)
    x = torch.randn(*shape)
    expected = _expected(x, weights, biases)
    with torch.no_grad():
        n, out = _matmuls(lambda: joint_linear(x, tuple(linears)))
        assert n == 3 and torch.allclose(out, expected, atol=EXACT)
        join_linears(linears)
        n, out = _matmuls(lambda: joint_linear(x, tuple(linears)))
    assert n == 1
    assert out.shape == (*shape[:-1], 16)
    assert torch.allclose(out, expected, atol=EXACT)


def test_joint_linear_mixed_biases_falls_back():
    """Layers of which only some have a bias: weights joined, biases kept, results right."""
    torch.manual_seed(1)
    linears = [nn.Linear(6, 8), nn.Linear(6, 4, bias=False), nn.Linear(6, 4)]
    weights, biases = _copies(linears)
    join_linears(linears)
    x = torch.randn(4, 6)
    with torch.no_grad():
        out = joint_linear(x, tuple(linears))
    assert torch.allclose(out, _expected(x, weights, biases), atol=EXACT)


def test_joint_linear_under_autograd_calls_each_layer():
    """Grad enabled with trainable params: one product per layer, and gradients equal those of
    separate layers. Frozen params: the single product, and the gradient still reaches x."""
    linears = _linears()
    twins = _linears()  # same seed: same values, never joined
    join_linears(linears)
    x = torch.randn(4, 6)
    n, out = _matmuls(lambda: joint_linear(x, tuple(linears)))
    assert n == 3
    out.pow(2).sum().backward()
    torch.cat([m(x) for m in twins], -1).pow(2).sum().backward()
    for m, t in zip(linears, twins, strict=True):
        assert torch.allclose(m.weight.grad, t.weight.grad, atol=EXACT)
        assert torch.allclose(m.bias.grad, t.bias.grad, atol=EXACT)

    for m in linears + twins:
        m.requires_grad_(False)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    n, out = _matmuls(lambda: joint_linear(xa, tuple(linears)))
    assert n == 1
    out.pow(2).sum().backward()
    torch.cat([m(xb) for m in twins], -1).pow(2).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=EXACT)


def test_joint_linear_hooks_fall_back_and_apply():
    """A forward hook (on any layer, or registered globally) or a pre-hook is run, and changes
    the result; removing it brings back the single product."""
    linears = _linears()
    weights, biases = _copies(linears)
    join_linears(linears)
    x = torch.randn(4, 6)
    expected = _expected(x, weights, biases)
    shifted = expected.clone()
    shifted[:, 8:12] += 1.0  # k's block
    calls = []

    def hook(module, args, output):
        calls.append(module)
        return output + 1.0

    with torch.no_grad():
        handle = linears[1].register_forward_hook(hook)
        n, out = _matmuls(lambda: joint_linear(x, tuple(linears)))
        assert n == 3 and calls == [linears[1]] and torch.allclose(out, shifted, atol=EXACT)
        handle.remove()

        handle = linears[2].register_forward_pre_hook(lambda module, args: (args[0] * 0,))
        out = joint_linear(x, tuple(linears))
        assert torch.allclose(out[:, 12:], biases[2].expand(4, 4), atol=EXACT)
        handle.remove()

        handle = nn.modules.module.register_module_forward_hook(hook)
        try:
            out = joint_linear(x, tuple(linears))
        finally:
            handle.remove()
        assert len(calls) == 4 and torch.allclose(out, expected + 1.0, atol=EXACT)

        n, out = _matmuls(lambda: joint_linear(x, tuple(linears)))
    assert n == 1 and torch.allclose(out, expected, atol=EXACT)


def test_joint_linear_sees_replaced_and_edited_weights():
    """`weight = Parameter(..)`, `.data = ..`, a bias replaced, `forward` re-bound, a cast: the
    result follows; an in-place edit is read by the single product."""
    linears = _linears()
    weights, biases = _copies(linears)
    join_linears(linears)
    x = torch.randn(4, 6)
    layers = tuple(linears)
    with torch.no_grad():
        linears[0].weight.mul_(2.0)  # in place: the joint matrix itself
        weights[0] = weights[0] * 2.0
        n, out = _matmuls(lambda: joint_linear(x, layers))
        assert n == 1 and torch.allclose(out, _expected(x, weights, biases), atol=EXACT)

        weights[1] = torch.randn(4, 6)
        linears[1].weight = nn.Parameter(weights[1].clone())
        assert torch.allclose(joint_linear(x, layers), _expected(x, weights, biases), atol=EXACT)

        weights[2] = torch.randn(4, 6)
        linears[2].weight.data = weights[2].clone()
        assert torch.allclose(joint_linear(x, layers), _expected(x, weights, biases), atol=EXACT)

    swapped = _linears(seed=2)  # k and v (same shape) exchange their laid-out Parameters
    weights, biases = _copies(swapped)
    join_linears(swapped)
    k, v = swapped[1], swapped[2]
    k.weight, v.weight = v.weight, k.weight
    weights[1], weights[2] = weights[2], weights[1]
    with torch.no_grad():
        assert torch.allclose(joint_linear(x, tuple(swapped)), _expected(x, weights, biases), atol=EXACT)

    fresh = _linears(seed=3)
    weights, biases = _copies(fresh)
    join_linears(fresh)
    with torch.no_grad():
        biases[1] = torch.randn(4)
        fresh[1].bias.data = biases[1].clone()
        assert torch.allclose(joint_linear(x, tuple(fresh)), _expected(x, weights, biases), atol=EXACT)

        fresh[2].forward = lambda inp: torch.zeros(*inp.shape[:-1], 4)
        out = joint_linear(x, tuple(fresh))
        assert torch.equal(out[:, 12:], torch.zeros(4, 4))
        del fresh[2].forward

        for m in fresh:
            m.to(torch.float64)
        out = joint_linear(x.double(), tuple(fresh))
    expected = _expected(x.double(), [w.double() for w in weights], [b.double() for b in biases])
    assert out.dtype == torch.float64 and torch.allclose(out, expected, atol=1e-12)


# == whole models against the reference ============================================================


@pytest.mark.parametrize("name", MODELS)
def test_logits_after_optimize_for_inference_match_reference(dirs, name):
    """optimize_for_inference() re-lays the matrices, and logits (plain and left-padded batch)
    still match the reference."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path), _reference(path)
    assert not _is_laid_out(ours)
    assert ours.optimize_for_inference() is ours
    assert _is_laid_out(ours)
    vocab = ours.config.vocab_size
    ids = random_ids(vocab, (2, 12))
    padded, mask = _padded_batch(vocab, pad=0)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=ATOL)
        a = ours(padded, attention_mask=mask).logits
        b = ref(padded, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert torch.allclose(a[real], b[real], atol=ATOL)


@pytest.mark.parametrize("name", MODELS)
def test_generate_before_and_after_optimize_for_inference_matches_reference(dirs, name):
    """generate() leaves the layout alone; optimize_for_inference() lays the model out. Greedy
    tokens equal the reference's for a single prompt and a left-padded batch, before and after."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path), _reference(path)
    ids, mask = _padded_batch(ours.config.vocab_size, ref.generation_config.pad_token_id)
    expected_one = ref.generate(ids[:1], max_new_tokens=10)
    expected_batch = ref.generate(ids, attention_mask=mask, max_new_tokens=10)
    assert torch.equal(ours.generate(ids[:1], max_new_tokens=10), expected_one)
    assert not _is_laid_out(ours)
    ours.optimize_for_inference()
    assert _is_laid_out(ours)
    assert torch.equal(ours.generate(ids[:1], max_new_tokens=10), expected_one)
    assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=10), expected_batch)


def test_laid_out_forward_makes_fewer_matmuls(dirs):
    """Llama: q/k/v in one product and gate/up in one: 3 products fewer per layer."""
    ours = AutoModelForCausalLM.from_pretrained(dirs["llama-tied-bias"])
    ids = random_ids(ours.config.vocab_size, (1, 5))
    with torch.no_grad():
        before, a = _matmuls(lambda: ours(ids).logits)
        ours.lay_out_weights()
        after, b = _matmuls(lambda: ours(ids).logits)
    assert before - after == 3 * ours.config.num_hidden_layers
    assert torch.allclose(a, b, atol=EXACT)


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_equals_checkpoint_before_and_after(dirs, name):
    """state_dict() holds exactly the checkpoint's values before and after layout, under the
    same names (a tied head reads the embedding's)."""
    path = dirs[name]
    file = _checkpoint(path)
    ours = AutoModelForCausalLM.from_pretrained(path)

    def check():
        state = ours.state_dict()
        tied = set(state) - set(file)
        assert tied <= {"lm_head.weight"} and set(file) <= set(state)
        for key, value in file.items():
            assert torch.equal(state[key], value), key
        if tied:
            embedding = ours.get_input_embeddings().weight
            assert ours.lm_head.weight is embedding
            source = next(k for k, v in ours.named_parameters() if v is embedding)
            assert torch.equal(state["lm_head.weight"], file[source])

    check()
    ours.lay_out_weights()
    assert _is_laid_out(ours)
    check()


@pytest.mark.parametrize("name", MODELS)
def test_save_pretrained_after_layout_round_trips(dirs, name, tmp_path):
    """save_pretrained after layout writes the checkpoint's tensors exactly, and the reference
    loads the result with logits identical to its own on the original."""
    path = dirs[name]
    ours = AutoModelForCausalLM.from_pretrained(path)
    ours.optimize_for_inference()
    ours.save_pretrained(tmp_path)
    original, written = _checkpoint(path), _checkpoint(tmp_path)
    assert set(written) == set(original)
    for key, value in original.items():
        assert torch.equal(written[key], value), key
    ids = random_ids(ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(_reference(tmp_path)(ids).logits, _reference(path)(ids).logits)


def test_safetensors_can_save_the_state_dict_after_generate(dirs, tmp_path):
    """safetensors' own savers accept the model's state dict after generate() as they do the
    reference's (generate() does not re-lay the weights); after optimize_for_inference() the
    entries are strided views, saved equal once made contiguous (as the docstring says)."""
    path = dirs["llama"]
    ours = AutoModelForCausalLM.from_pretrained(path)
    ours.generate(random_ids(ours.config.vocab_size, (1, 4)), max_new_tokens=2)
    save_file(ours.state_dict(), os.fspath(tmp_path / "after.safetensors"))
    ours.optimize_for_inference()
    assert _is_laid_out(ours)
    contiguous = {k: v.contiguous() for k, v in ours.state_dict().items()}
    save_file(contiguous, os.fspath(tmp_path / "laid_out.safetensors"))
    original = _checkpoint(path)
    for name in ("after.safetensors", "laid_out.safetensors"):
        written = load_file(os.fspath(tmp_path / name))
        assert all(torch.equal(written[k], v) for k, v in original.items())


def test_gpt2_tied_head_stays_one_parameter(dirs):
    """GPT-2: after layout lm_head and wte are still the same Parameter, stored transposed, with
    the embedding's values (the embedding lookups read it too)."""
    path = dirs["gpt2"]
    ours = AutoModelForCausalLM.from_pretrained(path)
    head = ours.lm_head.weight
    ours.lay_out_weights()
    assert ours.lm_head.weight is head and ours.transformer.wte.weight is head
    assert head.stride() == (1, head.shape[0])
    assert torch.equal(head, _checkpoint(path)["transformer.wte.weight"])


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_model_loaded_under_inference_mode_generates(dirs, name):
    """A model loaded inside `torch.inference_mode()` (its parameters are inference tensors, which
    cannot take new data) is left as it is by optimize_for_inference() and still generates the
    reference's tokens, and its forward still gives the reference's logits."""
    path = dirs[name]
    ref = _reference(path)
    with torch.inference_mode():
        ours = AutoModelForCausalLM.from_pretrained(path)
    ours.optimize_for_inference()
    assert not _is_laid_out(ours)
    ids = random_ids(ours.config.vocab_size, (1, 7))
    assert torch.equal(ours.generate(ids, max_new_tokens=8), ref.generate(ids, max_new_tokens=8))
    with torch.inference_mode():
        assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=ATOL)


# == a laid-out model that is hooked, edited, cast or trained ======================================


def test_hook_on_k_proj_runs_and_changes_output(dirs):
    """A forward hook on a laid-out k_proj is called and its change shows, as in the reference
    with the same hook; once removed, the joint product is back and so are the logits."""
    path = dirs["llama"]
    ours, ref = AutoModelForCausalLM.from_pretrained(path), _reference(path)
    ours.lay_out_weights()
    ids = random_ids(ours.config.vocab_size, (1, 8))
    calls = []

    def hook(module, args, output):
        calls.append(module)
        return output + 0.25

    with torch.no_grad():
        plain = ours(ids).logits
        handles = [
            ours.model.layers[0].self_attn.k_proj.register_forward_hook(hook),
            ref.model.layers[0].self_attn.k_proj.register_forward_hook(hook),
        ]
        hooked, expected = ours(ids).logits, ref(ids).logits
        for h in handles:
            h.remove()
        again = ours(ids).logits
    assert calls.count(ours.model.layers[0].self_attn.k_proj) == 1
    assert torch.allclose(hooked, expected, atol=ATOL)
    assert (hooked - plain).abs().max() > 1e-3
    assert _is_laid_out(ours) and torch.allclose(again, plain, atol=EXACT)


def test_replaced_weights_and_modules_are_used(dirs):
    """After layout: a new Parameter for k_proj, `.data` reassigned on gate_proj, an in-place
    edit of up_proj's bias, wrappers (with no `out_features`) around v_proj and a gate_proj:
    logits equal the reference edited alike."""
    path = dirs["llama-tied-bias"]
    ours, ref = AutoModelForCausalLM.from_pretrained(path), _reference(path)
    ours.optimize_for_inference()
    torch.manual_seed(5)

    class Scaled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * 1.5

    ids = random_ids(ours.config.vocab_size, (2, 7))
    with torch.no_grad():
        before = ours(ids).logits
        new_k = torch.randn_like(ours.model.layers[0].self_attn.k_proj.weight) * 0.1
        new_gate = torch.randn_like(ours.model.layers[1].mlp.gate_proj.weight) * 0.1
        for model in (ours, ref):
            l0, l1 = model.model.layers
            l0.self_attn.k_proj.weight = nn.Parameter(new_k.clone())
            l1.mlp.gate_proj.weight.data = new_gate.clone()
            l0.mlp.up_proj.bias.add_(0.5)
            l1.self_attn.v_proj = Scaled(l1.self_attn.v_proj)
            l0.mlp.gate_proj = Scaled(l0.mlp.gate_proj)
        after, expected = ours(ids).logits, ref(ids).logits
    assert torch.allclose(after, expected, atol=ATOL)
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_float64_after_layout_matches_reference(dirs, name):
    """A laid-out model cast to float64 gives the float64 reference's logits and tokens."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path), _reference(path)
    ours.lay_out_weights()
    ours.to(torch.float64)
    ref.to(torch.float64)
    ids = random_ids(ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        a, b = ours(ids).logits, ref(ids).logits
    assert a.dtype == torch.float64 and torch.allclose(a, b, atol=1e-10)
    assert torch.equal(ours.generate(ids[:1], max_new_tokens=8), ref.generate(ids[:1], max_new_tokens=8))


@pytest.mark.parametrize("name", ["llama-tied-bias", "mistral"])
def test_training_gradients_equal_a_model_never_laid_out(dirs, name):
    """loss.backward() on a laid-out model: every parameter's gradient equals the one of the same
    model never laid out, and the reference's."""
    path = dirs[name]
    laid, plain, ref = (
        AutoModelForCausalLM.from_pretrained(path),
        AutoModelForCausalLM.from_pretrained(path),
        _reference(path),
    )
    laid.lay_out_weights()
    ids = random_ids(laid.config.vocab_size, (2, 10))
    for model in (laid, plain, ref):
        model.train()
        model(ids, labels=ids).loss.backward()
    plain_params, ref_params = dict(plain.named_parameters()), dict(ref.named_parameters())
    checked = 0
    for key, p in laid.named_parameters():
        assert p.grad is not None, key
        assert torch.allclose(p.grad, plain_params[key].grad, atol=1e-6, rtol=1e-5), key
        assert torch.allclose(p.grad, ref_params[key].grad, atol=1e-5, rtol=1e-4), key
        checked += any(s in key for s in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"))
    per_layer = 10 if name == "llama-tied-bias" else 5
    assert checked == per_layer * laid.config.num_hidden_layers


def test_optimizer_made_before_layout_trains_the_live_weights(dirs):
    """An optimizer built before lay_out_weights() holds the model's own Parameters: its step
    changes the laid-out model, which then (joint products, no grad) gives the logits and
    tokens of a never-laid-out copy and of the reference trained alike."""
    path = dirs["llama-tied-bias"]
    laid, plain, ref = (
        AutoModelForCausalLM.from_pretrained(path),
        AutoModelForCausalLM.from_pretrained(path),
        _reference(path),
    )
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (laid, plain, ref)]
    laid.lay_out_weights()
    assert {id(p) for p in opts[0].param_groups[0]["params"]} == {id(p) for p in laid.parameters()}
    ids = random_ids(laid.config.vocab_size, (2, 10), seed=1)
    test_ids = random_ids(laid.config.vocab_size, (2, 8), seed=2)
    with torch.no_grad():
        untrained = laid(test_ids).logits
    for model, opt in zip((laid, plain, ref), opts, strict=True):
        model.train()
        for _ in range(2):
            model(ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval()
    assert _is_laid_out(laid)  # the steps wrote into the joint matrices
    with torch.no_grad():
        n_laid, trained = _matmuls(lambda: laid(test_ids).logits)
        n_plain, other = _matmuls(lambda: plain(test_ids).logits)
        expected = ref(test_ids).logits
    assert n_plain - n_laid == 3 * laid.config.num_hidden_layers  # the joint products were used
    assert (trained - untrained).abs().max() > 1e-3
    assert torch.allclose(trained, other, atol=1e-5)
    assert torch.allclose(trained, expected, atol=ATOL)
    prompt = test_ids[:1]
    assert torch.equal(laid.generate(prompt, max_new_tokens=8), ref.generate(prompt, max_new_tokens=8))


# == threads =======================================================================================


def test_two_threads_preparing_at_once_lay_out_once(dirs, monkeypatch):
    """Two threads call optimize_for_inference() then generate() together on a fresh model (two
    pipelines sharing it): both get the reference's tokens, and each matrix is copied once
    (7 per layer + the head)."""
    path = dirs["mistral"]
    ours, ref = AutoModelForCausalLM.from_pretrained(path), _reference(path)
    ids, mask = _padded_batch(ours.config.vocab_size, ref.generation_config.pad_token_id)
    expected = ref.generate(ids, attention_mask=mask, max_new_tokens=10)
    copies = []
    copy = fastpath._copy_transposed

    def counting_copy(dst, src, rows=64):
        copies.append(threading.get_ident())
        copy(dst, src, rows)

    monkeypatch.setattr(fastpath, "_copy_transposed", counting_copy)
    barrier = threading.Barrier(2)
    results: list = [None, None]
    errors: list = []

    def work(i):
        try:
            barrier.wait()
            ours.optimize_for_inference()
            results[i] = ours.generate(ids, attention_mask=mask, max_new_tokens=10)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(torch.equal(r, expected) for r in results)
    assert _is_laid_out(ours)
    assert len(copies) == 7 * ours.config.num_hidden_layers + 1


# == memory (Linux) ================================================================================

_SMAPS_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) ")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")


def _resident_kb(address: int) -> int:
    """Rss (KiB) of this process's mapping that contains `address`."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            header = _SMAPS_HEADER.match(line)
            if header:
                inside = int(header[1], 16) <= address < int(header[2], 16)
            elif inside and line.startswith("Rss:"):
                return int(line.split()[1])
    raise AssertionError(f"no mapping holds {address:#x}")


@linux_only
def test_release_mapped_pages_gives_back_pages_values_kept(tmp_path):
    """A touched 4 MiB tensor of a loaded file is resident; released, its mapping's Rss drops by
    about its size and its values still read right. Ordinary tensors: False."""
    path = os.fspath(tmp_path / "w.safetensors")
    g = torch.Generator().manual_seed(0)
    save_file({"small": torch.randn(10, generator=g), "big": torch.randn(1024, 1024, generator=g)}, path)
    expected = load_file(path)["big"].clone()
    big = load_safetensors(path)["big"]
    address = big.data_ptr()
    assert float(big.sum()) == pytest.approx(float(expected.sum()), rel=1e-5)
    touched = _resident_kb(address)
    assert touched >= 4000
    assert release_mapped_pages(big) is True
    assert touched - _resident_kb(address) >= 4000
    assert torch.equal(big, expected)  # read back from the file
    assert release_mapped_pages(torch.randn(1024, 1024)) is False
    assert release_mapped_pages(big.t()) is False  # not contiguous
    assert torch.equal(big, expected)


@linux_only
def test_lay_out_weights_leaves_no_mapped_pages_resident(big_dir):
    """After lay_out_weights() the checkpoint mapping's Rss is small next to the bytes of the
    laid-out matrices, though they were all resident before; laying out without `release`
    leaves them resident (so this measure can tell)."""
    ours = AutoModelForCausalLM.from_pretrained(big_dir)
    laid = [m.weight for group in _llama_groups(ours) for part in group for m in part] + [ours.lm_head.weight]
    laid_kb = sum(p.numel() * p.element_size() for p in laid) // 1024
    assert laid_kb > 4000
    address = ours.lm_head.weight.data_ptr()
    for p in ours.parameters():
        p.detach().sum()  # touch every page
    assert _resident_kb(address) >= 0.9 * laid_kb
    ours.lay_out_weights()
    assert _is_laid_out(ours)
    assert _resident_kb(address) < 0.1 * laid_kb
    file = _checkpoint(big_dir)
    state = ours.state_dict()
    assert all(torch.equal(state[k], v) for k, v in file.items())

    control = AutoModelForCausalLM.from_pretrained(big_dir)
    control_address = control.lm_head.weight.data_ptr()
    for module in control.modules():
        if hasattr(module, "_lay_out"):
            module._lay_out(None)
    assert _resident_kb(control_address) >= 0.9 * laid_kb


@linux_only
def test_layout_keeps_values_written_into_checkpoint_memory(big_dir):
    """Weights loaded in place (`load_state_dict` of fine-tuned values) into a freshly loaded
    model, then optimize_for_inference(): the model uses the fine-tuned values, and a
    state_dict() taken before - tensors that alias the parameters' memory - still holds them too
    (their pages are private copies now; they must not revert to the file's values)."""
    ours = AutoModelForCausalLM.from_pretrained(big_dir)
    file = _checkpoint(big_dir)
    tuned = {k: v * 1.5 for k, v in file.items()}
    ours.load_state_dict(tuned)
    snapshot = ours.state_dict()
    key = "model.layers.0.mlp.gate_proj.weight"
    assert torch.equal(snapshot[key], tuned[key])
    ours.optimize_for_inference()
    assert _is_laid_out(ours)
    state = ours.state_dict()
    assert all(torch.equal(state[k], v) for k, v in tuned.items())
    changed = [k for k, v in tuned.items() if not torch.equal(snapshot[k], v)]
    assert not changed, f"values reverted to the checkpoint's in {changed[:3]} ..."
