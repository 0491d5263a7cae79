"""Pipelines and `haven run` take the same quantization and placement options as from_pretrained."""

from __future__ import annotations

import json
import shutil
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


def test_haven_run_compile_decodes_through_the_compiled_step(gpt2_dir, tmp_path, capsys):
    """`haven run text-generation --compile` runs its steps compiled (a graph is captured, none
    breaks) and prints the reference's greedy text; other tasks refuse the flag."""
    from torch._dynamo.utils import counters

    from haven.cli import main

    model = tmp_path / "greedy"  # the pipeline samples unless the model's generation config says not to
    shutil.copytree(gpt2_dir, model)
    settings = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**settings, "do_sample": False}))
    prompt = "hello world"
    want = transformers.pipeline("text-generation", model=str(model))(prompt, max_new_tokens=6)
    counters.clear()
    code = main(["run", "text-generation", "--model", str(model), prompt, "--max-new-tokens", "6", "--load-in-8bit",
                 "--compile", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    assert json.loads(out.out)[0]["generated_text"] == want[0]["generated_text"]
    code = main(["run", "fill-mask", "--model", gpt2_dir, "a [MASK]", "--compile"])
    assert code == 2 and "--compile" in capsys.readouterr().err
