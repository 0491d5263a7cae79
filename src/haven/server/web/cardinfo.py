"""What the model page shows beside the card: the card's metadata as a side panel (license,
languages, datasets, base model) and its model-index results as table rows."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..api.index import _as_list
from ..storage.hooks.card_metadata import parse_front_matter


@dataclass
class CardInfo:
    text: str | None = None  # README.md as text; None when the repo has no card
    meta: dict = field(default_factory=dict)
    error: str | None = None  # why the metadata could not be read
    panel: list[tuple[str, list[str]]] = field(default_factory=list)  # (label, values)
    results: list[dict] = field(default_factory=list)  # model-index rows


PANEL = (("license", "License"), ("language", "Languages"), ("datasets", "Datasets"), ("base_model", "Base model"))


def _text(value) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)


def model_index_rows(meta: dict) -> list[dict]:
    """One row per metric of the card's `model-index` (task, dataset, metric, value); entries
    of the wrong shape are skipped, never raised on."""
    rows = []
    for model in meta.get("model-index") or [] if isinstance(meta.get("model-index"), list) else []:
        for result in (model.get("results") or []) if isinstance(model, dict) else []:
            if not isinstance(result, dict):
                continue
            task = result.get("task") if isinstance(result.get("task"), dict) else {}
            dataset = result.get("dataset") if isinstance(result.get("dataset"), dict) else {}
            for metric in result.get("metrics") or [] if isinstance(result.get("metrics"), list) else []:
                if not isinstance(metric, dict):
                    continue
                rows.append({
                    "model": _text(model.get("name")),
                    "task": _text(task.get("name") or task.get("type")),
                    "dataset": _text(dataset.get("name") or dataset.get("type")),
                    "metric": _text(metric.get("name") or metric.get("type")),
                    "value": _text(metric.get("value")),
                })
    return rows


def card_info(readme: bytes | None) -> CardInfo:
    """The card `readme` (README.md's bytes, None when absent) read for the page."""
    if readme is None:
        return CardInfo()
    try:
        text = readme.decode("utf-8")
    except UnicodeDecodeError:
        return CardInfo(text="", error="README.md is not UTF-8 text, so it cannot be shown.")
    info = CardInfo(text=text)
    try:
        info.meta = parse_front_matter(text) or {}
    except ValueError as err:
        info.error = f"{err}. Fix the YAML block between the leading '---' lines of README.md."
        return info
    for key, label in PANEL:
        values = _as_list(info.meta.get(key))
        if values:
            info.panel.append((label, values))
    info.results = model_index_rows(info.meta)
    return info
