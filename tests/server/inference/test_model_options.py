"""How the inference API loads its models: `haven serve` / `haven worker` take `haven run`'s loading
flags (--inference-device, --inference-dtype, --inference-load-in-8bit / -4bit), and every served
model loads as `pipeline(task, model, **those options)` loads it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from haven import pipeline
from haven.linear import QuantizedLinear
from haven.server.commands import register
from haven.server.inference.registry import Registry
from haven.server.settings import Settings, SettingsError


class FolderFiles:
    def __init__(self, folder: str):
        self.folder = Path(folder)

    def estimate(self, repo_id: str, commit: str) -> float:
        return 1.0

    def snapshot(self, repo_id: str, commit: str) -> Path:
        return self.folder


def serve(folder: str, task: str, options: dict):
    registry = Registry(FolderFiles(folder), budget=10**12, make_runner=lambda served: None, options=options)
    try:
        return registry.lookup("a/m", "0" * 40, task).result(timeout=120)
    finally:
        registry.close()


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(list(flags))


def test_flags_reach_the_settings_and_the_pipeline_options(tmp_path, monkeypatch):
    from haven.server.commands import _settings

    for name in ("HAVEN_INFERENCE_DEVICE", "HAVEN_INFERENCE_DTYPE", "HAVEN_INFERENCE_QUANTIZATION"):
        monkeypatch.delenv(name, raising=False)
    args = parse("serve", "--data", str(tmp_path), "--inference-load-in-4bit", "--inference-dtype", "bfloat16")
    settings = _settings(args)
    assert settings.inference_model_options() == {"device": "cpu", "dtype": "bfloat16", "load_in_4bit": True}
    worker = parse("worker", "--hub", "http://h", "--inference-load-in-8bit", "--inference-device", "auto")
    assert (worker.inference_quantization, worker.inference_device) == ("8bit", "auto")
    with pytest.raises(SystemExit):  # one or the other
        parse("serve", "--inference-load-in-8bit", "--inference-load-in-4bit")
    monkeypatch.setenv("HAVEN_INFERENCE_QUANTIZATION", "8bit")
    assert Settings.load(data_dir=tmp_path).inference_model_options() == {"device": "cpu", "load_in_8bit": True}
    assert Settings.load(data_dir=tmp_path).inference_quantization == "8bit"


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("inference_device", "gpu", "not a device"),
    ("inference_dtype", "int3", "float32, bfloat16, float16, auto"),
    ("inference_quantization", "2bit", "8bit, 4bit"),
])
def test_bad_values_are_refused_by_name(tmp_path, setting, value, says):
    with pytest.raises(SettingsError, match=says) as err:
        Settings.load(data_dir=tmp_path, **{setting: value})
    assert "HAVEN_" + setting.upper() in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_this_machine_lacks_stops_the_server_at_start(tmp_path):
    """Said once at start, with the fix, not as a 500 on every model's first request."""
    done = subprocess.run([sys.executable, "-m", "haven.cli", "serve", "--data", str(tmp_path), "--no-demo",
                           "--inference-device", "cuda"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "haven serve: HAVEN_INFERENCE_DEVICE='cuda': this machine has 0 CUDA device(s); use cpu or auto" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_8bit_server_serves_what_an_8bit_pipeline_gives(gpt2_dir):
    served = serve(gpt2_dir, "text-generation", {"device": "cpu", "load_in_8bit": True})
    float_served = serve(gpt2_dir, "text-generation", {"device": "cpu"})
    assert any(isinstance(m, QuantizedLinear) for m in served.pipe.model.modules())
    expected = pipeline("text-generation", model=gpt2_dir, load_in_8bit=True)("hello there", max_new_tokens=6,
                                                                              do_sample=False)
    assert served.pipe("hello there", max_new_tokens=6, do_sample=False) == expected
    assert served.nbytes < float_served.nbytes / 2  # int8 codes, and its prepacked copies are of float layers only


def test_a_bfloat16_server_keeps_bfloat16_weights_with_no_packed_copies(bert_sequence_classification_dir):
    served = serve(bert_sequence_classification_dir, "text-classification", {"device": "cpu", "dtype": "bfloat16"})
    params = list(served.pipe.model.parameters())
    assert all(p.dtype == torch.bfloat16 for p in params)
    # no float32 weight, so nothing is ever packed: the bytes are the bfloat16 parameters and the buffers
    buffers = sum(b.numel() * b.element_size() for b in served.pipe.model.buffers())
    assert served.nbytes == sum(p.numel() * 2 for p in params) + buffers
    text = "the quick brown fox"
    assert served.pipe(text) == pipeline("text-classification", model=bert_sequence_classification_dir,
                                         dtype="bfloat16")(text)
