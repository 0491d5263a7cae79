"""fastpath.call: module calls in the decoders' hot paths skip nn.Module.__call__ only where that
changes nothing, so hooks and replaced modules (adapters) still work inside generate()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fixtures.decoders import load_pair
from haven import layers
from haven.fastpath import call
from haven.layers import gelu_new


def test_plain_linear_gives_the_module_result():
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8)
    assert torch.equal(call(layer, x), layer(x))


@pytest.mark.parametrize("kind", ["forward", "pre", "global"])
def test_hooks_still_run(kind):
    layer = nn.Linear(8, 4)
    seen = []
    if kind == "forward":
        handle = layer.register_forward_hook(lambda m, args, out: seen.append(out.shape) or out * 0)
    elif kind == "pre":
        handle = layer.register_forward_pre_hook(lambda m, args: seen.append(1) or (args[0] * 0,))
    else:
        handle = nn.modules.module.register_module_forward_hook(lambda m, args, out: seen.append(1) or out * 0)
    try:
        out = call(layer, torch.randn(3, 8))
    finally:
        handle.remove()
    assert seen, "the hook did not run"
    if kind != "pre":
        assert torch.equal(out, torch.zeros(3, 4))


def test_a_forward_rebound_on_the_instance_is_honoured():
    """accelerate's offloading hooks re-bind `module.forward` on the instance."""
    layer = nn.Linear(8, 4)
    inner = layer.forward
    layer.forward = lambda x: inner(x) * 0
    assert torch.equal(call(layer, torch.randn(3, 8)), torch.zeros(3, 4))


def test_a_compiled_module_takes_the_normal_call():
    layer = nn.Linear(8, 4)
    seen = []
    layer._compiled_call_impl = lambda x: seen.append(1) or x  # what m.compile() installs
    call(layer, torch.randn(3, 8))
    assert seen


def test_hooks_and_replaced_modules_inside_a_decoder(gpt2_dir, llama_dir):
    """A forward hook on a projection sees every decode step; a wrapped projection (as adapter
    libraries install) changes the logits."""
    for path, attn, proj in ((llama_dir, "self_attn", "q_proj"), (gpt2_dir, "attn", "c_attn")):
        model, _ = load_pair(path)
        layers = model.model.layers if hasattr(model, "model") else model.transformer.h
        target = getattr(getattr(layers[0], attn), proj)
        calls = []
        handle = target.register_forward_hook(lambda m, args, out, calls=calls: calls.append(out.shape[1]))
        ids = torch.tensor([[5, 6, 7]])
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
        handle.remove()
        assert calls == [3, 1, 1, 1], calls  # the prompt, then one token per step
        with torch.inference_mode():
            base = model(ids).logits

        class Scaled(nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x) * 2

        setattr(getattr(layers[0], attn), proj, Scaled(target))
        with torch.inference_mode():
            assert not torch.allclose(model(ids).logits, base)


def test_gelu_new_is_bit_identical_to_the_reference():
    from transformers.activations import NewGELUActivation

    ref = NewGELUActivation()
    for dtype in (torch.float32, torch.bfloat16):
        for scale in (0.1, 1.0, 5.0, 30.0):
            x = (torch.randn(4, 7, 96) * scale).to(dtype)
            assert torch.equal(gelu_new(x), ref(x)), (dtype, scale)
    layers._float32_constants.clear()  # the float32 constants, first made under inference_mode,
    with torch.inference_mode():  # must still work under autograd
        gelu_new(torch.randn(3))
    x = torch.randn(5, requires_grad=True)
    gelu_new(x).sum().backward()
    assert x.grad is not None
