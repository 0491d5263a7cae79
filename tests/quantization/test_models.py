"""Quantized decoders against the float model: greedy tokens, logits, saving and reloading,
what stays float, dtype="auto" / bf16 decoding. Checkpoints are tiny random models built by the
reference library (tests/fixtures/decoders.py), long enough for 128 greedy steps."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from fixtures.decoders import build_reference
from haven import AutoModelForCausalLM, QuantizationConfig
from haven.linear.quantized import QuantizedLinear

STEPS = 128


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def long_decoder(request, tmp_path_factory):
    kind = request.param
    positions = {"n_positions": 192} if kind == "gpt2" else {"max_position_embeddings": 192}
    return build_reference(tmp_path_factory.mktemp(kind), kind, seed=5, **positions)


def _greedy(model, prompt):
    out = model.generate(prompt, max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False)
    return out[0, prompt.shape[1] :]


def test_int8_greedy_tokens_match_float_for_95_percent_of_128_steps(long_decoder):
    """Each of 128 greedy steps is compared on the float model's own sequence (teacher-forced):
    int8's next token given the same prefix must equal fp32's at >= 95% of the steps. (Run free,
    one near-tie, which random tiny models have, sends the two sequences apart for good, so the
    free-running match measures where the first near-tie falls rather than int8's accuracy.)"""
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41, 7, 64]])
    ref = transformers.AutoModelForCausalLM.from_pretrained(long_decoder).eval()
    expected = ref.generate(prompt, max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False)[0, prompt.shape[1] :]
    model = AutoModelForCausalLM.from_pretrained(long_decoder, load_in_8bit=True)
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())
    seq = torch.cat([prompt[0], expected]).unsqueeze(0)
    with torch.no_grad():
        want, have = ref(seq).logits[0, prompt.shape[1] - 1 : -1], model(seq).logits[0, prompt.shape[1] - 1 : -1]
    eos = ref.generation_config.eos_token_id  # min_new_tokens keeps it from being chosen
    picked = want.clone().index_fill_(-1, torch.tensor([eos]), -torch.inf).argmax(-1)
    assert len(want) == STEPS and torch.equal(picked, expected)
    int8_picked = have.clone().index_fill_(-1, torch.tensor([eos]), -torch.inf).argmax(-1)
    assert (int8_picked == expected).float().mean() >= 0.95
    # logits tolerance: int8 logits are within 2% of the fp32 logits' range of the reference's
    assert (have - want).abs().max() <= 0.02 * (want.max() - want.min())
    # and the quantized model generates through its KV cache as it computes in one call
    free = _greedy(model, prompt)
    with torch.no_grad():
        step = model(torch.cat([prompt[0], free]).unsqueeze(0)).logits[0, prompt.shape[1] - 1 : -1]
    step = step.index_fill_(-1, torch.tensor([eos]), -torch.inf).argmax(-1)
    assert (step == free).float().mean() >= 0.95


