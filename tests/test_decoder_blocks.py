"""Decoder blocks with one body each, their weights as the checkpoint stores them.

`optimize_for_inference()` (pipelines call it) leaves a decoder's weights as loaded: the same
layout at every batch size, so no workload runs slower than `from_pretrained` alone gives it.
`optimize_for_inference(prepack=True)` (the inference server's batched decoding) adds packed
copies for calls of several rows, with the reference's results.
The block bodies call their projections as modules, so hooks, adapters, replaced weights and
training behave as on any `nn.Module`. Expected values come from the reference library
(`transformers`) on the same tiny checkpoints, or from the checkpoint files (read with
`safetensors`).
"""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn

from fixtures.decoders import build_reference, random_ids
from haven import AutoModelForCausalLM
from haven.checkpoint import load_safetensors, release_mapped_pages
from haven.linear.dense import Prepackable, _packed_weights

transformers.logging.set_verbosity_error()

ATOL = 1e-4  # Haven against the reference (float32)


def dense_available() -> bool:
    from haven.linear import dense

    return dense._ONEDNN


def _reference(path, **kwargs):
    return transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()


def _checkpoint(path) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(path, "model.safetensors"))


def _padded_batch(vocab: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 9) prompts, rows 1 and 2 left-padded (9 > Mistral's window of 4)."""
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, vocab - 1, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :5] = 0
    ids[mask == 0] = pad
    return ids, mask


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, llama_dir, mistral_dir, gpt2_dir) -> dict[str, str]:
    """llama3-rope GQA Llama; a Llama with biases, tied embeddings, GQA and linear rope; Mistral
    (window 4, shorter than the prompts); GPT-2 (tied head)."""
    biased = build_reference(
        tmp_path_factory.mktemp("blocks") / "llama_bias",
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


MODELS = ["llama", "llama-tied-bias", "mistral", "gpt2"]


# == prepared for inference: the checkpoint's layout, the reference's results =====================


@pytest.mark.parametrize("name", MODELS)
def test_optimize_for_inference_keeps_the_checkpoints_tensors(dirs, name, tmp_path):
    """After optimize_for_inference() the state dict is the checkpoint's, tensor for tensor
    (contiguous: safetensors' own saver takes it as is), no weight gets a packed copy, and
    save_pretrained writes the checkpoint's tensors again."""
    path = dirs[name]
    file = _checkpoint(path)
    ours = AutoModelForCausalLM.from_pretrained(path)
    assert ours.optimize_for_inference() is ours
    ids = random_ids(ours.config.vocab_size, (8, 3))  # 8 rows: where encoders use packed weights
    with torch.no_grad():
        ours(ids)
    assert not any(m.prepacked for m in ours.modules() if isinstance(m, Prepackable))
    state = ours.state_dict()
    for key, value in file.items():
        assert state[key].is_contiguous() and torch.equal(state[key], value), key
    save_file({k: state[k] for k in file}, os.fspath(tmp_path / "direct.safetensors"))  # tied: once
    ours.save_pretrained(tmp_path / "saved")
    written = _checkpoint(tmp_path / "saved")
    assert set(written) == set(file)
    assert all(torch.equal(written[k], v) for k, v in file.items())


def _packed_layers(model) -> int:
    return sum(m in _packed_weights for m in model.modules())


@pytest.mark.parametrize("prepack", [None, True])
@pytest.mark.parametrize("name", MODELS)
def test_logits_after_optimize_for_inference_match_reference(dirs, name, prepack):
    """Logits of a one-row step (the matrix-vector path), a prompt and a left-padded batch match
    the reference's, with and without prepacked weights."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference(prepack=prepack), _reference(path)
    vocab = ours.config.vocab_size
    ids = random_ids(vocab, (2, 12))
    padded, mask = _padded_batch(vocab, pad=0)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        assert torch.allclose(ours(ids).logits, ref(ids).logits, atol=ATOL)
        assert torch.allclose(ours(ids[:1, :1]).logits, ref(ids[:1, :1]).logits, atol=ATOL)
        a = ours(padded, attention_mask=mask).logits
        b = ref(padded, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert torch.allclose(a[real], b[real], atol=ATOL)
    layers = sum(isinstance(m, Prepackable) for m in ours.modules())
    assert _packed_layers(ours) == (layers if prepack and dense_available() else 0)


@pytest.mark.parametrize("prepack", [None, True])
@pytest.mark.parametrize("name", MODELS)
def test_generate_matches_reference_at_every_batch_shape(dirs, name, prepack):
    """Greedy tokens equal the reference's for one prompt, a left-padded batch and 3 beams, with
    and without prepacked weights."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference(prepack=prepack), _reference(path)
    ids, mask = _padded_batch(ours.config.vocab_size, ref.generation_config.pad_token_id)
    assert torch.equal(ours.generate(ids[:1], max_new_tokens=10), ref.generate(ids[:1], max_new_tokens=10))
    assert torch.equal(
        ours.generate(ids, attention_mask=mask, max_new_tokens=10),
        ref.generate(ids, attention_mask=mask, max_new_tokens=10),
    )
    assert torch.equal(
        ours.generate(ids[:1], max_new_tokens=6, num_beams=3),
        ref.generate(ids[:1], max_new_tokens=6, num_beams=3),
    )


def test_gpt2_tied_head_stays_one_parameter(dirs):
    """GPT-2: lm_head and wte are one Parameter, with the embedding's values, after preparing."""
    path = dirs["gpt2"]
    ours = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference()
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert torch.equal(ours.lm_head.weight, _checkpoint(path)["transformer.wte.weight"])


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_float64_matches_reference(dirs, name):
    """A prepared model cast to float64 gives the float64 reference's logits and tokens."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference(), _reference(path)
    ours.to(torch.float64)
    ref.to(torch.float64)
    ids = random_ids(ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        a, b = ours(ids).logits, ref(ids).logits
    assert a.dtype == torch.float64 and torch.allclose(a, b, atol=1e-10)
    assert torch.equal(ours.generate(ids[:1], max_new_tokens=8), ref.generate(ids[:1], max_new_tokens=8))


# == modules called as modules: hooks, adapters, edits, attentions, training ======================


@pytest.mark.parametrize("name, target", [("llama", "self_attn.k_proj"), ("gpt2", "attn.c_attn"), ("gpt2", "ln_2")])
def test_hook_on_a_projection_runs_and_applies(dirs, name, target):
    """A forward hook on one block's submodule runs once per forward and its change shows, as in
    the reference with the same hook; removed, the logits are back."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference(), _reference(path)
    ids = random_ids(ours.config.vocab_size, (1, 8))
    calls = []

    def hook(module, args, output):
        calls.append(module)
        return output + 0.25

    def block(model):
        return (model.model.layers if name != "gpt2" else model.transformer.h)[0].get_submodule(target)

    with torch.no_grad():
        plain = ours(ids).logits
        handles = [block(ours).register_forward_hook(hook), block(ref).register_forward_hook(hook)]
        hooked, expected = ours(ids).logits, ref(ids).logits
        for h in handles:
            h.remove()
        again = ours(ids).logits
    assert calls.count(block(ours)) == 1
    assert torch.allclose(hooked, expected, atol=ATOL)
    assert (hooked - plain).abs().max() > 1e-3
    assert torch.equal(again, plain)


def test_replaced_weights_and_modules_are_used(dirs):
    """A new Parameter for k_proj, `.data` reassigned on gate_proj, an in-place edit of up_proj's
    bias, wrappers around v_proj and a gate_proj: logits equal the reference edited alike."""
    path = dirs["llama-tied-bias"]
    ours, ref = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference(), _reference(path)
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
        one_row, one_row_expected = ours(ids[:1, :1]).logits, ref(ids[:1, :1]).logits
    assert torch.allclose(after, expected, atol=ATOL)
    assert torch.allclose(one_row, one_row_expected, atol=ATOL)
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["llama", "mistral", "gpt2"])
def test_output_attentions_equal_the_eager_reference(dirs, name):
    """output_attentions=True: every layer's attention weights equal the eager reference's."""
    path = dirs[name]
    ours = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference()
    eager = _reference(path, attn_implementation="eager")
    ids = random_ids(ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        out, expected = ours(ids, output_attentions=True), eager(ids, output_attentions=True)
    assert len(out.attentions) == len(expected.attentions) == ours.config.num_hidden_layers
    for a, b in zip(out.attentions, expected.attentions, strict=True):
        assert torch.allclose(a, b, atol=ATOL)
    assert torch.allclose(out.logits, expected.logits, atol=ATOL)


@pytest.mark.parametrize("name", ["llama-tied-bias", "mistral", "gpt2"])
def test_training_gradients_equal_the_reference(dirs, name):
    """loss.backward() on a prepared model in train mode: every parameter's gradient equals the
    reference's."""
    path = dirs[name]
    ours, ref = AutoModelForCausalLM.from_pretrained(path).optimize_for_inference(), _reference(path)
    ids = random_ids(ours.config.vocab_size, (2, 10))
    for model in (ours, ref):
        model.train()
        model.config.attn_pdrop = model.config.resid_pdrop = model.config.embd_pdrop = 0.0
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        model(ids, labels=ids).loss.backward()
    ref_params = dict(ref.named_parameters())
    for key, p in ours.named_parameters():
        assert p.grad is not None, key
        assert torch.allclose(p.grad, ref_params[key].grad, atol=1e-5, rtol=1e-4), key


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
