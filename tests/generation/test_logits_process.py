"""Haven's logits processors give the reference library's processed scores on the same logits."""

from __future__ import annotations

import pytest
import torch
from transformers.generation import logits_process as ref

from haven.generation import logits_process as hv
from haven.generation.config import GenerationConfig
from haven.generation.logits_process import build_processors

V = 50


@pytest.fixture
def logits() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, V, generator=g) * 3
    x[1, 7] = x[1, 8]  # a tie, so threshold comparisons are exercised
    return x


@pytest.fixture
def ids() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (4, 12), generator=g)
    x[0, -3:] = torch.tensor([5, 6, 5])  # repeated n-grams for no-repeat
    x[0, 2:4] = torch.tensor([6, 5])
    return x


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "different tokens filtered"
    finite = torch.isfinite(a)
    torch.testing.assert_close(a[finite], b[finite], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k,keep", [(1, 1), (5, 1), (5, 7), (V + 10, 1)])
def test_top_k(ids, logits, k, keep):
    same(hv.TopKLogitsWarper(k, keep)(ids, logits), ref.TopKLogitsWarper(k, min_tokens_to_keep=keep)(ids, logits))


@pytest.mark.parametrize("p,keep", [(0.0, 1), (0.3, 1), (0.9, 1), (0.9, 3), (1.0, 1)])
def test_top_p(ids, logits, p, keep):
    same(hv.TopPLogitsWarper(p, keep)(ids, logits), ref.TopPLogitsWarper(p, min_tokens_to_keep=keep)(ids, logits))


@pytest.mark.parametrize("p,keep", [(0.0, 1), (0.05, 1), (0.5, 1), (0.5, 4), (1.0, 1)])
def test_min_p(ids, logits, p, keep):
    same(hv.MinPLogitsWarper(p, keep)(ids, logits), ref.MinPLogitsWarper(p, min_tokens_to_keep=keep)(ids, logits))


@pytest.mark.parametrize("mass,keep", [(0.2, 1), (0.5, 1), (0.95, 1), (0.5, 5)])
def test_typical(ids, logits, mass, keep):
    same(
        hv.TypicalLogitsWarper(mass, keep)(ids, logits),
        ref.TypicalLogitsWarper(mass, min_tokens_to_keep=keep)(ids, logits),
    )


@pytest.mark.parametrize("t", [0.1, 0.7, 2.5])
def test_temperature(ids, logits, t):
    same(hv.TemperatureLogitsWarper(t)(ids, logits), ref.TemperatureLogitsWarper(t)(ids, logits))


@pytest.mark.parametrize("penalty", [0.5, 1.2, 3.0])
def test_repetition_penalty(ids, logits, penalty):
    same(
        hv.RepetitionPenaltyLogitsProcessor(penalty)(ids, logits),
        ref.RepetitionPenaltyLogitsProcessor(penalty)(ids, logits),
    )


def test_repetition_penalty_skips_left_padding(ids, logits):
    skip = torch.tensor([0, 3, 5, 11])
    same(
        hv.RepetitionPenaltyLogitsProcessor(1.5, skip=skip)(ids, logits),
        ref.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=skip)(ids, logits),
    )


@pytest.mark.parametrize("n", [1, 2, 3, 13])
def test_no_repeat_ngram(ids, logits, n):
    out = hv.NoRepeatNGramLogitsProcessor(n)(ids, logits)
    same(out, ref.NoRepeatNGramLogitsProcessor(n)(ids, logits))
    if n == 2:  # row 0 ends in 5 and "5 6" occurred: 6 is banned
        assert out[0, 6] == float("-inf")


def test_bad_words(ids, logits):
    bad = [[3], [9, 5], [ids[1, -1].item(), 4], [ids[2, -2].item(), ids[2, -1].item(), 11], [2]]
    eos = 2  # a single-token bad word equal to EOS is not banned
    out = hv.NoBadWordsLogitsProcessor(bad, eos)(ids, logits)
    same(out, ref.NoBadWordsLogitsProcessor(bad, eos)(ids, logits))
    assert out[1, 4] == float("-inf") and out[2, 11] == float("-inf") and torch.isfinite(out[:, 2]).all()


def test_min_length(ids, logits):
    for min_len in (5, 12, 13, 20):
        same(hv.MinLengthLogitsProcessor(min_len, [2, 7])(ids, logits), ref.MinLengthLogitsProcessor(min_len, [2, 7])(ids, logits))
        same(
            hv.MinLengthLogitsProcessor(min_len, 2, prompt_length=4)(ids, logits),
            ref.MinNewTokensLengthLogitsProcessor(4, min_len, 2)(ids, logits),
        )


def test_chain_for_sampling_matches_reference_order(ids, logits):
    """temperature -> top-k -> top-p -> min-p -> typical, after the penalties."""
    gc = GenerationConfig(
        do_sample=True, temperature=0.7, top_k=20, top_p=0.9, min_p=0.02, typical_p=0.95,
        repetition_penalty=1.2, no_repeat_ngram_size=3, num_beams=1, eos_token_id=2,
    )
    procs = build_processors(gc, prompt_length=4)
    chain = ref.LogitsProcessorList([
        ref.RepetitionPenaltyLogitsProcessor(1.2),
        ref.NoRepeatNGramLogitsProcessor(3),
        ref.TemperatureLogitsWarper(0.7),
        ref.TopKLogitsWarper(20),
        ref.TopPLogitsWarper(0.9),
        ref.MinPLogitsWarper(0.02),
        ref.TypicalLogitsWarper(0.95),
    ])
    same(procs(ids, logits), chain(ids, logits))


def test_nothing_configured_means_no_processors():
    gc = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0,
                          min_length=0, eos_token_id=2)
    assert len(build_processors(gc, prompt_length=3)) == 0
