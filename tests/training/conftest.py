"""Fixtures of the Trainer tests: a tiny BERT pair classifier built and saved by the REFERENCE library
(dropout off, so runs are deterministic; drawn 10x wider than BERT's default so that it learns the task
in a few epochs) with its word-level tokenizer (see pairs.py for the task)."""

from __future__ import annotations

import pytest
import torch

from training.pairs import SPECIALS, WORDS


@pytest.fixture(scope="session")
def tiny_pair_bert(tmp_path_factory) -> str:
    """A reference BertForSequenceClassification (hidden 32, 2 layers, dropout 0) + tokenizer, saved."""
    import transformers

    path = tmp_path_factory.mktemp("tiny-pair-bert")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + WORDS) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=len(SPECIALS) + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, initializer_range=0.2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=2, pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    vocab.unlink()
    tokenizer.save_pretrained(path)  # vocab.txt again, written by the reference
    return str(path)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread: these tiny models are slower, not faster, with more on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
