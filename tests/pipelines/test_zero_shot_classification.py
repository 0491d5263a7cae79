"""zero-shot-classification against the reference pipeline, on tiny NLI checkpoints (BERT and
RoBERTa sequence classifiers with contradiction / neutral / entailment labels) built here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import transformers

from fixtures.encoders import MAX_TOKENS, build_reference_model
from haven import pipeline
from haven.pipelines import PipelineError

SEQUENCES = [
    "The team won the final after a long match.",
    "Le gouvernement a voté une nouvelle loi.",
    "x",
]
LABELS = ["sports", "politics", "cooking", "weather"]
NLI = ["contradiction", "neutral", "entailment"]


def _nli_dir(tmp_path_factory, request, arch: str, labels: list[str], seed: int) -> str:
    tokenizer = transformers.AutoTokenizer.from_pretrained(request.getfixturevalue(f"{arch}_tokenizer_dir"))
    tokenizer.model_max_length = MAX_TOKENS
    model = build_reference_model(
        arch,
        "sequence_classification",
        tokenizer,
        seed,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    out = tmp_path_factory.mktemp(f"{arch}_nli")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def bert_nli_dir(tmp_path_factory, request) -> str:
    return _nli_dir(tmp_path_factory, request, "bert", NLI, seed=11)


@pytest.fixture(scope="module")
def roberta_nli_first_dir(tmp_path_factory, request) -> str:
    """Entailment first and upper-case: contradiction is then the last label."""
    return _nli_dir(tmp_path_factory, request, "roberta", ["ENTAILMENT", "neutral", "contradiction"], seed=12)


def assert_same(got, expected):
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
        return
    assert set(got) == {"sequence", "labels", "scores"}
    assert got["sequence"] == expected["sequence"]
    assert got["labels"] == expected["labels"]
    assert got["scores"] == pytest.approx(expected["scores"], abs=1e-5)


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("fixture", ["bert_nli_dir", "roberta_nli_first_dir"])
def test_matches_reference(request, fixture, multi_label):
    path = request.getfixturevalue(fixture)
    ref = transformers.pipeline("zero-shot-classification", model=path)
    ours = pipeline("zero-shot-classification", model=path)
    for seq in SEQUENCES:
        assert_same(
            ours(seq, candidate_labels=LABELS, multi_label=multi_label),
            ref(seq, LABELS, multi_label=multi_label),
        )
    expected = ref(SEQUENCES, candidate_labels=LABELS, multi_label=multi_label)
    assert_same(ours(SEQUENCES, candidate_labels=LABELS, multi_label=multi_label), expected)
    assert_same(ours(SEQUENCES, LABELS, multi_label=multi_label, batch_size=4), expected)


def test_template_string_labels_and_one_label(bert_nli_dir):
    ref = transformers.pipeline("zero-shot-classification", model=bert_nli_dir)
    ours = pipeline("zero-shot-classification", model=bert_nli_dir)
    template = "Ce texte parle de {}."
    assert_same(
        ours(SEQUENCES[1], "sports, politics ,cooking", hypothesis_template=template),
        ref(SEQUENCES[1], "sports, politics ,cooking", hypothesis_template=template),
    )
    # one label: scored on its own (entailment vs contradiction), as the reference does
    assert_same(ours(SEQUENCES[0], ["sports"]), ref(SEQUENCES[0], ["sports"]))


def test_defaults_at_construction_and_old_multi_class_name(bert_nli_dir):
    ref = transformers.pipeline("zero-shot-classification", model=bert_nli_dir)
    ours = pipeline("zero-shot-classification", model=bert_nli_dir, candidate_labels=LABELS)
    assert_same(ours(SEQUENCES[0]), ref(SEQUENCES[0], LABELS))
    assert_same(ours(SEQUENCES[0], multi_class=True), ref(SEQUENCES[0], LABELS, multi_label=True))


def test_refusals(bert_nli_dir, bert_sequence_classification_dir):
    ours = pipeline("zero-shot-classification", model=bert_nli_dir)
    with pytest.raises(PipelineError, match="candidate_labels"):
        ours(SEQUENCES[0])
    with pytest.raises(PipelineError, match="candidate_labels"):
        ours(SEQUENCES[0], candidate_labels=[])
    with pytest.raises(PipelineError, match=r"\{\}"):
        ours(SEQUENCES[0], LABELS, hypothesis_template="no placeholder")
    with pytest.raises(PipelineError, match="unknown arguments"):
        ours(SEQUENCES[0], LABELS, top_k=2)
    with pytest.raises(PipelineError, match="entailment"):  # NEGATIVE/POSITIVE: not an NLI model
        pipeline("zero-shot-classification", model=bert_sequence_classification_dir)


def test_haven_run(bert_nli_dir):
    out = subprocess.run(
        [sys.executable, "-m", "haven.cli", "run", "zero-shot-classification", "-m", bert_nli_dir,
         SEQUENCES[0], "--candidate-labels", "sports, politics", "--multi-label", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    expected = transformers.pipeline("zero-shot-classification", model=bert_nli_dir)(
        SEQUENCES[0], ["sports", "politics"], multi_label=True
    )
    assert_same(json.loads(out.stdout), expected)
