"""The KV cache's names, as in the reference since transformers 5.25: decoders take `cache=` and
return `out.cache`; `past_key_values`, the older name, is still accepted and still reads it.
A decoder call never ignores a keyword it does not know."""

from __future__ import annotations

import pytest
import torch
import transformers

from haven import AutoModelForCausalLM
from haven.layers import KVCache

DIRS = ["gpt2_dir", "llama_dir"]


@pytest.fixture(params=DIRS)
def pair(request):
    path = request.getfixturevalue(request.param)
    ref = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    return ref, AutoModelForCausalLM.from_pretrained(path)


def _ids(model, shape):
    return torch.randint(3, model.config.vocab_size - 1, shape, generator=torch.Generator().manual_seed(3))


@torch.inference_mode()
def test_forward_returns_cache_and_takes_it_back_like_the_reference(pair):
    ref, hv = pair
    ids = _ids(ref, (2, 6))
    got, expected = hv(ids[:, :5], use_cache=True), ref(ids[:, :5], use_cache=True)
    assert "cache" in got.keys() and "cache" in expected.keys()
    assert "past_key_values" not in got.keys()
    assert isinstance(got.cache, KVCache)
    assert got.past_key_values is got.cache  # the older name reads the same object
    step = hv(ids[:, 5:], cache=got.cache)
    ref_step = ref(ids[:, 5:], cache=expected.cache)
    torch.testing.assert_close(step.logits, ref_step.logits, atol=1e-4, rtol=0)


@torch.inference_mode()
def test_the_older_name_is_still_accepted(pair):
    _, hv = pair
    ids = _ids(hv, (1, 6))
    first = hv(ids[:, :5], use_cache=True).cache
    by_new = hv(ids[:, 5:], cache=first).logits
    first.crop(5)
    by_old = hv(ids[:, 5:], past_key_values=first).logits
    assert torch.equal(by_new, by_old)


def test_cache_given_twice_is_refused(pair):
    _, hv = pair
    ids = _ids(hv, (1, 4))
    with pytest.raises(TypeError, match="once"):
        hv(ids, cache=KVCache(), past_key_values=KVCache())


@pytest.mark.parametrize("head", ["model", "causal-lm"])
def test_unknown_keywords_are_refused_not_ignored(pair, head):
    _, hv = pair
    module = hv if head == "causal-lm" else getattr(hv, hv.base_model_prefix)
    with pytest.raises(TypeError, match="output_scores"):
        module(_ids(hv, (1, 4)), output_scores=True)


def test_generate_takes_and_returns_cache_like_the_reference(pair):
    ref, hv = pair
    ids = _ids(ref, (1, 5))
    kw = dict(max_new_tokens=4, do_sample=False, return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    got, expected = hv.generate(ids, **kw), ref.generate(ids, **kw)
    assert torch.equal(got.sequences, expected.sequences)
    assert got.cache is not None and got.past_key_values is got.cache
    # continue from the returned cache: the previous sequences plus new tokens as input_ids
    more = torch.cat([got.sequences, _ids(ref, (1, 2))], dim=1)
    cont = hv.generate(more, cache=got.cache, **kw)
    ref_cont = ref.generate(more, cache=expected.cache, **kw)
    assert torch.equal(cont.sequences, ref_cont.sequences)
