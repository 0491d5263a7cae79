"""The decoders' plain path (`haven.fastpath.plain_plan`, `haven.models._decoder.run_stack` with each family's
`plain_block`): when every module of the stack is plain (exact types, eval mode, no hooks,
nothing traced, `forward` not re-bound) and no gradient is recorded nor attention weights
asked for, the blocks' math runs on their cached tensors instead of calling the modules.

Expected values come from the same Haven model made to call its modules (a no-op forward hook
on one submodule: a genuine reason, not a patch of the decision), which must agree bit for bit
(`torch.equal`), and from the reference library (`transformers`) on the same tiny checkpoints,
edited, hooked or wrapped alike (logits atol 1e-4, gradients 1e-5, tokens exactly).

Which path ran is counted honestly: the attention classes' `forward` is wrapped on the class
(a module call runs it; the plain path never does) and each family's `plain_block` function is
wrapped in its module (the plain path calls it once per block).
"""

from __future__ import annotations

import collections
import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

from fixtures.decoders import build_reference, mask_positions, random_ids
from haven import AutoModelForCausalLM, fastpath
from haven.models import gpt2, llama

transformers.logging.set_verbosity_error()

ATOL = 1e-4  # Haven against the reference (float32)
GRAD_ATOL, GRAD_RTOL = 1e-5, 1e-4

NAMES = ["llama", "llama-bias", "mistral", "gpt2", "gpt2-inverse"]
LAYOUTS = pytest.mark.parametrize("optimized", [False, True], ids=["as-loaded", "optimized"])


# -- checkpoints and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, llama_dir, mistral_dir, gpt2_dir) -> dict[str, str]:
    """GQA Llama with llama3 rope; GQA Llama with attention and MLP biases; Mistral (window 4,
    shorter than the prompts); GPT-2; GPT-2 with `scale_attn_by_inverse_layer_idx`."""
    base = tmp_path_factory.mktemp("plain")
    return {
        "llama": llama_dir,
        "llama-bias": build_reference(
            base / "llama_bias", "llama", seed=51, attention_bias=True, mlp_bias=True
        ),
        "mistral": mistral_dir,
        "gpt2": gpt2_dir,
        "gpt2-inverse": build_reference(
            base / "gpt2_inv", "gpt2", seed=52, scale_attn_by_inverse_layer_idx=True
        ),
    }


