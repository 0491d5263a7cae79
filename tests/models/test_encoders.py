"""What every encoder (BERT, DistilBERT, RoBERTa, CamemBERT) must do alike, against the reference
implementation on the tiny checkpoints it saved: one test per behaviour, parametrized over the
architectures and heads. What only one family has lives in `test_<arch>.py`."""

from __future__ import annotations

import pytest
import torch

from fixtures.encoders import (
    ARCHS,
    HEADS,
    check_classifier_shortcut,
    check_logits_at,
    check_losses,
    check_padded_batch,
    check_pairs,
    check_sequence_loss,
)
from haven.models import packing


def _dir(request: pytest.FixtureRequest, arch: str, head: str) -> str:
    return request.getfixturevalue(f"{arch}_{head}_dir")


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batch_matches_reference(arch, head, request):
    check_padded_batch(arch, head, _dir(request, arch, head))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_sentence_pairs(arch, head, request):
    batch = check_pairs(arch, head, _dir(request, arch, head))
    # only BERT's tokenizer gives segment ids (and only BERT has segment embeddings that use them)
    has_types = "token_type_ids" in batch and bool((batch["token_type_ids"] == 1).any())
    assert has_types == (arch == "bert")


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_losses(arch, head, request):
    check_losses(arch, head, _dir(request, arch, head), seed=ARCHS.index(arch))


@pytest.mark.parametrize(
    ("num_labels", "problem_type", "explicit", "labels"),
    [
        (2, "single_label_classification", False, torch.tensor([1, 0])),
        (2, "single_label_classification", True, torch.tensor([1, 0])),
        (3, "multi_label_classification", False, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
        (3, "multi_label_classification", True, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
        (1, "regression", False, torch.tensor([0.5, -1.25])),
        (2, "regression", True, torch.tensor([[0.5, 1.0], [-1.0, 2.0]])),
    ],
)
@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_sequence_classification_losses(tmp_path, request, arch, num_labels, problem_type, explicit, labels):
    """problem_type given, or inferred from num_labels and the labels' dtype as the reference does."""
    tokenizer_dir = request.getfixturevalue(f"{arch}_tokenizer_dir")
    extra = {"problem_type": problem_type} if explicit else {}
    assert check_sequence_loss(arch, tokenizer_dir, tmp_path, 21, labels, num_labels, **extra) == problem_type


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("arch", ARCHS)
def test_classifier_shortcut_matches_full_computation(arch, padding_side, request, monkeypatch):
    """Sequence classifiers pack padding away and compute only the first token in the last layer."""
    packed = []
    real_init = packing.Packed.__init__
    monkeypatch.setattr(packing.Packed, "__init__", lambda self, m: packed.append(m) or real_init(self, m))
    check_classifier_shortcut(arch, _dir(request, arch, "sequence_classification"), padding_side)
    assert len(packed) == (1 if padding_side == "right" else 0)  # left padding: pad tokens come first


@pytest.mark.parametrize("head", ["masked_lm", "token_classification"])
@pytest.mark.parametrize("arch", ARCHS)
def test_logits_at_selected_positions(arch, head, request):
    check_logits_at(arch, _dir(request, arch, head), head)
