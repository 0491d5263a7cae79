"""`model.compile_decoding()`: generate()'s one-token steps through torch.compile (inductor, C++
wrapper). The compiled step is the same forward, so it must give eager's logits up to float32
rounding and eager's tokens wherever the choice is not a near-tie; it must really run (the
step is compiled, not silently left eager), and `compile_decoding(False)` goes back.

Checked on the tiny GPT-2 and Llama, float32 and int8 (Haven's own kernel as an op inside the
compiled graph), with a padded batch (the mask path) for Llama. Tolerance: every logit within
1e-4 of that step's eager logit range; a token may differ only where eager's top-1/top-2 margin
is below 1e-3 of the range (a near-tie), and the comparison stops there (the sequences part).
"""

from __future__ import annotations

import pytest
import torch

from fixtures.decoders import build_reference
from haven import AutoModelForCausalLM

STEPS = 24


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def decoder(request, tmp_path_factory) -> str:
    positions = {"n_positions": 128} if request.param == "gpt2" else {"max_position_embeddings": 128}
    return build_reference(tmp_path_factory.mktemp(request.param), request.param, seed=3, **positions)


def _generate(model, ids, mask):
    out = model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=STEPS,
        min_new_tokens=STEPS,
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
    )
    return out.sequences[:, ids.shape[1] :], torch.stack(out.logits, 1)  # (B, STEPS), (B, STEPS, V)


def _same_up_to_rounding(eager, compiled) -> int:
    """Compare (tokens, logits) of eager and compiled decoding row by row; returns the steps compared."""
    (tokens, logits), (ctokens, clogits) = eager, compiled
    compared = 0
    for row in range(tokens.shape[0]):
        for i in range(STEPS):
            span = (logits[row, i].max() - logits[row, i].min()).item()
            err = (clogits[row, i] - logits[row, i]).abs().max().item()
            assert err <= 1e-4 * span, f"row {row} step {i}: logits off by {err:.3g} (range {span:.3g})"
            compared += 1
            if ctokens[row, i] != tokens[row, i]:
                top2 = logits[row, i].topk(2).values
                margin = (top2[0] - top2[1]).item()
                assert margin < 1e-3 * span, f"row {row} step {i}: a different token at a margin of {margin:.3g}"
                break  # the sequences part here: later steps see other prefixes
    return compared


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "int8"])
def test_compiled_steps_equal_eager_ones(decoder, quantized):
    model = AutoModelForCausalLM.from_pretrained(decoder, load_in_8bit=quantized).eval()
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab - 1, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # the second row left-padded: the masked path
    cases = [(ids[:1], None), (ids, mask)]
    eager = [_generate(model, i, m) for i, m in cases]

    torch._dynamo.reset()
    model.compile_decoding()
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = [_generate(model, i, m) for i, m in cases]
    assert counters["stats"]["unique_graphs"] >= 1, "no step was compiled"
    assert not counters["graph_break"], f"the decode step broke the graph: {dict(counters['graph_break'])}"
    for e, c in zip(eager, compiled):
        assert _same_up_to_rounding(e, c) >= STEPS

    model.compile_decoding(False)
    counters.clear()
    again = [_generate(model, i, m) for i, m in cases]
    assert counters["stats"]["calls_captured"] == 0, "compile_decoding(False) still ran the compiled step"
    for e, a in zip(eager, again):
        assert torch.equal(e[0], a[0]) and torch.equal(e[1], a[1])


def test_a_copy_decodes_with_its_own_weights(decoder):
    """The model holds the choice, not a compiled function bound to itself: a deep copy of a
    compiled-decoding model decodes with the copy's weights, and the model pickles."""
    import copy
    import pickle

    model = AutoModelForCausalLM.from_pretrained(decoder).eval().compile_decoding()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(1.5)
    ids = torch.tensor([[5, 6, 7, 8]])
    torch._dynamo.reset()
    mine, _ = _generate(model, ids, None)
    theirs, _ = _generate(twin, ids, None)
    eager_twin, _ = _generate(copy.deepcopy(twin).compile_decoding(False), ids, None)
    assert twin.decoding_compiled and pickle.loads(pickle.dumps(model)).decoding_compiled
    assert torch.equal(theirs, eager_twin) and not torch.equal(theirs, mine)
