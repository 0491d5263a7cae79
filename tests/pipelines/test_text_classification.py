"""text-classification / sentiment-analysis: Haven's pipeline against the reference library's."""

from __future__ import annotations

import json
import shutil

import pytest

from fixtures.compare import assert_same_output as assert_same
from haven import pipeline
from haven.pipelines import PipelineError

ARCHS = ["bert", "distilbert", "roberta", "camembert"]
PAIR = {"text": "A man is eating food.", "text_pair": "Someone eats something."}



@pytest.fixture(scope="module", params=ARCHS)
def pipes(request):
    import transformers

    transformers.logging.set_verbosity_error()
    path = request.getfixturevalue(f"{request.param}_sequence_classification_dir")
    return pipeline("text-classification", model=path), transformers.pipeline(
        "text-classification", model=path
    )


INPUTS = {
    "text": "I love this café, the croissants are excellent!",
    "batch": ["good", "The weather was cold, so they stayed inside and read books.", "bad stuff"],
    "pair": PAIR,
    "batch of pairs and texts": [PAIR, "plain text", {"text": "only a text"}],
}
OPTIONS = [
    {},
    {"top_k": None},
    {"top_k": 1},
    {"top_k": 2},
    {"function_to_apply": "sigmoid"},
    {"function_to_apply": "none", "top_k": None},
    {"function_to_apply": "softmax", "top_k": 1},
]


@pytest.mark.parametrize("case", list(INPUTS))
@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_matches_reference(pipes, case, options):
    ours, ref = pipes
    assert_same(ours(INPUTS[case], **options), ref(INPUTS[case], **options))


def test_batching_keeps_order_and_results(pipes):
    ours, ref = pipes
    inputs = INPUTS["batch"] * 4 + [PAIR]
    expected = ref(inputs, top_k=None)
    for batch_size in (1, 3, 32):
        assert_same(ours(inputs, top_k=None, batch_size=batch_size), expected)


def test_top_k_none_at_construction(pipes):
    import transformers

    ours, _ = pipes
    path = ours.model.name_or_path
    ref = transformers.pipeline("text-classification", model=path, top_k=None)
    mine = pipeline("sentiment-analysis", model=path, top_k=None)
    assert_same(mine("hello"), ref("hello"))
    assert_same(mine(["hello", "a longer sentence here"]), ref(["hello", "a longer sentence here"]))


def _variant(src, tmp_path, name, **config_changes):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(config_changes)
    (dst / "config.json").write_text(json.dumps(config))
    return str(dst)


@pytest.mark.parametrize("problem_type", ["multi_label_classification", "single_label_classification"])
def test_default_function_follows_problem_type(bert_sequence_classification_dir, tmp_path, problem_type):
    import transformers

    path = _variant(bert_sequence_classification_dir, tmp_path, problem_type, problem_type=problem_type)
    ref = transformers.pipeline("text-classification", model=path)
    ours = pipeline("text-classification", model=path)
    for options in ({}, {"top_k": None}):
        assert_same(ours(INPUTS["batch"], **options), ref(INPUTS["batch"], **options))


@pytest.mark.parametrize("problem_type", [None, "regression"])
def test_single_label_model(bert_tokenizer_dir, tmp_path, problem_type):
    """num_labels == 1: sigmoid by default, raw scores for regression."""
    import transformers

    from fixtures.encoders import build_reference_model

    tokenizer = transformers.AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    extra = {"problem_type": problem_type} if problem_type else {}
    model = build_reference_model(
        "bert",
        "sequence_classification",
        tokenizer,
        21,
        num_labels=1,
        id2label={0: "SCORE"},
        label2id={"SCORE": 0},
        **extra,
    )
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ref = transformers.pipeline("text-classification", model=str(tmp_path))
    ours = pipeline("text-classification", model=str(tmp_path))
    for options in ({}, {"top_k": None}, {"function_to_apply": "softmax"}):
        assert_same(ours(INPUTS["batch"], **options), ref(INPUTS["batch"], **options))


def test_masked_lm_checkpoint_warns_untrained_head(bert_masked_lm_dir):
    with pytest.warns(UserWarning, match="newly initialised"):
        pipe = pipeline("text-classification", model=bert_masked_lm_dir)
    assert {"label", "score"} == set(pipe("still runs")[0])


def test_bad_inputs(pipes):
    ours, _ = pipes
    with pytest.raises(PipelineError, match="text_pair"):
        ours([["first", "second", "third"]])
    with pytest.raises(PipelineError, match="function_to_apply"):
        ours("x", function_to_apply="tanh")
    with pytest.raises(PipelineError, match="top_k"):
        ours("x", top_k=0)
    with pytest.raises(PipelineError, match="text_pair"):
        ours({"text": "a", "pair": "b"})
