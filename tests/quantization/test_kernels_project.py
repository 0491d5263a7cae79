"""`haven.linear.project`: a Llama block's q/k/v and gate/up projections of a quantized model run as
one kernel call each, with exactly the outputs of one call per layer; hooks, float layers and
autograd call each layer as a module."""

from __future__ import annotations

import pytest
import torch

from haven import AutoModelForCausalLM
from haven.linear import QuantizationConfig, kernels
from haven.linear import project as project_module


@pytest.fixture
def built():
    if kernels.load() is None:
        pytest.skip("the kernels could not be built here (no compiler?)")


@pytest.fixture
def calls(monkeypatch):
    """The number of layers in each kernel call."""
    seen: list[int] = []
    run = kernels.run
    monkeypatch.setattr(kernels, "run", lambda layers, x: seen.append(len(layers)) or run(layers, x))
    return seen


def decode(model, ids) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=8, do_sample=False, output_scores=True, return_dict_in_generate=True)
    return out.sequences, torch.stack(out.scores)


@pytest.mark.parametrize("bits", [8, 4])
def test_joined_calls_equal_one_call_per_layer(llama_dir, bits, built, calls, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(llama_dir, quantization_config=QuantizationConfig(bits=bits))
    layers = model.config.num_hidden_layers
    ids = torch.tensor([[3, 17, 25, 9, 40, 11]])
    tokens, scores = decode(model, ids)
    joined = list(calls)
    # per forward (the 6-token prompt and 7 steps, all within the kernel's rows): q/k/v (3 layers)
    # and gate/up (2) in one call each; o and down alone (the output layer stays float)
    forwards = 8
    assert joined.count(3) == joined.count(2) == forwards * layers and joined.count(1) == 2 * forwards * layers
    calls.clear()
    monkeypatch.setattr(project_module, "_hooked", lambda layers: True)  # one call per layer
    alone_tokens, alone_scores = decode(model, ids)
    assert set(calls) == {1}
    assert torch.equal(tokens, alone_tokens) and torch.equal(scores, alone_scores)


def test_hooks_and_autograd_call_each_layer(llama_dir, built, calls):
    model = AutoModelForCausalLM.from_pretrained(llama_dir, quantization_config=QuantizationConfig(bits=8))
    attention = model.model.layers[0].self_attn
    seen = []
    handle = attention.k_proj.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.inference_mode():
        model(torch.tensor([[3, 17]]))
    assert len(seen) == 1  # the hook ran: k_proj was called as a module
    handle.remove()
    x = torch.randn(1, 1, model.config.hidden_size, requires_grad=True)
    q, k, v = project_module.project(x, attention.q_proj, attention.k_proj, attention.v_proj)
    assert q.requires_grad and torch.equal(k, attention.k_proj(x))


def test_float_layers_are_called_as_modules(llama_dir):
    model = AutoModelForCausalLM.from_pretrained(llama_dir)
    mlp = model.model.layers[0].mlp
    x = torch.randn(2, 3, model.config.hidden_size)
    with torch.no_grad():
        gate, up = project_module.project(x, mlp.gate_proj, mlp.up_proj)
        assert torch.equal(gate, mlp.gate_proj(x)) and torch.equal(up, mlp.up_proj(x))