@pytest.fixture
def calls(monkeypatch) -> collections.Counter:
    """Counts blocks run through their modules ("module": attention forwards) and through the
    plain functions ("plain": `plain_block` calls). The attention wrappers live on the classes
    (a patched class forward alone turns the plain path off) and are registered as the classes'
    own forwards, so they do not change which path is taken."""
    counts: collections.Counter = collections.Counter()
    for cls in (llama.LlamaAttention, gpt2.GPT2Attention):

        def forward(self, *args, _original=cls.forward, **kwargs):
            counts["module"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", forward)
        monkeypatch.setitem(fastpath._ORIGINAL_FORWARD, cls, forward)
    for family in (llama, gpt2):

        def block(*args, _original=family.plain_block):
            counts["plain"] += 1
            return _original(*args)

        monkeypatch.setattr(family, "plain_block", block)
    return counts


def _load(path: str, optimized: bool = False):
    model = AutoModelForCausalLM.from_pretrained(path)
    return model.optimize_for_inference() if optimized else model


def _reference(path: str):
    return transformers.AutoModelForCausalLM.from_pretrained(path).eval()


def _base(model) -> nn.Module:
    return getattr(model, model.base_model_prefix)


def _blocks(model) -> nn.ModuleList:
    base = _base(model)
    return base.layers if hasattr(base, "layers") else base.h


def _layers(model) -> int:
    return len(_blocks(model))


@contextlib.contextmanager
def _modules_called(model):
    """A no-op forward hook on the last block's MLP: the whole stack calls its modules."""
    handle = _blocks(model)[-1].mlp.register_forward_hook(lambda module, args, output: None)
    try:
        yield
    finally:
        handle.remove()


def _padded_batch(vocab: int, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 9) prompts, rows 1 and 2 left-padded (9 > Mistral's window of 4)."""
    ids = random_ids(vocab - 1, (3, 9), seed=7)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :5] = 0
    ids[mask == 0] = pad
    return ids, mask


def _close(a: torch.Tensor, b: torch.Tensor, what: str, atol: float = ATOL) -> None:
    diff = (a - b).abs().max().item()
    assert diff <= atol, f"{what}: max abs difference {diff:.3g} > {atol}"


def _differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a change made a visible difference (so a test of it can fail)."""
    return (a - b).abs().max().item() > 1e-3


def _trace(model, ids, padded, mask, nxt) -> dict[str, torch.Tensor]:
    """Everything a prefill and two decode steps produce (logits, hidden states, the KV cache's
    contents), for `ids` with no mask and for the left-padded batch `padded` with `mask`."""
    got: dict[str, torch.Tensor] = {}

    def record(name, out):
        got[f"{name} logits"] = out.logits
        for i, h in enumerate(out.hidden_states):
            got[f"{name} hidden_states[{i}]"] = h

    for name, x, m in (("unpadded", ids, None), ("padded", padded, mask)):
        out = model(x, attention_mask=m, use_cache=True, output_hidden_states=True)
        record(f"{name} prefill", out)
        cache = out.past_key_values
        for step in range(nxt.shape[1]):
            if m is not None:
                m = torch.cat([m, torch.ones_like(m[:, :1])], dim=1)
            tok = nxt[: x.shape[0], step : step + 1]
            out = model(
                tok, attention_mask=m, past_key_values=cache, use_cache=True, output_hidden_states=True
            )
            assert out.past_key_values is cache
            record(f"{name} step {step}", out)
        n = cache.get_seq_length()
        assert n == x.shape[1] + nxt.shape[1]
        for i, (k, v) in enumerate(zip(cache.keys, cache.values, strict=True)):
            got[f"{name} cache keys[{i}]"] = k[:, :, :n].clone()
            got[f"{name} cache values[{i}]"] = v[:, :, :n].clone()
    return got


# == 1. both paths, bit for bit, and the reference ==================================================


@pytest.mark.parametrize(
    "grad_mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"]
)
@LAYOUTS
@pytest.mark.parametrize("name", NAMES)
def test_plain_and_module_paths_agree_bit_for_bit(dirs, calls, name, optimized, grad_mode):
    """Prefill, a left-padded batch with its mask, then decode steps through the cache: the plain
    path's logits, hidden states and cache contents equal the module path's exactly, and the
    logits match the reference's (full forwards over the same tokens and positions)."""
    path = dirs[name]
    model, ref = _load(path, optimized), _reference(path)
    vocab, n = model.config.vocab_size, _layers(model)
    ids = random_ids(vocab, (2, 7), seed=1)
    padded, mask = _padded_batch(vocab)
    nxt = random_ids(vocab, (3, 2), seed=2)
    with grad_mode():
        calls.clear()
        plain = _trace(model, ids, padded, mask, nxt)
        assert calls == {"plain": 6 * n}
        calls.clear()
        with _modules_called(model):
            called = _trace(model, ids, padded, mask, nxt)
        assert calls == {"module": 6 * n}
    assert list(plain) == list(called)
    for key, value in plain.items():
        assert torch.equal(value, called[key]), key

    with torch.no_grad():
        full = ref(torch.cat([ids, nxt[:2]], dim=1)).logits
        full_mask = torch.cat([mask, torch.ones(3, 2, dtype=mask.dtype)], dim=1)
        padded_full = ref(
            torch.cat([padded, nxt], dim=1), attention_mask=full_mask, position_ids=mask_positions(full_mask)
        ).logits
    _close(plain["unpadded prefill logits"], full[:, :7], "prefill vs reference")
    real = mask.bool()
    _close(plain["padded prefill logits"][real], padded_full[:, :9][real], "padded prefill vs reference")
    for step in range(2):
        _close(plain[f"unpadded step {step} logits"][:, 0], full[:, 7 + step], f"step {step} vs reference")
        _close(plain[f"padded step {step} logits"][:, 0], padded_full[:, 9 + step], f"padded step {step}")


@pytest.mark.parametrize("name", ["llama-bias", "gpt2"])
def test_bfloat16_paths_agree_bit_for_bit(dirs, calls, name):
    """A model cast to bfloat16 after layout (the norms' non-float32 branch): the plain path's
    logits, hidden states and cache equal the module path's exactly."""
    model = _load(dirs[name], optimized=True).to(torch.bfloat16)
    vocab, n = model.config.vocab_size, _layers(model)
    ids = random_ids(vocab, (2, 7), seed=1)
    padded, mask = _padded_batch(vocab)
    nxt = random_ids(vocab, (3, 2), seed=2)
    with torch.no_grad():
        plain = _trace(model, ids, padded, mask, nxt)
        assert calls == {"plain": 6 * n}
        with _modules_called(model):
            called = _trace(model, ids, padded, mask, nxt)
    assert plain["unpadded prefill logits"].dtype == torch.bfloat16
    assert list(plain) == list(called)
    for key, value in plain.items():
        assert torch.equal(value, called[key]), key


# == 2. when the plain path is taken, and when not ================================================


@LAYOUTS
@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_plain_path_is_taken_and_its_plan_reused(dirs, calls, monkeypatch, name, optimized):
    """Under no_grad and inference_mode: no module forward runs, `plain_block` runs once per
    block, the plan is cached on the base model and not gathered again for an unchanged model."""
    model = _load(dirs[name], optimized)
    base = _base(model)
    block_cls = type(_blocks(model)[0])
    gathered = []

    def plain(self, _original=block_cls.plain):
        gathered.append(self)
        return _original(self)

    monkeypatch.setattr(block_cls, "plain", plain)
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    assert base not in fastpath._plain_plans
    with torch.no_grad():
        model(ids)
        assert calls == {"plain": n} and len(gathered) == n
        plan = fastpath._plain_plans[base]
        model(ids)
    with torch.inference_mode():
        model(ids)
    assert calls == {"plain": 3 * n} and len(gathered) == n
    assert fastpath._plain_plans[base] is plan


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_grad_enabled_calls_the_modules(dirs, calls, name):
    """Eval mode with gradients recorded (a cached plan already there): the modules run, the
    logits carry a graph and match the reference; back under no_grad the plain path returns."""
    path = dirs[name]
    model, ref = _load(path, optimized=True), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    with torch.no_grad():
        before = model(ids).logits
    calls.clear()
    logits = model(ids).logits
    assert calls == {"module": n}
    assert logits.requires_grad
    with torch.no_grad():
        _close(logits, ref(ids).logits, "grad-enabled logits vs reference")
        calls.clear()
        assert torch.equal(model(ids).logits, before)
    assert calls == {"plain": n}


@pytest.mark.parametrize("which", ["model", "one linear", "one norm", "one block"])
@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_training_mode_calls_the_modules(dirs, calls, name, which):
    """The model, or any one module of the stack, in training mode (no dropout configured, so
    the values must not change): modules run, logits equal the eval-mode plain path's; back in
    eval mode the plain path returns."""
    model = _load(dirs[name], optimized=True)
    block = _blocks(model)[1]
    target = {
        "model": model,
        "one linear": block.mlp.down_proj if name == "llama" else block.mlp.c_proj,
        "one norm": block.post_attention_layernorm if name == "llama" else block.ln_2,
        "one block": block,
    }[which]
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    with torch.no_grad():
        expected = model(ids).logits
        calls.clear()
        target.train()
        trained = model(ids).logits
        assert calls == {"module": n}
        target.eval()
        calls.clear()
        again = model(ids).logits
    assert calls == {"plain": n}
    assert torch.equal(trained, expected) and torch.equal(again, expected)


def _ramp(x: torch.Tensor) -> torch.Tensor:
    """x plus a ramp over its last dimension (a change no norm cancels, as it would a constant
    shift or a scale)."""
    return x + torch.linspace(-0.5, 0.5, x.shape[-1], dtype=x.dtype)


def _shifted(output):
    """A forward hook's change: the ramp added to the (first) output."""
    if isinstance(output, tuple):
        return (_ramp(output[0]), *output[1:])
    return _ramp(output)


HOOKED = [
    ("llama", "forward", "model.layers.0"),
    ("llama", "forward", "model.layers.1.self_attn"),
    ("llama", "forward", "model.layers.0.self_attn.k_proj"),
    ("llama", "forward", "model.layers.1.mlp"),
    ("llama", "forward", "model.layers.0.input_layernorm"),
    ("llama", "pre", "model.layers.0.mlp.down_proj"),
    ("llama", "pre", "model.layers.1.post_attention_layernorm"),
    ("llama", "pre", "model.layers.1.mlp"),
    ("gpt2", "forward", "transformer.h.1"),
    ("gpt2", "forward", "transformer.h.0.attn"),
    ("gpt2", "forward", "transformer.h.1.attn.c_attn"),
    ("gpt2", "forward", "transformer.h.0.mlp.c_fc"),
    ("gpt2", "pre", "transformer.h.0.ln_2"),
    ("gpt2", "pre", "transformer.h.1.mlp.c_proj"),
]


@LAYOUTS
@pytest.mark.parametrize("name, kind, target", HOOKED)
def test_hooks_on_a_submodule_run_and_apply(dirs, calls, name, kind, target, optimized):
    """A forward hook (a ramp added to the output) or pre-hook (to the input) on any module of
    the stack: the modules run, the hook fires once, and the logits equal the reference's with
    the same hook; once removed, the plain path and its logits are back."""
    path = dirs[name]
    model, ref = _load(path, optimized), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    fired = []

    def hook(module, args, output):
        fired.append(module)
        return _shifted(output)

    def pre_hook(module, args):
        fired.append(module)
        return (_ramp(args[0]), *args[1:])

    def register(m):
        module = m.get_submodule(target)
        return (
            module.register_forward_hook(hook)
            if kind == "forward"
            else module.register_forward_pre_hook(pre_hook)
        )

    with torch.no_grad():
        plain = model(ids).logits
        calls.clear()
        handles = [register(model), register(ref)]
        hooked = model(ids).logits
        assert calls == {"module": n}
        assert fired == [model.get_submodule(target)]
        expected = ref(ids).logits
        for h in handles:
            h.remove()
        calls.clear()
        again = model(ids).logits
    assert calls == {"plain": n}
    _close(hooked, expected, f"{kind} hook on {target} vs reference")
    assert _differs(hooked, plain)
    assert torch.equal(again, plain)


@pytest.mark.parametrize("kind", ["forward", "pre"])
@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_global_hooks_call_the_modules(dirs, calls, name, kind):
    """A global forward hook or pre-hook (`register_module_forward_hook` / `..._pre_hook`): the
    modules run and the hook sees every block and linear layer; the logits equal the plain
    path's (the hook changes nothing); once removed, the plain path is back."""
    model = _load(dirs[name], optimized=True)
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    seen = []
    register = {
        "forward": nn.modules.module.register_module_forward_hook,
        "pre": nn.modules.module.register_module_forward_pre_hook,
    }[kind]
    with torch.no_grad():
        plain = model(ids).logits
        calls.clear()
        handle = register(lambda module, *args: seen.append(module))
        try:
            hooked = model(ids).logits
        finally:
            handle.remove()
        assert calls == {"module": n}
        calls.clear()
        again = model(ids).logits
    assert calls == {"plain": n}
    seen_ids = {id(m) for m in seen}
    stack = [m for block in _blocks(model) for m in block.modules() if not isinstance(m, nn.Dropout)]
    assert all(id(m) in seen_ids for m in stack)
    assert torch.equal(hooked, plain) and torch.equal(again, plain)


@pytest.mark.parametrize("name", ["llama", "mistral", "gpt2"])
def test_output_attentions_calls_the_modules(dirs, calls, name):
    """output_attentions=True under no_grad: the modules run and every layer's attention weights
    come back, equal to the eager reference's; logits match the reference."""
    path = dirs[name]
    model = _load(path, optimized=True)
    eager = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    ids = random_ids(model.config.vocab_size, (2, 9))
    n = _layers(model)
    with torch.no_grad():
        model(ids)  # a plan is cached
        calls.clear()
        out = model(ids, output_attentions=True)
        expected = eager(ids, output_attentions=True)
    assert calls == {"module": n}
    assert len(out.attentions) == n
    for i, (a, b) in enumerate(zip(out.attentions, expected.attentions, strict=True)):
        assert a is not None and a.shape == b.shape
        _close(a, b, f"attentions[{i}]")
    _close(out.logits, expected.logits, "logits with attentions")


class _Adapter(nn.Module):
    """A LoRA-like wrapper: the wrapped layer's output plus (x A^T) B^T. In the wrapped layer's
    mode (eval here), so only its type tells it from a plain layer."""

    def __init__(self, inner: nn.Module, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.lora_a, self.lora_b = nn.Parameter(a.clone()), nn.Parameter(b.clone())
        self.train(inner.training)

    def forward(self, x):
        return self.inner(x) + (x @ self.lora_a.t()) @ self.lora_b.t()


def _subclassed(layer: nn.Module, a: torch.Tensor, b: torch.Tensor) -> nn.Module:
    """`layer` with its type changed to a subclass of it whose forward adds (x A^T) B^T."""
    base = type(layer)

    def forward(self, x):
        return base.forward(self, x) + (x @ self.lora_a.t()) @ self.lora_b.t()

    layer.__class__ = type(f"Adapted{base.__name__}", (base,), {"forward": forward})
    layer.lora_a, layer.lora_b = nn.Parameter(a.clone()), nn.Parameter(b.clone())
    return layer


ADAPTED = {
    "llama": ("model.layers.1.self_attn", "v_proj", 32, 16),
    "llama-bias": ("model.layers.0.mlp", "gate_proj", 32, 64),
    "gpt2": ("transformer.h.1.mlp", "c_fc", 32, 128),
}


@LAYOUTS
@pytest.mark.parametrize("how", ["wrapper", "subclass"])
@pytest.mark.parametrize("name", list(ADAPTED))
def test_adapted_linear_calls_the_modules(dirs, calls, name, how, optimized):
    """A linear layer wrapped by, or turned into a subclass with, a LoRA-like delta: the modules
    run and the logits include the delta, equal to the reference adapted alike."""
    path = dirs[name]
    model, ref = _load(path, optimized), _reference(path)
    parent, child, n_in, n_out = ADAPTED[name]
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, n_in, generator=g) * 0.2, torch.randn(n_out, 4, generator=g) * 0.2
    ids = random_ids(model.config.vocab_size, (2, 6))
    with torch.no_grad():
        plain = model(ids).logits
        for m in (model, ref):
            holder = m.get_submodule(parent)
            layer = getattr(holder, child)
            setattr(holder, child, _Adapter(layer, a, b) if how == "wrapper" else _subclassed(layer, a, b))
        calls.clear()
        adapted = model(ids).logits
        expected = ref(ids).logits
    assert calls == {"module": _layers(model)}
    _close(adapted, expected, f"{how} on {child} vs reference")
    assert _differs(adapted, plain)


@pytest.mark.parametrize(
    "name, target",
    [
        ("llama", "model.layers.0.self_attn.q_proj"),
        ("llama", "model.layers.1.input_layernorm"),
        ("llama", "model.layers.1.mlp"),
        ("gpt2", "transformer.h.0.attn.c_proj"),
        ("gpt2", "transformer.h.1.ln_1"),
    ],
)
def test_forward_rebound_on_an_instance_calls_the_modules(dirs, calls, name, target):
    """`module.forward` re-bound on the instance (as accelerate's hooks do) to change its output:
    the modules run and the logits equal the reference's re-bound alike; with the attribute
    deleted, the plain path and its logits are back."""
    path = dirs[name]
    model, ref = _load(path, optimized=True), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    with torch.no_grad():
        plain = model(ids).logits
        for m in (model, ref):
            module = m.get_submodule(target)
            module.forward = lambda *args, _old=module.forward, **kwargs: _shifted(_old(*args, **kwargs))
        calls.clear()
        rebound = model(ids).logits
        assert calls == {"module": n}
        expected = ref(ids).logits
        del model.get_submodule(target).forward
        calls.clear()
        again = model(ids).logits
    assert calls == {"plain": n}
    _close(rebound, expected, f"{target}.forward re-bound vs reference")
    assert _differs(rebound, plain)
    assert torch.equal(again, plain)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_compiled_submodule_is_not_plain(dirs, name):
    """`module.compile()` on one module of the stack: `plain_plan` gives no plan (calling the
    module would run the compiled call, not its forward). Checked without running it."""
    model = _load(dirs[name])
    base, blocks = _base(model), _blocks(model)
    x = torch.zeros(2, model.config.hidden_size)
    with torch.no_grad():
        assert fastpath.plain_plan(base, blocks, x, False) is not None
        blocks[1].mlp.compile()
        assert fastpath.plain_plan(base, blocks, x, False) is None


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_forward_calls_the_modules(dirs, calls):
    """Under `torch.jit.trace` the modules run (tracing records module calls); the traced
    function gives the eager logits on new inputs."""
    model = _load(dirs["llama"]).requires_grad_(False)  # a traced function holds weights as constants
    vocab = model.config.vocab_size
    ids, other = random_ids(vocab, (2, 6), seed=1), random_ids(vocab, (2, 6), seed=2)
    with torch.no_grad():
        traced = torch.jit.trace(lambda x: model(x, use_cache=False).logits, (ids,), check_trace=False)
        assert calls == {"module": _layers(model)}
        calls.clear()
        assert torch.equal(traced(other), model(other, use_cache=False).logits)
    assert calls == {"plain": _layers(model)}


def test_compiler_capture_calls_the_modules(dirs, calls, monkeypatch):
    """While `torch.compile` captures a forward (`torch.compiler.is_compiling()`), the modules
    run, so the compiler sees them and their hooks; the logits do not change."""
    model = _load(dirs["llama"])
    ids = random_ids(model.config.vocab_size, (1, 5), seed=3)
    with torch.no_grad():
        plain = model(ids).logits
        calls.clear()
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        captured = model(ids).logits
    assert calls == {"module": _layers(model)}
    assert torch.equal(captured, plain)


# == 3. the cached plan follows changes ============================================================


def _weights(shape, seed) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.1


def _new_linear(old: nn.Linear, seed: int) -> nn.Linear:
    """A new layer of the same shape with other weights, in eval mode as the model is (a new
    module starts in training mode, which alone would make the stack call its modules)."""
    new = nn.Linear(old.in_features, old.out_features, bias=old.bias is not None).eval()
    with torch.no_grad():
        new.weight.copy_(_weights(new.weight.shape, seed))
        if new.bias is not None:
            new.bias.copy_(_weights(new.bias.shape, seed + 1))
    return new


def _llama_edits():
    """(what, edit(model, is_reference)) applied one after another to Haven and the reference."""

    def layers(m):
        return m.model.layers

    def new_parameter(m, ref):
        k = layers(m)[0].self_attn.k_proj
        k.weight = nn.Parameter(_weights(k.weight.shape, 10))

    def data_swapped(m, ref):
        up = layers(m)[1].mlp.up_proj
        up.weight.data = _weights(up.weight.shape, 11)

    def new_linear(m, ref):
        attn = layers(m)[1].self_attn
        attn.o_proj = _new_linear(attn.o_proj, 12)

    def in_place_data(m, ref):
        layers(m)[0].mlp.gate_proj.weight.data.mul_(2.0)

    def in_place_no_grad(m, ref):
        with torch.no_grad():
            layers(m)[1].post_attention_layernorm.weight.add_(1.0)

    def new_norm(m, ref):
        layer = layers(m)[0]
        norm = copy.deepcopy(layer.input_layernorm)
        with torch.no_grad():
            norm.weight.mul_(0.5)
        layer.input_layernorm = norm

    def new_activation(m, ref):
        mlp = layers(m)[1].mlp
        if ref:
            mlp.act_fn = nn.ReLU()
        else:
            mlp.act = F.relu

    def float64(m, ref):
        m.to(torch.float64)

    return [
        ("a new Parameter", new_parameter),
        (".data swapped", data_swapped),
        ("a new nn.Linear", new_linear),
        ("weight.data.mul_", in_place_data),
        ("add_ under no_grad", in_place_no_grad),
        ("a new norm module", new_norm),
        ("another activation", new_activation),
        ("cast to float64", float64),
    ]


def _gpt2_edits():
    def blocks(m):
        return m.transformer.h

    def new_parameter(m, ref):
        c = blocks(m)[0].attn.c_attn
        c.weight = nn.Parameter(_weights(c.weight.shape, 20))

    def data_swapped(m, ref):
        c = blocks(m)[1].mlp.c_fc
        c.weight.data = _weights(c.weight.shape, 21)

    def new_projection(m, ref):
        attn = blocks(m)[1].attn
        proj = copy.deepcopy(attn.c_proj)
        with torch.no_grad():
            proj.weight.copy_(_weights(proj.weight.shape, 22))
        attn.c_proj = proj

    def in_place(m, ref):
        with torch.no_grad():
            blocks(m)[0].ln_1.weight.add_(1.0)
        blocks(m)[1].ln_2.bias.data.add_(0.5)

    def new_activation(m, ref):
        blocks(m)[0].mlp.act = nn.ReLU() if ref else F.relu

    def float64(m, ref):
        m.to(torch.float64)

    return [
        ("a new Parameter", new_parameter),
        (".data swapped", data_swapped),
        ("a new Conv1D", new_projection),
        ("in-place edits", in_place),
        ("another activation", new_activation),
        ("cast to float64", float64),
    ]


@LAYOUTS
@pytest.mark.parametrize("name", ["llama", "llama-bias", "gpt2"])
def test_plan_follows_replaced_and_edited_weights(dirs, calls, name, optimized):
    """After a plain forward, each edit in turn (a new Parameter, `.data` swapped, a new layer
    of the same type, in-place edits, a new norm, another activation, a cast):
    the next forward takes the plain path, its logits change, equal the module path's exactly
    and the reference's edited alike."""
    path = dirs[name]
    model, ref = _load(path, optimized), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    edits = _gpt2_edits() if name.startswith("gpt2") else _llama_edits()
    with torch.no_grad():
        before = model(ids).logits
        for what, edit in edits:
            edit(model, False)
            edit(ref, True)
            calls.clear()
            plain = model(ids).logits
            assert calls == {"plain": n}, what
            with _modules_called(model):
                called = model(ids).logits
            expected = ref(ids).logits
            assert torch.equal(plain, called), f"after {what}: plain path differs from the module path"
            _close(plain, expected, f"after {what}: vs reference", atol=ATOL)
            if what == "cast to float64":
                assert plain.dtype == torch.float64
            else:
                assert _differs(plain, before), f"{what} changed nothing"
            before = plain


def _prune_mlp(mlp: nn.Module, keep: int, how: str) -> None:
    """Keep the first `keep` intermediate units of a Llama MLP, the weights re-pointed at
    leading slices of the old ones (the same memory start, a smaller shape): as new Parameters
    or through `.data`."""
    for name, rows in (("gate_proj", True), ("up_proj", True), ("down_proj", False)):
        layer = getattr(mlp, name)
        for key, p in list(layer._parameters.items()):
            if p is None or (key == "bias" and not rows):
                continue
            part = p.detach()[:keep] if rows else p.detach()[:, :keep]
            if how == "new Parameter":
                setattr(layer, key, nn.Parameter(part))
            else:
                p.data = part


def _transpose_square(m: nn.Module, how: str) -> None:
    """q_proj's (square) weight re-pointed at its own transpose (same memory start, other strides)."""
    q = m.model.layers[1].self_attn.q_proj
    if how == "new Parameter":
        q.weight = nn.Parameter(q.weight.detach().t())
    else:
        q.weight.data = q.weight.data.t()


@LAYOUTS
@pytest.mark.parametrize("how", ["new Parameter", ".data"])
@pytest.mark.parametrize("edit", ["pruned", "transposed"])
def test_plan_follows_parameters_re_pointed_at_the_same_memory(dirs, calls, edit, how, optimized):
    """A weight re-pointed at a view that starts where it did (an MLP pruned to its leading
    units; a square weight replaced by its transpose), as a new Parameter or through `.data`:
    the next plain forward uses the new views, as the module path and the reference do."""
    path = dirs["llama-bias"]
    model, ref = _load(path, optimized), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    with torch.no_grad():
        before = model(ids).logits
        for m in (model, ref):
            if edit == "pruned":
                _prune_mlp(m.model.layers[0].mlp, 40, how)
            else:
                _transpose_square(m, how)
        calls.clear()
        plain = model(ids).logits
        assert calls == {"plain": _layers(model)}
        with _modules_called(model):
            called = model(ids).logits
        expected = ref(ids).logits
    _close(called, expected, "module path vs reference")
    assert _differs(expected, before)
    _close(plain, expected, "plain path vs reference")
    assert torch.equal(plain, called)


def test_plan_follows_optimize_for_inference_after_a_forward(dirs, calls):
    """A plain forward, then optimize_for_inference() re-lays the weights: the next plain forward
    uses the laid-out weights (an in-place edit of a joined weight shows) and equals the module
    path."""
    model = _load(dirs["llama-bias"])
    ids = random_ids(model.config.vocab_size, (2, 6))
    with torch.no_grad():
        before = model(ids).logits
        model.optimize_for_inference()
        model.model.layers[0].self_attn.v_proj.weight.mul_(3.0)  # a block of the joint q/k/v matrix
        plain = model(ids).logits
        with _modules_called(model):
            called = model(ids).logits
    assert torch.equal(plain, called)
    assert _differs(plain, before)


def test_plan_follows_load_state_dict_and_functional_call(dirs, calls):
    """`load_state_dict` (in place, and with `assign=True`) and `torch.func.functional_call` with
    other weights: the plain path uses the weights in force, the same as the reference; after
    functional_call the model's own weights are back."""
    path = dirs["llama"]
    model, ref = _load(path, optimized=True), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    n = _layers(model)
    with torch.no_grad():
        original = model(ids).logits
        scaled = {k: v * 1.25 for k, v in ref.state_dict().items()}
        calls.clear()
        swapped = torch.func.functional_call(model, scaled, (ids,)).logits
        assert calls == {"plain": n}
        _close(swapped, torch.func.functional_call(ref, scaled, (ids,)).logits, "functional_call")
        assert _differs(swapped, original)
        assert torch.equal(model(ids).logits, original)

        model.load_state_dict(scaled)
        ref.load_state_dict(scaled)
        in_place = model(ids).logits
        _close(in_place, ref(ids).logits, "load_state_dict")
        doubled = {k: v * 2.0 for k, v in ref.state_dict().items()}
        model.load_state_dict(doubled, assign=True)
        ref.load_state_dict(doubled, assign=True)
        calls.clear()
        assigned = model(ids).logits
        assert calls == {"plain": n}
        with _modules_called(model):
            assert torch.equal(model(ids).logits, assigned)
        _close(assigned, ref(ids).logits, "load_state_dict(assign=True)")
        assert _differs(assigned, in_place)


# == 4. gradients ================================================================================


@pytest.mark.parametrize("name, optimized", [("llama-bias", True), ("mistral", False), ("gpt2", True)])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_gradients_equal_the_reference(dirs, calls, name, optimized, mode):
    """After a plain forward (a plan cached), loss.backward() with gradients on, in eval or train
    mode: the modules run and every parameter's gradient equals the reference's."""
    path = dirs[name]
    model, ref = _load(path, optimized), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 8))
    with torch.no_grad():
        model(ids)
    assert calls == {"plain": _layers(model)}
    calls.clear()
    for m in (model, ref):
        m.train(mode == "train")
        m(ids, labels=ids).loss.backward()
    assert calls == {"module": _layers(model)}
    theirs = dict(ref.named_parameters())
    for key, p in model.named_parameters():
        assert p.grad is not None, key
        assert torch.allclose(p.grad, theirs[key].grad, atol=GRAD_ATOL, rtol=GRAD_RTOL), key


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_gradient_reaches_inputs_of_a_frozen_model(dirs, calls, name):
    """Every parameter frozen, eval mode, gradients on, `inputs_embeds` requiring grad: the
    gradient reaches the embeddings, equal to the reference's."""
    path = dirs[name]
    model, ref = _load(path, optimized=True), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    grads = []
    for m in (model, ref):
        m.requires_grad_(False)
        with torch.no_grad():
            embeds = m.get_input_embeddings()(ids)
        embeds.requires_grad_(True)
        m(inputs_embeds=embeds).logits.pow(2).mean().backward()
        grads.append(embeds.grad)
    assert calls["plain"] == 0
    assert grads[0] is not None and grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=GRAD_ATOL, rtol=GRAD_RTOL)


