"""Collators: a list of examples (dicts) -> one batch of tensors.

`default_data_collator` stacks examples that already have equal lengths; `DataCollatorWithPadding`
pads token sequences with the tokenizer (dynamic padding: to the longest in the batch). Both name the
target `labels`, as models expect, whether the dataset calls it `label`, `label_ids` or `labels`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

_LABEL_KEYS = ("label", "label_ids", "labels")


def _labels(features: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], torch.Tensor | None]:
    """Examples without their label key, and the labels as one tensor (None when there are none)."""
    key = next((k for k in _LABEL_KEYS if k in features[0]), None)
    if key is None:
        return [dict(f) for f in features], None
    values = [f[key] for f in features]
    if any(v is None for v in values):
        raise ValueError(f"some examples have {key}=None; give every example a label, or none of them")
    first = values[0].item() if isinstance(values[0], torch.Tensor) and values[0].dim() == 0 else values[0]
    dtype = torch.float32 if isinstance(first, float) else torch.long
    labels = torch.stack([torch.as_tensor(v, dtype=dtype) for v in values])
    return [{k: v for k, v in f.items() if k != key} for f in features], labels


def default_data_collator(features: Sequence[Mapping[str, Any]], return_tensors: str = "pt") -> dict[str, Any]:
    """Stack each key's values into a tensor (they must have equal shapes); strings are left out."""
    if return_tensors != "pt":
        raise NotImplementedError(f"return_tensors={return_tensors!r}: Haven's collators return torch tensors ('pt')")
    if not features:
        raise ValueError("cannot collate an empty list of examples")
    rows, labels = _labels(features)
    batch: dict[str, Any] = {}
    for key, value in rows[0].items():
        if value is None or isinstance(value, str):
            continue
        try:
            batch[key] = torch.stack([torch.as_tensor(r[key]) for r in rows])
        except RuntimeError as err:
            raise ValueError(f"the examples' {key!r} have different lengths; pad them (DataCollatorWithPadding "
                             f"with your tokenizer) or tokenize with padding='max_length'") from err
    if labels is not None:
        batch["labels"] = labels
    return batch


@dataclass
class DataCollatorWithPadding:
    """Pads `input_ids`, `attention_mask`, `token_type_ids` with `tokenizer.pad` to the batch's longest
    (or `max_length` / a multiple of `pad_to_multiple_of`)."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if self.return_tensors != "pt":
            raise NotImplementedError(f"return_tensors={self.return_tensors!r}: this collator returns torch tensors")
        rows, labels = _labels(features)
        rows = [{k: v for k, v in r.items() if not isinstance(v, str)} for r in rows]
        batch = dict(self.tokenizer.pad(rows, padding=self.padding, max_length=self.max_length,
                                        pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"))
        if labels is not None:
            batch["labels"] = labels
        return batch
