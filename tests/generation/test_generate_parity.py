"""generate() against the reference library on the same tiny checkpoints: greedy, beam search,
sampling, processors, EOS handling, scores, cache reuse."""

from __future__ import annotations

import pytest
import torch
import transformers

from haven import AutoModelForCausalLM
from haven.generation import set_seed

transformers.logging.set_verbosity_error()

DIRS = ["gpt2_dir", "llama_dir", "mistral_dir", "llama_dynamic_rope_dir"]
_cache: dict[str, tuple] = {}


@pytest.fixture(params=DIRS)
def pair(request):
    """(reference model, haven model, prompts (3, 9), left-padding mask, pad id) for a fixture dir."""
    name = request.param
    if name not in _cache:
        path = request.getfixturevalue(name)
        ref = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
        hv = AutoModelForCausalLM.from_pretrained(path)
        vocab = ref.config.vocab_size
        g = torch.Generator().manual_seed(7)
        ids = torch.randint(3, vocab - 1, (3, 9), generator=g)
        mask = torch.ones_like(ids)
        mask[1, :3] = 0
        mask[2, :6] = 0  # 3 real tokens: Mistral's window (4) still covers the whole prompt here
        pad = ref.generation_config.pad_token_id
        ids[mask == 0] = pad
        _cache[name] = (ref, hv, ids, mask, pad)
    return _cache[name]


_eos: dict[int, int] = {}


def frequent_token(ref, ids, mask) -> int:
    """A token the reference's greedy continuation emits in the middle: used as EOS to force stops."""
    if id(ref) not in _eos:
        out = ref.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=None, pad_token_id=0)
        _eos[id(ref)] = int(out[0, ids.shape[1] + 4])
    return _eos[id(ref)]


def test_greedy_single_prompt(pair):
    ref, hv, ids, _, _ = pair
    for n in (1, 17):
        expected = ref.generate(ids[:1], max_new_tokens=n)
        assert torch.equal(hv.generate(ids[:1], max_new_tokens=n), expected)


def test_greedy_left_padded_batch_equals_reference_and_single_prompts(pair):
    ref, hv, ids, mask, pad = pair
    out = hv.generate(ids, attention_mask=mask, max_new_tokens=15)
    assert torch.equal(out, ref.generate(ids, attention_mask=mask, max_new_tokens=15))
    rotary = getattr(getattr(hv, "model", None), "rotary", None)
    if rotary is not None and rotary.dynamic:
        return  # dynamic RoPE depends on the batch's longest position, by design (the reference's too)
    for row in range(3):  # each row equals its unpadded prompt alone
        real = ids[row][mask[row].bool()][None]
        alone = hv.generate(real, max_new_tokens=15)[0, real.shape[1] :]  # may stop early at EOS
        assert torch.equal(out[row, 9 : 9 + len(alone)], alone)
        assert (out[row, 9 + len(alone) :] == pad).all()  # then padded


def test_greedy_eos_stops_rows_and_pads(pair):
    ref, hv, ids, mask, _ = pair
    eos = frequent_token(ref, ids, mask)
    for eos_arg in (eos, [eos, 5]):
        kw = dict(attention_mask=mask, max_new_tokens=12, eos_token_id=eos_arg, pad_token_id=1)
        expected = ref.generate(ids, **kw)
        got = hv.generate(ids, **kw)
        assert torch.equal(got, expected)
    assert (got[0, ids.shape[1] :] == eos).any()


def test_min_new_tokens_and_min_length_delay_eos(pair):
    ref, hv, ids, mask, _ = pair
    eos = frequent_token(ref, ids, mask)
    for kw in (dict(min_new_tokens=8), dict(min_length=ids.shape[1] + 6)):
        kw.update(attention_mask=mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=1)
        assert torch.equal(hv.generate(ids, **kw), ref.generate(ids, **kw))


@pytest.mark.parametrize(
    "kw",
    [
        dict(repetition_penalty=1.5),
        dict(no_repeat_ngram_size=2),
        dict(bad_words_ids=[[5], [6, 7]]),
    ],
    ids=["repetition", "no_repeat", "bad_words"],
)
def test_greedy_with_processors(pair, kw):
    ref, hv, ids, mask, _ = pair
    kw = dict(kw, attention_mask=mask, max_new_tokens=12)
    assert torch.equal(hv.generate(ids, **kw), ref.generate(ids, **kw))


BEAM_VARIANTS = {
    "plain": dict(num_beams=3),
    "return3": dict(num_beams=4, num_return_sequences=3, length_penalty=0.5),
    "early": dict(num_beams=3, early_stopping=True, length_penalty=2.0),
    "never": dict(num_beams=3, early_stopping="never", num_return_sequences=2),
    "processors": dict(num_beams=2, no_repeat_ngram_size=2, repetition_penalty=1.3),
    "sample": dict(num_beams=3, do_sample=True, top_k=10, num_return_sequences=2),
}
# every variant on GPT-2 and Llama; the plain one on Mistral (sliding window) and dynamic RoPE
BEAM_CASES = [(d, v) for d in ("gpt2_dir", "llama_dir") for v in BEAM_VARIANTS] + [
    ("mistral_dir", "plain"), ("mistral_dir", "return3"), ("llama_dynamic_rope_dir", "plain")
]


