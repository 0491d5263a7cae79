"""token-classification / ner: Haven's pipeline against the reference library's."""

from __future__ import annotations

import warnings

import pytest

from fixtures.compare import assert_same_output as assert_same
from haven import pipeline
from haven.pipelines import PipelineError

ARCHS = ["bert", "distilbert", "roberta", "camembert"]
STRATEGIES = ["none", "simple", "first", "max", "average"]
TEXTS = [
    "Ada Lovelace lived in London with the naïve café owner from Montréal.",
    "Bonjour le monde, comment ça va ? Tokyo 東京 🤗 2026",
    "Transformers are neural networks",
]



@pytest.fixture(scope="module", params=ARCHS)
def pipes(request):
    import transformers

    transformers.logging.set_verbosity_error()
    path = request.getfixturevalue(f"{request.param}_token_classification_dir")
    return pipeline("ner", model=path), transformers.pipeline("token-classification", model=path)


def _run(pipe, inputs, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback-heuristic warning of BPE tokenizers, on both sides
        return pipe(inputs, **options)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_reference(pipes, strategy):
    ours, ref = pipes
    options = {"aggregation_strategy": strategy}
    assert_same(_run(ours, TEXTS, **options), _run(ref, TEXTS, **options))
    assert_same(_run(ours, TEXTS[0], **options), _run(ref, TEXTS[0], **options))


@pytest.mark.parametrize("strategy", ["none", "average"])
def test_ignore_labels(pipes, strategy):
    ours, ref = pipes
    for ignore in ([], ["O", "B-PER", "LOC"]):
        options = {"aggregation_strategy": strategy, "ignore_labels": ignore}
        assert_same(_run(ours, TEXTS, **options), _run(ref, TEXTS, **options))


def test_every_token_has_offsets_into_the_text(pipes):
    ours, _ = pipes
    result = _run(ours, TEXTS[0], ignore_labels=[])
    assert result and [e["index"] for e in result] == sorted(e["index"] for e in result)
    for entity in result:
        assert 0 <= entity["start"] <= entity["end"] <= len(TEXTS[0])


def test_batching_keeps_order(pipes):
    ours, ref = pipes
    inputs = TEXTS * 3
    expected = _run(ref, inputs, aggregation_strategy="simple")
    for batch_size in (2, 32):
        assert_same(_run(ours, inputs, aggregation_strategy="simple", batch_size=batch_size), expected)


@pytest.mark.parametrize("strategy", ["none", "first"])
def test_pre_split_words(pipes, strategy):
    ours, ref = pipes
    words = [t.split() for t in TEXTS]
    options = {"is_split_into_words": True, "aggregation_strategy": strategy, "ignore_labels": []}
    assert_same(_run(ours, words, **options), _run(ref, words, **options))
    assert_same(_run(ours, words[0], **options), _run(ref, words[0], **options))
    options["delimiter"] = "  "
    assert_same(_run(ours, words[1], **options), _run(ref, words[1], **options))


def test_strategy_given_at_construction(bert_token_classification_dir):
    import transformers

    ref = transformers.pipeline("ner", model=bert_token_classification_dir, aggregation_strategy="first")
    ours = pipeline("ner", model=bert_token_classification_dir, aggregation_strategy="first")
    assert_same(ours(TEXTS), ref(TEXTS))
    assert "entity_group" in ours(TEXTS[0], ignore_labels=[])[0]


def test_bad_options(pipes):
    ours, _ = pipes
    with pytest.raises(PipelineError, match="aggregation_strategy"):
        ours("text", aggregation_strategy="longest")
    with pytest.raises(PipelineError, match="string"):
        ours([1, 2])
