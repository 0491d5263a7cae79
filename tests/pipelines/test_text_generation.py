"""text-generation pipeline: the same outputs as the reference library's pipeline (greedy)."""

from __future__ import annotations

import pytest
import torch
import transformers

from haven import pipeline
from haven.generation import set_seed
from haven.pipelines import PipelineError

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    yield
    torch.set_num_threads(before)


_pipes: dict[str, tuple] = {}


@pytest.fixture(params=["gpt2_dir", "llama_dir"])
def pipes(request):
    name = request.param
    if name not in _pipes:
        path = request.getfixturevalue(name)
        ref = transformers.pipeline("text-generation", model=path)
        if ref.tokenizer.pad_token_id is None:  # the reference cannot batch without one (its advice)
            ref.tokenizer.pad_token_id = ref.model.config.eos_token_id
        _pipes[name] = (ref, pipeline("text-generation", model=path))
    return _pipes[name]


PROMPTS = ["The quick brown fox", "Bonjour", "Hello world! How are you today? Fine"]


def test_single_prompt(pipes):
    ref, hv = pipes
    kw = dict(max_new_tokens=12, do_sample=False)
    assert hv(PROMPTS[0], **kw) == ref(PROMPTS[0], **kw)


def test_batch_of_prompts_left_padded(pipes):
    ref, hv = pipes
    kw = dict(max_new_tokens=10, do_sample=False, batch_size=3)
    expected = ref(PROMPTS, **kw)
    got = hv(PROMPTS, **kw)
    assert got == expected
    assert len(got) == 3 and all(isinstance(r, list) and len(r) == 1 for r in got)
    # the batch gives each prompt what it gets alone
    assert got == [hv(p, max_new_tokens=10, do_sample=False) for p in PROMPTS]


def test_return_full_text_false_and_beams(pipes):
    ref, hv = pipes
    kw = dict(max_new_tokens=8, do_sample=False, return_full_text=False, num_beams=3, num_return_sequences=2)
    got = hv(PROMPTS[2], **kw)
    assert got == ref(PROMPTS[2], **kw)
    assert len(got) == 2 and not got[0]["generated_text"].startswith(PROMPTS[2])


def test_return_tensors(pipes):
    ref, hv = pipes
    kw = dict(max_new_tokens=5, do_sample=False, return_tensors=True)
    assert hv(PROMPTS[1], **kw) == ref(PROMPTS[1], **kw)


def test_sampling_num_return_sequences_shape_and_seed(pipes):
    _, hv = pipes
    set_seed(3)
    a = hv(PROMPTS[0], max_new_tokens=6, do_sample=True, num_return_sequences=3)
    set_seed(3)
    b = hv(PROMPTS[0], max_new_tokens=6, do_sample=True, num_return_sequences=3)
    assert a == b and len(a) == 3
    assert all(r["generated_text"].startswith(PROMPTS[0]) for r in a)


def test_defaults_sample_256_tokens_at_temperature_0_7(pipes):
    """The reference pipeline's defaults: sampling (temperature 0.7) when nothing says otherwise."""
    _, hv = pipes
    kwargs = hv.generate_arguments({})
    gen_cfg = hv.model.generation_config.to_diff_dict()
    if "do_sample" not in gen_cfg:
        assert kwargs["do_sample"] is True and kwargs["temperature"] == 0.7
    if "max_new_tokens" not in gen_cfg and "max_length" not in gen_cfg:
        assert kwargs["max_new_tokens"] == 256
    assert "temperature" not in hv.generate_arguments({"do_sample": False})


def test_chat_messages(llama_dir):
    ref = transformers.pipeline("text-generation", model=llama_dir)
    hv = pipeline("text-generation", model=llama_dir)
    chat = [{"role": "user", "content": "Bonjour, comment ça va ?"}]
    kw = dict(max_new_tokens=8, do_sample=False)
    got = hv(chat, **kw)
    assert got == ref(chat, **kw)
    assert got[0]["generated_text"][:1] == chat and got[0]["generated_text"][-1]["role"] == "assistant"
    two = hv([chat, chat + [{"role": "assistant", "content": "Très"}]], **kw)
    assert two == ref([chat, chat + [{"role": "assistant", "content": "Très"}]], **kw)


def test_stop_sequence(gpt2_dir):
    hv = pipeline("text-generation", model=gpt2_dir)
    full = hv(PROMPTS[0], max_new_tokens=20, do_sample=False, return_full_text=False)[0]["generated_text"]
    stop = full[4:6]
    assert stop.strip() and "\ufffd" not in stop
    cut = hv(PROMPTS[0], max_new_tokens=20, do_sample=False, return_full_text=False, stop_sequence=stop)
    text = cut[0]["generated_text"]
    assert stop in text and len(text) < len(full)


def test_bad_input(gpt2_dir):
    hv = pipeline("text-generation", model=gpt2_dir)
    with pytest.raises(PipelineError, match="takes a string"):
        hv(42)
    with pytest.raises(PipelineError, match="cannot be used together"):
        hv("x", return_text=True, return_full_text=False)
