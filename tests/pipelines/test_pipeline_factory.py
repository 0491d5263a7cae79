"""pipeline(): task table, aliases, task inference, devices, loading; the base class's batching."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from haven import pipeline
from haven.pipelines import TASKS, PipelineError, infer_task, normalize_task
from haven.pipelines.base import Pipeline, parse_device


@pytest.mark.parametrize(
    ("fixture", "task", "cls"),
    [
        ("bert_masked_lm_dir", "fill-mask", "FillMaskPipeline"),
        ("roberta_sequence_classification_dir", "text-classification", "TextClassificationPipeline"),
        ("distilbert_token_classification_dir", "token-classification", "TokenClassificationPipeline"),
    ],
)
def test_task_inferred_from_architectures(request, fixture, task, cls):
    path = request.getfixturevalue(fixture)
    assert infer_task(path) == task
    pipe = pipeline(model=path)
    assert pipe.task == task and type(pipe).__name__ == cls


def test_aliases_and_unknown_task(bert_masked_lm_dir):
    assert normalize_task("sentiment-analysis") == "text-classification"
    assert normalize_task("ner") == "token-classification"
    assert TASKS["text-generation"][0] == "text_generation:TextGenerationPipeline"
    with pytest.raises(PipelineError, match="fill-mask"):
        pipeline("summarize-everything", model=bert_masked_lm_dir)
    with pytest.raises(PipelineError, match="model="):
        pipeline("fill-mask")


def test_model_object_and_tokenizer_object(bert_masked_lm_dir):
    from haven import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(bert_masked_lm_dir)
    tokenizer = AutoTokenizer.from_pretrained(bert_masked_lm_dir)
    by_path = pipeline("fill-mask", model=bert_masked_lm_dir)("hello [MASK]")
    assert pipeline("fill-mask", model=model)("hello [MASK]") == by_path
    assert pipeline("fill-mask", model=model, tokenizer=tokenizer)("hello [MASK]") == by_path
    assert pipeline(model=model, tokenizer=bert_masked_lm_dir).task == "fill-mask"


def test_dtype_is_passed_to_loading(bert_masked_lm_dir):
    pipe = pipeline("fill-mask", model=bert_masked_lm_dir, dtype=torch.bfloat16)
    assert pipe.model.dtype == torch.bfloat16
    assert len(pipe("hello [MASK]")) == 5


def test_devices():
    assert parse_device(None) == torch.device("cpu")
    assert parse_device(-1) == torch.device("cpu")
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device(0) == torch.device("cuda", 0)
    assert parse_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(PipelineError, match="device"):
        parse_device("gpu please")
    with pytest.raises(PipelineError, match="device"):
        parse_device(1.5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_gpu_device_without_cuda_says_so(bert_masked_lm_dir):
    with pytest.raises(PipelineError, match="no CUDA device"):
        pipeline("fill-mask", model=bert_masked_lm_dir, device=0)


def test_importing_pipelines_does_not_import_torch():
    code = "import sys, haven.pipelines, haven.pipelines.commands; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the base class: sorting, dynamic padding, order ---------------------------------------------------


class _Model(torch.nn.Module):
    """Sums the ids of each row (pads are 0), and records the shapes it was called with."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, input_ids, attention_mask=None):
        self.shapes.append(tuple(input_ids.shape))
        assert not torch.is_grad_enabled() and torch.is_inference_mode_enabled()
        return (input_ids * attention_mask).sum(dim=1)


class _SumPipeline(Pipeline):
    """Input: a list of ints. Output: their sum, computed by the model on a padded batch."""

    def preprocess(self, inputs):
        return {"input_ids": list(inputs), "attention_mask": [1] * len(inputs)}

    def _forward(self, model_inputs):
        return self.model_forward(model_inputs).tolist()

    def postprocess(self, features, output):
        return output

    def _is_batch(self, inputs):
        return isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], list)


def test_base_sorts_by_length_pads_per_batch_and_keeps_order():
    model = _Model()
    pipe = _SumPipeline(model, None, batch_size=2)
    inputs = [[1], [1, 2, 3, 4, 5], [2, 2], [7, 7, 7, 7], [3]]
    assert pipe(inputs) == [1, 15, 4, 28, 3]
    # longest first, two per batch, each padded only to its own longest row
    assert model.shapes == [(2, 5), (2, 2), (1, 1)]
    model.shapes.clear()
    assert pipe([5, 6]) == 11  # one input (not a list of inputs)
    assert model.shapes == [(1, 2)]
    assert list(pipe(iter(inputs), batch_size=3)) == [1, 15, 4, 28, 3]  # a generator streams results


def test_base_rejects_bad_batch_size_and_unknown_options():
    with pytest.raises(PipelineError, match="batch_size"):
        _SumPipeline(_Model(), None, batch_size=0)
    with pytest.raises(PipelineError, match="unknown arguments: colour"):
        _SumPipeline(_Model(), None, colour="blue")