# == 5. generate ================================================================================


@pytest.mark.parametrize("name", ["llama", "mistral", "gpt2"])
def test_generate_on_the_plain_path_matches_reference(dirs, calls, name):
    """After optimize_for_inference(), greedy generate() runs every step on the plain path and
    gives the reference's tokens for a single prompt and a left-padded batch."""
    path = dirs[name]
    model, ref = _load(path, optimized=True), _reference(path)
    ids, mask = _padded_batch(model.config.vocab_size, ref.generation_config.pad_token_id)
    expected_one = ref.generate(ids[:1], max_new_tokens=10, do_sample=False)
    expected_batch = ref.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    calls.clear()
    assert torch.equal(model.generate(ids[:1], max_new_tokens=10, do_sample=False), expected_one)
    assert torch.equal(
        model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False), expected_batch
    )
    n = _layers(model)
    assert calls["module"] == 0 and calls["plain"] >= 2 * n and calls["plain"] % n == 0


# == 6. what else could tell the paths apart ======================================================


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_forward_patched_on_a_class_is_honoured(dirs, calls, monkeypatch, name):
    """A block module class whose forward was patched over (as libraries that swap in their own
    kernels do) is called, not stood in for: the logits follow the patch, as the reference's
    do when its class is patched the same way."""
    path = dirs[name]
    model, ref = _load(path, optimized=True), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    with torch.no_grad():
        before = model(ids).logits
    ref_mlp = type(ref.model.layers[0].mlp if name == "llama" else ref.transformer.h[0].mlp)
    for cls in (type(_blocks(model)[0].mlp), ref_mlp):

        def doubled(self, x, _original=cls.forward):
            return 2.0 * _original(self, x)

        monkeypatch.setattr(cls, "forward", doubled)
    calls.clear()
    with torch.no_grad():
        patched = model(ids).logits
        expected = ref(ids).logits
    assert calls == {"module": _layers(model)}
    assert _differs(patched, before)
    _close(patched, expected, "MLP forward patched on the class")