@pytest.mark.parametrize("bits", [8, 4])
def test_saved_quantized_model_reloads_without_requantizing(bits, long_decoder, tmp_path, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(long_decoder, quantization_config=QuantizationConfig(bits=bits))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert saved["quant_method"] == "haven" and saved["bits"] == bits
    import haven.linear.quantized as quantized

    def no_quantizing(*args, **kwargs):
        raise AssertionError("a saved quantized model must not be quantized again")

    monkeypatch.setattr(quantized, "quantize", no_quantizing)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    prompt = torch.tensor([[3, 9, 27]])
    assert torch.equal(_greedy_short(again, prompt), _greedy_short(model, prompt))
    with pytest.raises(ValueError, match="already quantized"):
        AutoModelForCausalLM.from_pretrained(tmp_path, load_in_8bit=bits == 4, load_in_4bit=bits == 8)


def _greedy_short(model, prompt):
    return model.generate(prompt, max_new_tokens=8, do_sample=False)


def test_embeddings_norms_and_output_layer_stay_float_unless_asked(long_decoder):
    model = AutoModelForCausalLM.from_pretrained(long_decoder, load_in_4bit=True)
    quantized = {n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    assert quantized and not any("lm_head" in n for n in quantized)
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert isinstance(model.get_output_embeddings(), torch.nn.Linear)
    with_head = AutoModelForCausalLM.from_pretrained(
        long_decoder, quantization_config=QuantizationConfig(bits=8, quantize_lm_head=True)
    )
    head = with_head.get_output_embeddings()
    assert isinstance(head, QuantizedLinear)
    float_head = model.get_output_embeddings().weight  # tied or not, what the float model multiplies by
    assert (head.dequantized() - float_head).abs().max() < 0.02 * float_head.abs().max()
    skipped = AutoModelForCausalLM.from_pretrained(
        long_decoder, quantization_config=QuantizationConfig(bits=8, modules_to_not_convert=["mlp"])
    )
    names = {n for n, m in skipped.named_modules() if isinstance(m, QuantizedLinear)}
    assert names and not any(".mlp." in n for n in names)


def test_quantized_output_layer_saves_and_reloads(long_decoder, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(
        long_decoder, quantization_config=QuantizationConfig(bits=4, quantize_lm_head=True)
    )
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    prompt = torch.tensor([[3, 9, 27, 4]])
    with torch.no_grad():
        assert torch.equal(again(prompt).logits, model(prompt).logits)


def test_dtype_auto_keeps_a_bf16_checkpoint_bf16_and_decodes(long_decoder, tmp_path):
    ref = transformers.AutoModelForCausalLM.from_pretrained(long_decoder, dtype=torch.bfloat16)
    ref.save_pretrained(tmp_path)
    for kwargs in ({"dtype": "auto"}, {"torch_dtype": "auto"}, {}):
        model = AutoModelForCausalLM.from_pretrained(tmp_path, **kwargs)
        assert model.dtype == torch.bfloat16
    prompt = torch.tensor([[5, 17, 33, 2]])
    got = model.generate(prompt, max_new_tokens=16, do_sample=False)
    want = ref.eval().generate(prompt, max_new_tokens=16, do_sample=False)
    assert (got == want).float().mean() >= 0.9  # bf16 rounding may differ in order of operations
    int4 = AutoModelForCausalLM.from_pretrained(tmp_path, load_in_4bit=True)
    assert int4.get_input_embeddings().weight.dtype == torch.bfloat16
    assert int4.generate(prompt, max_new_tokens=4, do_sample=False).shape == (1, 8)


def test_compute_dtype_runs_the_products_in_it(long_decoder):
    model = AutoModelForCausalLM.from_pretrained(
        long_decoder, quantization_config={"load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat16"}
    )
    layer = next(m for m in model.modules() if isinstance(m, QuantizedLinear))
    assert layer.compute_dtype == torch.bfloat16
    x = torch.randn(2, layer.in_features)
    want = torch.nn.functional.linear(x.bfloat16(), layer.dequantized(torch.bfloat16), None if layer.bias is None else layer.bias.bfloat16())
    assert torch.equal(layer(x), want.float())


def test_a_cast_keeps_scales_float16(long_decoder):
    model = AutoModelForCausalLM.from_pretrained(long_decoder, load_in_4bit=True, dtype=torch.bfloat16)
    layer = next(m for m in model.modules() if isinstance(m, QuantizedLinear))
    assert model.dtype == torch.bfloat16 and layer.scales.dtype == torch.float16 == layer.zeros.dtype
    model.float()
    assert layer.scales.dtype == torch.float16 == layer.zeros.dtype


def test_float32_scales_of_an_older_save_load_as_float16(long_decoder, tmp_path):
    """Haven saved scales and zeros in float32 before they moved to float16: such a save still
    loads (rounded to float16, the codes as saved) and gives the same logits as the same codes with
    their scales rounded by hand."""
    from safetensors.torch import load_file, save_file

    model = AutoModelForCausalLM.from_pretrained(long_decoder, load_in_4bit=True).eval()
    model.save_pretrained(tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    tensors = load_file(files[0])
    widened = {k: (v.float() if k.endswith((".scales", ".zeros")) else v) for k, v in tensors.items()}
    assert any(v.dtype == torch.float32 for k, v in widened.items() if k.endswith(".scales"))
    save_file(widened, files[0], metadata={"format": "pt"})
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    layers = [m for m in again.modules() if isinstance(m, QuantizedLinear)]
    assert layers and all(m.scales.dtype == torch.float16 for m in layers)
    ids = torch.tensor([[3, 14, 15, 92, 65]])
    with torch.inference_mode():
        assert torch.equal(again(ids).logits, model(ids).logits)
