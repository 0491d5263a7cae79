"""Datasets in, batches out: any sequence of dicts, any iterable of dicts, or a 🤗 `datasets.Dataset`
(read by duck typing: it is a sequence of dicts too, so no import and no dependency).

Columns the model's forward does not take are dropped from each example before collation, as the
reference does (`remove_unused_columns=True`); the label columns (`labels`, `label`, `label_ids` and
`args.label_names`) are kept.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler, SequentialSampler


def has_length(dataset: Any) -> bool:
    try:
        return len(dataset) is not None and hasattr(dataset, "__getitem__")
    except TypeError:
        return False


def model_columns(model: torch.nn.Module, label_names: list[str]) -> set[str]:
    """The keys an example may keep: forward's parameters and the label names."""
    params = inspect.signature(model.forward).parameters
    return {*params, *label_names, "label", "label_ids"}


def label_names_of(model: torch.nn.Module) -> list[str]:
    """`labels`, or `start_positions`/`end_positions` for question answering: forward's label arguments."""
    params = inspect.signature(model.forward).parameters
    if "start_positions" in params and "end_positions" in params:
        return ["start_positions", "end_positions"]
    return [p for p in params if "label" in p]


class DroppingCollator:
    """Drops an example's unused keys, then calls the real collator."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], Any], keep: set[str], description: str):
        self.collator, self.keep, self.description = collator, keep, description

    def __call__(self, features: list[Mapping[str, Any]]) -> Any:
        rows = []
        for f in features:
            if not isinstance(f, Mapping):
                raise TypeError(f"the {self.description} dataset must hold dicts (one per example), got "
                                f"{type(f).__name__}")
            rows.append({k: v for k, v in f.items() if k in self.keep})
        if not rows[0]:
            raise ValueError(f"no column of the {self.description} dataset is an input of the model (it has "
                             f"{sorted(features[0])}; the model takes {sorted(self.keep)}): tokenize it first, "
                             "or pass remove_unused_columns=False")
        return self.collator(rows)


class _Iterated(IterableDataset):
    """A plain iterable (a generator function's result cannot restart: pass a re-iterable object)."""

    def __init__(self, source: Iterable[Any]):
        self.source = source

    def __iter__(self):
        return iter(self.source)


class EpochSampler(Sampler[int]):
    """A fresh random order each epoch, drawn from (seed, epoch) alone: a resumed run sees the same order."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(dataset: Any, batch_size: int, collator: Callable[..., Any], *, sampler: Sampler | None,
                drop_last: bool) -> DataLoader:
    if dataset is None:
        raise ValueError("no dataset: pass train_dataset / eval_dataset to the Trainer (or to evaluate/predict)")
    if not has_length(dataset):
        return DataLoader(_Iterated(dataset), batch_size=batch_size, collate_fn=collator, drop_last=drop_last)
    sampler = sampler if sampler is not None else SequentialSampler(range(len(dataset)))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator, drop_last=drop_last)
