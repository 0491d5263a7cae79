"""The inference widget on a model page: one per task Haven serves (static/widgets.js draws it and
calls `POST /models/{ns}/{name}` on the same origin, with the page's session cookie).

What the page hands the script: the task, the endpoint, the example inputs (the card's `widget:`
metadata when it has usable entries, else the task's defaults) and, for fill-mask, the model's own
mask token (tokenizer_config.json, else special_tokens_map.json). No widget where the hub runs no
inference (`--no-inference`), for datasets, or for a task Haven cannot serve.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from ..storage.datatypes import TreeEntry

TASKS = (
    "fill-mask", "text-classification", "token-classification", "zero-shot-classification",
    "feature-extraction", "sentence-similarity", "text-generation",
)
DEFAULTS: dict[str, dict[str, Any]] = {
    "fill-mask": {"text": "The goal of life is {mask}."},
    "text-classification": {"text": "This film was a pleasure from start to finish."},
    "token-classification": {"text": "Ada Lovelace worked with Charles Babbage in London."},
    "zero-shot-classification": {
        "text": "The battery of my new laptop dies after an hour.",
        "candidate_labels": "hardware, billing, shipping",
    },
    "feature-extraction": {"text": "A sentence to turn into numbers."},
    "sentence-similarity": {
        "source_sentence": "A man is eating food.",
        "sentences": ["A man is eating a piece of bread.", "A woman is playing the violin.", "The man is riding a horse."],
    },
    "text-generation": {"text": "Once upon a time,"},
}
MAX_EXAMPLES = 10
DEFAULT_MASK = "[MASK]"


def _token(value: Any) -> str | None:
    """A special token as tokenizer files write it: a string, or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def mask_token(read: Any, paths: set[str]) -> str:
    """The model's mask token from its tokenizer files (`read(path) -> bytes`), else "[MASK]"."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if name not in paths:
            continue
        try:
            found = _token(json.loads(read(name)).get("mask_token"))
        except (ValueError, AttributeError):
            continue
        if found:
            return found
    return DEFAULT_MASK


def _example(task: str, raw: Any) -> dict | None:
    """One card `widget:` entry in the widget's shape, or None when it does not fit the task."""
    if not isinstance(raw, dict):
        return None
    title = raw.get("example_title") if isinstance(raw.get("example_title"), str) else None
    if task == "sentence-similarity":
        source, sentences = raw.get("source_sentence"), raw.get("sentences")
        if not isinstance(source, str) or not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            return None
        return {"title": title, "source_sentence": source, "sentences": sentences}
    text = raw.get("text")
    if not isinstance(text, str):
        return None
    example = {"title": title, "text": text}
    if task == "zero-shot-classification":
        labels = raw.get("candidate_labels")
        if isinstance(labels, list):
            labels = ", ".join(str(label) for label in labels)
        if not isinstance(labels, str):
            return None
        example["candidate_labels"] = labels
    return example


def examples(task: str, meta: dict, mask: str) -> list[dict]:
    """The card's usable `widget:` examples, else the task's default (with the model's mask token)."""
    found = [e for e in (_example(task, raw) for raw in (meta.get("widget") or [])[:MAX_EXAMPLES]
                         if isinstance(meta.get("widget"), list)) if e]
    if found:
        return found
    default = dict(DEFAULTS[task], title=None)
    if task == "fill-mask":
        default["text"] = default["text"].replace("{mask}", mask)
    return [default]


def widget_for(request: Request, repo, st, sha: str, files: list[TreeEntry], meta: dict) -> dict | None:
    """What the page's widget needs, or None when this model gets no widget."""
    if repo.type != "model" or repo.pipeline_tag not in TASKS:
        return None
    if getattr(request.app.state, "inference", None) is None:
        return None
    task = repo.pipeline_tag
    mask = ""
    if task == "fill-mask":
        paths = {e.path for e in files}
        mask = mask_token(lambda path: st.read_blob(repo.type, repo.repo_id, sha, path), paths)
    return {
        "task": task,
        "endpoint": f"/models/{repo.repo_id}",
        "mask": mask,
        "examples": examples(task, meta, mask),
    }
