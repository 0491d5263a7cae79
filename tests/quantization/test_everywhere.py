"""Pipelines and `haven run` take the same quantization and placement options as from_pretrained."""

from __future__ import annotations

import json
import subprocess
import sys

import transformers

from haven import pipeline
from haven.linear.quantized import QuantizedLinear


def test_pipeline_loads_quantized_and_keeps_the_float_models_answer(gpt2_dir):
    float_pipe = transformers.pipeline("text-generation", model=gpt2_dir)
    pipe = pipeline("text-generation", model=gpt2_dir, load_in_8bit=True, device_map="cpu")
    assert any(isinstance(m, QuantizedLinear) for m in pipe.model.modules())
    assert pipe.model.hf_device_map == {"": "cpu"}
    prompt = "hello world"
    got = pipe(prompt, max_new_tokens=4, do_sample=False)[0]["generated_text"]
    want = float_pipe(prompt, max_new_tokens=4, do_sample=False)[0]["generated_text"]
    assert got == want


def test_haven_run_takes_load_in_8bit_and_device_map(bert_masked_lm_dir):
    text = "Paris is the [MASK] of France."
    args = ["run", "fill-mask", "--model", bert_masked_lm_dir, text, "--json"]
    quant = subprocess.run(
        [sys.executable, "-m", "haven.cli", *args, "--load-in-8bit", "--device-map", "cpu"],
        capture_output=True, text=True, timeout=120,
    )
    assert quant.returncode == 0, quant.stderr
    want = transformers.pipeline("fill-mask", model=bert_masked_lm_dir)(text, top_k=1)
    assert json.loads(quant.stdout)[0]["token_str"] == want[0]["token_str"]
    both = subprocess.run(
        [sys.executable, "-m", "haven.cli", *args, "--load-in-8bit", "--load-in-4bit"], capture_output=True, text=True
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr
