"""pipeline()'s loading arguments go to from_pretrained (the model-card idiom
`pipeline("text-generation", model=..., torch_dtype=..., device_map="auto")`), and what
from_pretrained refuses surfaces."""

from __future__ import annotations

import pytest
import torch
import transformers

from haven import pipeline
from haven.pipelines import PipelineError

PROMPTS = ["Hello world", "Le château est"]


def _reference_generation(path: str, **loading):
    ref = transformers.pipeline("text-generation", model=path, **loading)
    return [ref(p, max_new_tokens=8, do_sample=False) for p in PROMPTS], ref.model.dtype


def test_model_card_idiom_matches_reference(gpt2_dir):
    """torch_dtype + device_map="auto": the reference places with accelerate (not installed here);
    on a CPU-only machine "auto" puts every weight on the CPU, which is the reference without it."""
    pipe = pipeline("text-generation", model=gpt2_dir, torch_dtype=torch.bfloat16, device_map="auto")
    expected, ref_dtype = _reference_generation(gpt2_dir, torch_dtype=torch.bfloat16)
    assert pipe.model.dtype == ref_dtype == torch.bfloat16
    assert pipe.model.device.type == "cpu"
    assert [pipe(p, max_new_tokens=8, do_sample=False) for p in PROMPTS] == expected


def test_model_kwargs_and_dtype_name(gpt2_dir):
    pipe = pipeline("text-generation", model=gpt2_dir, model_kwargs={"torch_dtype": torch.bfloat16})
    assert pipe.model.dtype == torch.bfloat16
    expected, _ = _reference_generation(gpt2_dir, model_kwargs={"torch_dtype": torch.bfloat16})
    assert [pipe(p, max_new_tokens=8, do_sample=False) for p in PROMPTS] == expected
    assert pipeline("text-generation", model=gpt2_dir, dtype="bfloat16").model.dtype == torch.bfloat16


def test_loading_arguments_do_not_reach_the_call(gpt2_dir):
    pipe = pipeline("text-generation", model=gpt2_dir, device_map="cpu", trust_remote_code=False)
    assert pipe("Hello", max_new_tokens=2, do_sample=False)[0]["generated_text"].startswith("Hello")


def test_from_pretrained_refusals_surface(gpt2_dir, monkeypatch):
    """Whatever from_pretrained raises is raised by pipeline(), not swallowed or turned into a
    generate() argument error at the first call."""
    from haven import auto

    seen = {}

    def refuse(path, **kwargs):
        seen.update(kwargs)
        raise NotImplementedError("device_map='balanced' cannot be honoured")

    monkeypatch.setattr(auto.AutoModelForCausalLM, "from_pretrained", staticmethod(refuse))
    with pytest.raises(NotImplementedError, match="balanced"):
        pipeline("text-generation", model=gpt2_dir, device_map="balanced", revision="main", token="t")
    assert seen["device_map"] == "balanced" and seen["revision"] == "main" and seen["token"] == "t"


def test_conflicting_loading_arguments_are_refused(gpt2_dir):
    with pytest.raises(PipelineError, match="device"):
        pipeline("text-generation", model=gpt2_dir, device="cpu", device_map="auto")
    with pytest.raises(PipelineError, match="dtype"):
        pipeline(
            "text-generation", model=gpt2_dir, dtype=torch.float32, model_kwargs={"dtype": torch.float32}
        )
    with pytest.raises(PipelineError, match="torch_dtype"):
        pipeline("text-generation", model=gpt2_dir, dtype=torch.float32, torch_dtype=torch.float32)


def test_loading_arguments_with_a_loaded_model_are_refused(gpt2_dir):
    from haven import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    with pytest.raises(PipelineError, match="already loaded"):
        pipeline("text-generation", model=model, torch_dtype=torch.bfloat16)
    with pytest.raises(PipelineError, match="device_map"):
        pipeline("text-generation", model=model, device_map="auto")


@pytest.mark.parametrize("option", [dict(trust_remote_code=True), dict(offload_folder="offload"),
                                    dict(attn_implementation="flash_attention_2")])
def test_loading_options_from_pretrained_refuses_surface_through_pipeline(gpt2_dir, option):
    """Every loading option goes to from_pretrained, whose refusal reaches the caller as is."""
    with pytest.raises(NotImplementedError, match=next(iter(option))):
        pipeline("text-generation", model=gpt2_dir, **option)
