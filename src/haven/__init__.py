"""Haven: a self-hosted home for pretrained transformer models.

The runtime keeps the reference library's names and call shapes:

    from haven import pipeline, AutoTokenizer, AutoModelForMaskedLM
    fill = pipeline("fill-mask", model="path/or/owner-name")

Public names are imported lazily so `import haven` (and the CLI) stays fast.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path
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
    "AutoModelForQuestionAnswering": "auto",
    "AutoModelForCausalLM": "auto",
    "AutoTokenizer": "tokenization.named",
    "Tokenizer": "tokenizer",
    "BatchEncoding": "tokenizer",
    "pipeline": "pipelines",
    "GenerationConfig": "generation",
    "TextStreamer": "generation",
    "TextIteratorStreamer": "generation",
    "set_seed": "generation",
    "HubClient": "hub.client",
    "ModelCard": "hub.card",
    "Trainer": "training",
    "TrainingArguments": "training",
    "TrainerCallback": "training",
    "TrainerState": "training",
    "TrainerControl": "training",
    "EarlyStoppingCallback": "training",
    "DataCollatorWithPadding": "training",
    "default_data_collator": "training",
    "EvalPrediction": "training",
    "QuantizationConfig": "linear.config",
    "BitsAndBytesConfig": "linear.config",
}

# The tokenizer class names checkpoints and scripts use: named entry points to the one Tokenizer.
_TOKENIZER_CLASSES = (
    "PreTrainedTokenizerFast BertTokenizer BertTokenizerFast DistilBertTokenizer DistilBertTokenizerFast "
    "RobertaTokenizer RobertaTokenizerFast CamembertTokenizer CamembertTokenizerFast XLMRobertaTokenizer "
    "XLMRobertaTokenizerFast GPT2Tokenizer GPT2TokenizerFast LlamaTokenizer LlamaTokenizerFast"
)
_EXPORTS.update(dict.fromkeys(_TOKENIZER_CLASSES.split(), "tokenization.named"))



@functools.cache
def _model_classes() -> dict[str, str]:
    """The config and model classes of every architecture (`BertForMaskedLM` ...), as each
    haven/models/*.py lists them in its AUTO table: class name -> module. Read from the source,
    so `import haven` stays free of torch and a class added to a table is exported at once."""
    found: dict[str, str] = {}
    for path in sorted((Path(__file__).parent / "models").glob("[!_]*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "AUTO" for t in node.targets):
                called = {id(n.func) for n in ast.walk(node.value) if isinstance(n, ast.Call)}
                for n in ast.walk(node.value):
                    if isinstance(n, ast.Name) and id(n) not in called:
                        found.setdefault(n.id, f"models.{path.stem}")
    return found


def _all_names() -> list[str]:
    return ["__version__", *_EXPORTS, *(n for n in _model_classes() if n not in _EXPORTS)]


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return _all_names()
    module = _EXPORTS.get(name) or _model_classes().get(name)
    if module is None:
        raise AttributeError(f"module 'haven' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(_all_names())
