"""feature-extraction: raw hidden states equal the reference pipeline's."""

from __future__ import annotations

import pytest
import torch

from haven import pipeline

ARCHS = ["bert", "distilbert", "roberta", "camembert"]


@pytest.fixture(scope="module", params=ARCHS)
def pipes(request):
    import transformers

    transformers.logging.set_verbosity_error()
    path = request.getfixturevalue(f"{request.param}_masked_lm_dir")
    return pipeline("feature-extraction", model=path), transformers.pipeline("feature-extraction", model=path)


def test_single_text_nested_lists(pipes):
    ours, ref = pipes
    text = "The quick brown fox jumps over the lazy dog."
    got, expected = ours(text), ref(text)
    assert isinstance(got, list) and isinstance(got[0][0][0], float)
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-4)


def test_batch_each_unpadded(pipes):
    """A batch gives each text its own length (the reference pads rows when batch_size > 1)."""
    ours, ref = pipes
    texts = ["Hello world!", "Les modèles de langue prédisent le mot suivant dans une phrase.", "ok"]
    expected = [ref(t) for t in texts]
    for batch_size in (1, 2, 8):
        got = ours(texts, batch_size=batch_size)
        assert len(got) == len(texts)
        for g, e in zip(got, expected):
            assert torch.allclose(torch.tensor(g), torch.tensor(e), atol=1e-4)


def test_return_tensors_and_truncation(pipes):
    ours, ref = pipes
    text = "word " * 300
    got = ours(text, return_tensors=True, truncation=True)
    expected = ref(text, return_tensors=True, truncation=True)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4)
