"""Haven: a self-hosted home for pretrained transformer models.

The runtime keeps the reference library's names and call shapes:

    from haven import pipeline, AutoTokenizer, AutoModelForMaskedLM
    fill = pipeline("fill-mask", model="path/or/owner-name")

Public names are imported lazily so `import haven` (and the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "PretrainedConfig": "config",
    "PreTrainedModel": "modeling",
    "AutoConfig": "auto",
    "AutoModel": "auto",
    "AutoModelForMaskedLM": "auto",
    "AutoModelForSequenceClassification": "auto",
    "AutoModelForTokenClassification": "auto",
    "AutoModelForCausalLM": "auto",
    "AutoTokenizer": "tokenizer",
    "Tokenizer": "tokenizer",
    "BatchEncoding": "tokenizer",
    "pipeline": "pipelines",
    "GenerationConfig": "generation",
    "TextStreamer": "generation",
    "TextIteratorStreamer": "generation",
    "set_seed": "generation",
    "HubClient": "hub.client",
    "ModelCard": "hub.card",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'haven' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