def test_linear_forward_patched_on_the_class_is_honoured(dirs, monkeypatch):
    """`nn.Linear.forward` patched over: every linear of the model runs the patch (the
    shortcut straight to F.linear is not taken), as the reference's do."""
    path = dirs["llama"]
    model, ref = _load(path, optimized=True), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    with torch.no_grad():
        before = model(ids).logits

    def shifted(self, x, _original=nn.Linear.forward):
        return _original(self, x) + 0.01

    monkeypatch.setattr(nn.Linear, "forward", shifted)
    with torch.no_grad():
        patched, expected = model(ids).logits, ref(ids).logits
    assert _differs(patched, before)
    _close(patched, expected, "nn.Linear.forward patched")


class _Delegate(nn.Module):
    """A wrapper (as adapters and offloading tools put around a module) that calls the module."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
@pytest.mark.parametrize("part", ["mlp", "attention"])
def test_wrapped_block_children_are_called(dirs, calls, name, part):
    """A block's attention or MLP wrapped in another module: the forward calls the modules and
    gives what the unwrapped model gives."""
    model = _load(dirs[name], optimized=True)
    ids = random_ids(model.config.vocab_size, (2, 6))
    with torch.no_grad():
        expected = model(ids).logits
    block = _blocks(model)[1]
    attr = "mlp" if part == "mlp" else ("self_attn" if name == "llama" else "attn")
    setattr(block, attr, _Delegate(getattr(block, attr)).eval())
    calls.clear()
    with torch.no_grad():
        got = model(ids).logits
    assert calls["plain"] == 0
    assert torch.equal(got, expected)


def test_norm_replaced_by_another_kind_is_called(dirs, calls):
    """Llama's RMSNorm replaced by an nn.LayerNorm: the forward runs it, as the reference does
    with the same replacement."""
    path = dirs["llama"]
    model, ref = _load(path, optimized=True), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 6))
    for m in (model, ref):
        m.model.layers[0].input_layernorm = nn.LayerNorm(m.config.hidden_size).eval()
    calls.clear()
    with torch.no_grad():
        got, expected = model(ids).logits, ref(ids).logits
    assert calls["plain"] == 0
    _close(got, expected, "RMSNorm replaced by LayerNorm")


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_tensor_subclass_weights_are_called(dirs, calls, name):
    """A weight that is a tensor subclass (as quantized or distributed weights are; this one
    reports no memory address of its own) takes the module path, and replacing it is seen."""
    two_tensor = pytest.importorskip("torch.testing._internal.two_tensor")
    model = _load(dirs[name])
    block = _blocks(model)[0]
    linear = block.mlp.down_proj if name == "llama" else block.mlp.c_proj
    w = linear.weight.detach().clone()
    ids = random_ids(model.config.vocab_size, (2, 6))
    linear.weight = nn.Parameter(two_tensor.TwoTensor(w, w.clone()), requires_grad=False)
    with torch.no_grad():
        model(ids)
        linear.weight = nn.Parameter(two_tensor.TwoTensor(3 * w, 3 * w), requires_grad=False)
        calls.clear()
        got = model(ids).logits
        with _modules_called(model):
            expected = model(ids).logits
    assert calls["plain"] == 0
    assert torch.equal(got, expected)


def test_upcast_attention_under_autocast_matches_reference(tmp_path):
    """GPT-2 with `reorder_and_upcast_attn` under CPU autocast: the float32 attention runs with
    autocast off, as the reference's does (it used to run in bfloat16 and fail), and every
    forward takes it (the activations' dtype decides, whichever path)."""
    path = build_reference(tmp_path / "upcast", "gpt2", seed=53, reorder_and_upcast_attn=True)
    model, ref = _load(path), _reference(path)
    ids = random_ids(model.config.vocab_size, (2, 8))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = model(ids).logits.float(), ref(ids).logits.float()
        with _modules_called(model):
            called = model(ids).logits.float()
    _close(got, expected, "upcast attention under autocast", atol=0.05)
    assert torch.equal(got, called)


def test_non_contiguous_embeddings_match_the_module_path(dirs, calls):
    """`inputs_embeds` whose channels are not innermost in memory: the same logits, bit for bit,
    as the module path (which reduces over the memory as given)."""
    model = _load(dirs["llama"], optimized=True)
    ids = random_ids(model.config.vocab_size, (2, 6))
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids).permute(2, 1, 0).contiguous().permute(2, 1, 0)
        got = model(inputs_embeds=embeds).logits
        with _modules_called(model):
            expected = model(inputs_embeds=embeds).logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize("change", ["to float64", "load_state_dict", "deepcopy"])
def test_plan_is_not_kept_past_a_move_a_load_or_a_copy(dirs, change):
    """A cached plan holds tensors: it is dropped when the model is cast or moved, or loaded
    into, and a deep copy of the model does not carry it (so no stale weights stay alive)."""
    model = _load(dirs["llama"], optimized=True)
    base = _base(model)
    ids = random_ids(model.config.vocab_size, (1, 4))
    with torch.no_grad():
        model(ids)
    assert base in fastpath._plain_plans
    if change == "to float64":
        model.to(torch.float64)
    elif change == "load_state_dict":
        model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    else:
        copied = copy.deepcopy(model)
        assert _base(copied) not in fastpath._plain_plans
        return
    assert base not in fastpath._plain_plans
