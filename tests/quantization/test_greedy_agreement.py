"""int8 greedy decoding agrees with fp32 (issue 16, "Must show"): on the tiny decoders and on a
GPT-2-124M-shaped model, Haven's `load_in_8bit` picks fp32's greedy token at >= 95% of 128 steps
(the tiny ones: of 128 steps of each of several random models, pooled; see below).

How it is counted: teacher forcing. The reference library (transformers, fp32) decodes 128
greedy tokens; Haven's int8 model is fed that same sequence and, at every step, its argmax given
the same prefix is compared with the fp32 token. (Run free, one near-tie sends the two sequences
apart for good, and the count then measures where the first near-tie falls, not int8's error.)
The int8 model reads the sequence twice:
- one token at a time through its KV cache, as generation does: one row per matmul, so the
  compiled few-row kernels run (tests/quantization/conftest.py turns them off for the other
  tests; here they are turned on, and where they cannot be built the portable path runs);
- in one forward pass: many rows, the portable path (dequantize a tile, then a float GEMM).

Logits tolerance: at every step, every logit of the int8 model is within a stated fraction of
the range (max - min) of that step's fp32 logits, over the whole vocabulary: 2% on the 124M
model, 5% on the tiny ones (32 wide: one int8 group spans a whole row). Measured, worst step,
weight-only int8 (one pass) / with the kernels' int8-rounded activations (token by token):
124M 0.7% / 1.0%, tiny GPT-2 0.8% / 1.2%, tiny Llama 2.5% / 3.1%.

The tiny Llama is the close one: its fp32 top-1/top-2 margin is under 1% of the logit range at
about one step in five, and its misses all fall there (fp32 margins of 0.002-0.025 on ranges
near 3), so a failure prints the fp32 margin of each missed step. Which near-ties flip is chance:
in an ad hoc run over 12 random tiny Llamas (seeds 1-12, one pass, another random prompt than
this test's) the misses per 128 steps ranged from 0 to 18, both with float32 scales (62 in all)
and with the float16 scales Haven stores now (50 in all); on the one seed this test used to
take, with its prompt, float16 scales missed 7 where float32 missed 6. So each
tiny decoder is checked as those 12 random models, their steps pooled (the tolerance holds
for every model), which measures int8 rather than one model's ties.

The 124M model is GPT-2 small's shape (12 layers, 768 wide, 12 heads, 50257 tokens, tied head)
with GPT-2's own initializer_range 0.02: along its greedy sequence the fp32 logits have a
standard deviation of about 0.55 and a median top-1/top-2 margin of about 0.6, well above the
int8 error, so agreement measures quantization and not random ties. A random model's greedy
output soon repeats a short cycle (8 distinct tokens in 128 here), so the 124M model is also
checked on 128 contexts of random tokens, every one different; there the logits tolerance is
asserted but not the agreement: over 50257 near-Gaussian logits the top two of a random context
are often nearly tied (smallest margin measured 0.0006, far below any int8 error), and int8
picked fp32's token at about 97% of those steps, a count set by the ties rather than by int8.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from fixtures.decoders import build_reference
from haven import AutoModelForCausalLM
from haven.linear.quantized import QuantizedLinear

STEPS = 128
PROMPT = 8
AGREEMENT = 0.95
TOLERANCE = {"gpt2-tiny": 0.05, "llama-tiny": 0.05, "gpt2-124m": 0.02}  # of each step's fp32 logits range

TINY_SEEDS = range(1, 13)  # the 12 measured above, all of them

GPT2_124M = dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257, initializer_range=0.02)


@pytest.fixture(scope="module", params=list(TOLERANCE))
def decoders(request, tmp_path_factory) -> tuple[list[str], float]:
    """(checkpoints, logits tolerance)"""
    if request.param == "gpt2-124m":
        folder = tmp_path_factory.mktemp(request.param)
        return [build_reference(folder, "gpt2", seed=0, special=(50256, 50256), **GPT2_124M)], TOLERANCE[request.param]
    kind = request.param.removesuffix("-tiny")
    positions = {"n_positions": 192} if kind == "gpt2" else {"max_position_embeddings": 192}
    folders = [tmp_path_factory.mktemp(f"{request.param}-{seed}") for seed in TINY_SEEDS]
    return [build_reference(f, kind, seed=seed, **positions) for f, seed in zip(folders, TINY_SEEDS)], TOLERANCE[
        request.param
    ]


def _teacher_forced_stepwise(model, seq: torch.Tensor) -> torch.Tensor:
    """The logits `model` gives for each token after the prompt, fed `seq` one token at a time
    through its KV cache after the prompt in one call: (STEPS, vocab)."""
    with torch.inference_mode():
        out = model(seq[:, :PROMPT], use_cache=True)
        logits = [out.logits[0, -1]]
        for i in range(PROMPT, seq.shape[1] - 1):
            out = model(seq[:, i : i + 1], past_key_values=out.past_key_values, use_cache=True)
            logits.append(out.logits[0, -1])
    return torch.stack(logits)


def _check(want: torch.Tensor, have: torch.Tensor, expected: torch.Tensor, eos: int, tolerance: float, what: str):
    """`have` (int8) against `want` (fp32) logits: the tolerance; returns the fp32 top-1/top-2
    margin at each step where int8's argmax is not `expected`."""
    assert want.shape == have.shape == (STEPS, want.shape[-1])
    worst = _relative_error(want, have)
    assert worst <= tolerance, f"{what}: int8 logits off by {worst:.2%} of the fp32 range"
    masked = have.clone().index_fill_(-1, torch.tensor([eos]), -torch.inf)  # as min_new_tokens does
    missed = (masked.argmax(-1) != expected).nonzero().flatten().tolist()
    top2 = want.clone().index_fill_(-1, torch.tensor([eos]), -torch.inf).topk(2).values
    return {i: round((top2[i, 0] - top2[i, 1]).item(), 4) for i in missed}


