"""The Trainer tests' synthetic sentence-pair task: is the second sentence the first one's words
reordered (label 1), or other words (label 0)? Examples come tokenized (word-level ids)."""

from __future__ import annotations

import random

import torch

WORDS = [f"w{i}" for i in range(30)]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_pairs(n: int, seed: int, words: int = len(WORDS), lengths: tuple[int, int] = (3, 6)) -> list[dict]:
    """`n` tokenized examples (input_ids, token_type_ids, attention_mask, label, plus an unused text column),
    over the first `words` words, with sentences of `lengths` words."""
    rng = random.Random(seed)
    vocab = WORDS[:words]
    out = []
    for i in range(n):
        a = rng.sample(vocab, rng.randint(*lengths))
        label = i % 2
        b = rng.sample(a, len(a)) if label else rng.sample([w for w in vocab if w not in a], len(a))
        ids = [2, *(5 + WORDS.index(w) for w in a), 3, *(5 + WORDS.index(w) for w in b), 3]
        types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        out.append({"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids), "label": label,
                    "text": " ".join(a) + " | " + " ".join(b)})
    return out


def pad_collate(features: list[dict]) -> dict[str, torch.Tensor]:
    """A plain collator both libraries' Trainers are given: right-pad to the batch's longest."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {k: torch.tensor([f[k] + [0] * (width - len(f[k])) for f in features])
             for k in ("input_ids", "token_type_ids", "attention_mask")}
    batch["labels"] = torch.tensor([f["label"] for f in features])
    return batch
