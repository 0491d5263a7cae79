"""fill-mask: Haven's pipeline against the reference library's on the same checkpoints."""

from __future__ import annotations

import logging

import pytest

from fixtures.compare import assert_same_output as assert_same
from haven import pipeline
from haven.pipelines import PipelineError

ARCHS = ["bert", "distilbert", "roberta", "camembert"]



@pytest.fixture(scope="module", params=ARCHS)
def pipes(request):
    import transformers

    transformers.logging.set_verbosity_error()
    path = request.getfixturevalue(f"{request.param}_masked_lm_dir")
    ref = transformers.pipeline("fill-mask", model=path)
    return pipeline("fill-mask", model=path), ref


def texts(mask: str) -> dict[str, object]:
    return {
        "one mask": f"The quick brown {mask} jumps over the lazy dog.",
        "two masks": f"Le {mask} brun rapide saute par-dessus le {mask}.",
        "batch": [
            f"Hello {mask}!",
            f"We tokenize text into {mask}, subwords and characters before training.",
            f"{mask}",
        ],
        "list of one": [f"Bonjour le {mask}, comment ça va ?"],
        "batch with several masks": [f"a {mask} b {mask}", f"hello {mask} world"],
    }


@pytest.mark.parametrize(
    "case", ["one mask", "two masks", "batch", "list of one", "batch with several masks"]
)
@pytest.mark.parametrize("options", [{}, {"top_k": 2}, {"top_k": 7}])
def test_matches_reference(pipes, case, options):
    ours, ref = pipes
    inputs = texts(ref.tokenizer.mask_token)[case]
    assert_same(ours(inputs, **options), ref(inputs, **options))


def test_batched_equals_reference_and_keeps_order(pipes):
    ours, ref = pipes
    inputs = texts(ref.tokenizer.mask_token)["batch"] * 3
    expected = ref(inputs, top_k=3)
    assert_same(ours(inputs, top_k=3, batch_size=4), expected)
    assert_same(ours(inputs, top_k=3, batch_size=1), expected)


def test_targets(pipes):
    ours, ref = pipes
    vocab = ref.tokenizer.get_vocab()
    known = sorted(vocab, key=vocab.get)[-3:]  # three real vocabulary entries
    text = texts(ref.tokenizer.mask_token)["one mask"]
    assert_same(ours(text, targets=known), ref(text, targets=known))
    assert_same(ours(text, targets=known, top_k=2), ref(text, targets=known, top_k=2))
    assert_same(ours(text, targets=known[0]), ref(text, targets=known[0]))


def test_target_not_in_vocab_uses_its_first_token(pipes, caplog):
    ours, ref = pipes
    text = texts(ref.tokenizer.mask_token)["one mask"]
    targets = ["zzqqxx", "qqzzyy"]
    with caplog.at_level(logging.WARNING, logger="haven"):
        result = ours(text, targets=targets)
    assert_same(result, ref(text, targets=targets))
    assert "not in the model vocabulary" in caplog.text


def test_construction_defaults_apply_and_calls_override(pipes):
    ours, ref = pipes
    path = ours.model.name_or_path
    text = texts(ref.tokenizer.mask_token)["one mask"]
    pipe = pipeline("fill-mask", model=path, top_k=2)
    assert len(pipe(text)) == 2
    assert len(pipe(text, top_k=4)) == 4
    assert len(pipe(text)) == 2


def test_input_without_mask_is_an_error(pipes):
    ours, _ = pipes
    with pytest.raises(PipelineError, match="mask_token"):
        ours("no mask here")
    with pytest.raises(PipelineError, match="top_k"):
        ours(texts(ours.tokenizer.mask_token)["one mask"], top_k=0)