def _agree(missed: dict[str, dict], models: int, what: str) -> None:
    """At least AGREEMENT of the models' STEPS steps each, pooled, picked fp32's token."""
    misses = sum(len(m) for m in missed.values())
    assert 1 - misses / (models * STEPS) >= AGREEMENT, (
        f"{what}: int8 picks fp32's token at {1 - misses / (models * STEPS):.1%} of {models} x {STEPS} steps; "
        f"fp32's top-1/top-2 margin at the missed steps, per model: {missed}"
    )


def _relative_error(want: torch.Tensor, have: torch.Tensor) -> float:
    """The largest |int8 - fp32| logit of each step over that step's fp32 range, worst step."""
    return ((have - want).abs().amax(-1) / (want.amax(-1) - want.amin(-1))).max().item()


def test_int8_greedy_tokens_match_fp32_for_95_percent_of_128_steps(decoders, monkeypatch):
    checkpoints, tolerance = decoders
    one_pass, stepwise = {}, {}
    for decoder in checkpoints:
        one_pass[decoder], stepwise[decoder] = _compare(decoder, tolerance, monkeypatch)
    _agree(one_pass, len(checkpoints), "one forward pass")
    _agree(stepwise, len(checkpoints), "token by token")


def _compare(decoder: str, tolerance: float, monkeypatch) -> tuple[dict, dict]:
    """The missed steps (and their fp32 margins) of one model read in one pass and token by token."""
    ref = transformers.AutoModelForCausalLM.from_pretrained(decoder).eval()
    vocab = ref.config.vocab_size
    eos = ref.generation_config.eos_token_id
    prompt = torch.randint(0, vocab - 1, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        seq = ref.generate(prompt, max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False, pad_token_id=eos)
        want = ref(seq).logits[0, PROMPT - 1 : -1]
    expected = seq[0, PROMPT:]
    # the fp32 logits give back the fp32 tokens: the teacher-forced comparison is the greedy one
    assert torch.equal(want.clone().index_fill_(-1, torch.tensor([eos]), -torch.inf).argmax(-1), expected)

    model = AutoModelForCausalLM.from_pretrained(decoder, load_in_8bit=True)
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())
    with torch.inference_mode():
        one_pass = _check(want, model(seq).logits[0, PROMPT - 1 : -1], expected, eos, tolerance, "one forward pass")
    with monkeypatch.context() as patch:
        patch.setenv("HAVEN_QUANT_KERNELS", "1")
        stepwise = _check(want, _teacher_forced_stepwise(model, seq), expected, eos, tolerance, "token by token")

    if vocab > 1000:  # the 124M model: greedy output cycles, so also every context a new one
        tokens = torch.randint(0, vocab - 1, (1, PROMPT + STEPS), generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            want = ref(tokens).logits[0, PROMPT - 1 : -1]
            have = model(tokens).logits[0, PROMPT - 1 : -1]
        error = _relative_error(want, have)
        assert error <= tolerance, f"random tokens: int8 logits off by {error:.2%} of the fp32 range"
    return one_pass, stepwise