@pytest.mark.parametrize("pair,variant", BEAM_CASES, indirect=["pair"])
def test_beam_search(pair, variant):
    kw = BEAM_VARIANTS[variant]
    ref, hv, ids, mask, _ = pair
    eos = frequent_token(ref, ids, mask)
    kw = dict(
        kw, attention_mask=mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=1,
        return_dict_in_generate=True, output_scores=True,
    )
    set_seed(0)
    expected = ref.generate(ids, **kw)
    set_seed(0)
    got = hv.generate(ids, **kw)
    assert torch.equal(got.sequences, expected.sequences)
    torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, atol=1e-4, rtol=0)
    assert torch.equal(got.beam_indices, expected.beam_indices.to(got.beam_indices.dtype))
    assert len(got.scores) == len(expected.scores)
    finite = torch.isfinite(expected.scores[0])
    torch.testing.assert_close(got.scores[0][finite], expected.scores[0][finite], atol=1e-4, rtol=0)
    set_seed(0)
    plain = hv.generate(ids, **{k: v for k, v in kw.items() if k not in ("return_dict_in_generate", "output_scores")})
    assert torch.equal(plain, expected.sequences)


def test_scores_and_logits_outputs(pair):
    ref, hv, ids, mask, _ = pair
    kw = dict(attention_mask=mask, max_new_tokens=5, return_dict_in_generate=True, output_scores=True,
              output_logits=True, repetition_penalty=1.4)
    expected = ref.generate(ids, **kw)
    got = hv.generate(ids, **kw)
    assert torch.equal(got.sequences, expected.sequences)
    assert len(got.scores) == len(got.logits) == 5
    for a, b in zip(got.logits, expected.logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    for a, b in zip(got.scores, expected.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert got.past_key_values is not None


@pytest.mark.parametrize(
    "warpers",
    [
        dict(temperature=0.8, top_k=20, top_p=0.9),
        dict(top_k=0, min_p=0.05),
        dict(top_k=0, typical_p=0.8, repetition_penalty=1.2),
    ],
    ids=["topk_topp", "min_p", "typical"],
)
def test_sampling_with_same_seed_matches_reference(pair, warpers):
    """Same processed distribution + same torch RNG state -> the same draws as the reference."""
    ref, hv, ids, mask, _ = pair
    kw = dict(attention_mask=mask, max_new_tokens=8, do_sample=True, **warpers)
    set_seed(11)
    expected = ref.generate(ids, **kw)
    set_seed(11)
    assert torch.equal(hv.generate(ids, **kw), expected)


def test_low_temperature_sampling_equals_greedy(pair):
    _, hv, ids, mask, _ = pair
    greedy = hv.generate(ids, attention_mask=mask, max_new_tokens=10)
    set_seed(0)
    sampled = hv.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=True, temperature=1e-4, top_k=0)
    assert torch.equal(sampled, greedy)


def test_set_seed_reproducible_and_num_return_sequences(pair):
    _, hv, ids, mask, _ = pair
    kw = dict(attention_mask=mask, max_new_tokens=10, do_sample=True, top_k=0, num_return_sequences=3)
    set_seed(5)
    a = hv.generate(ids, **kw)
    set_seed(5)
    b = hv.generate(ids, **kw)
    set_seed(6)
    c = hv.generate(ids, **kw)
    assert a.shape == (9, ids.shape[1] + 10)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(a[:3, : ids.shape[1]], ids[:1].expand(3, -1))  # rows grouped per prompt


def test_past_key_values_across_calls(pair):
    """Multi-turn: feed the returned cache with the full ids plus new ones == recompute from scratch."""
    _, hv, ids, _, _ = pair
    first = hv.generate(ids[:1], max_new_tokens=6, return_dict_in_generate=True)
    follow = torch.tensor([[5, 6, 7]])
    turn2_ids = torch.cat([first.sequences, follow], dim=1)
    cached = hv.generate(turn2_ids, past_key_values=first.past_key_values, max_new_tokens=6)
    fresh = hv.generate(turn2_ids, max_new_tokens=6)
    assert torch.equal(cached, fresh)


def test_use_cache_false_matches(pair):
    _, hv, ids, mask, _ = pair
    a = hv.generate(ids, attention_mask=mask, max_new_tokens=6)
    b = hv.generate(ids, attention_mask=mask, max_new_tokens=6, use_cache=False)
    assert torch.equal(a, b)


def test_generation_config_object_and_model_defaults(pair):
    """`generation_config=` is used; the model's generation_config.json fills what it leaves unset."""
    ref, hv, ids, mask, _ = pair
    from haven import GenerationConfig

    gc = GenerationConfig(max_new_tokens=7, num_beams=2)
    expected = ref.generate(ids, attention_mask=mask, generation_config=transformers.GenerationConfig(max_new_tokens=7, num_beams=2))
    assert torch.equal(hv.generate(ids, attention_mask=mask, generation_config=gc), expected)
    assert hv.generation_config.eos_token_id == ref.generation_config.eos_token_id
