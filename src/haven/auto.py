"""Auto classes: pick the architecture's config and model class from `model_type`.

Each file in `haven.models` exposes `AUTO = {model_type: {"config": Cls, "model": Cls,
"masked-lm": Cls, ...}}`; this module only knows which file holds which `model_type`, and
imports it on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .config import PretrainedConfig, load_config
from .errors import ConfigError, UnknownArchitectureError
from .loading import CONFIG_OPTIONS

# model_type -> module in haven.models
MODEL_MODULES: dict[str, str] = {
    "bert": "bert",
    "distilbert": "distilbert",
    "roberta": "roberta",
    "camembert": "roberta",
    "xlm-roberta": "roberta",
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "llama",
}

# Auto class -> key in a module's AUTO table (and the heads a task needs).
TASK_KEYS = {
    "AutoModel": "model",
    "AutoModelForMaskedLM": "masked-lm",
    "AutoModelForSequenceClassification": "sequence-classification",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForCausalLM": "causal-lm",
    "AutoModelForQuestionAnswering": "question-answering",
}


def supported_model_types() -> list[str]:
    return sorted(MODEL_MODULES)


def model_table(model_type: str) -> dict[str, type]:
    """The AUTO entry of `model_type`: {"config": ..., "model": ..., heads ...}."""
    module_name = MODEL_MODULES.get(model_type)
    if module_name is None:
        raise UnknownArchitectureError(
            f"model_type {model_type!r} is not supported by Haven. "
            f"Supported model types: {', '.join(supported_model_types())}"
        )
    module = importlib.import_module(f".models.{module_name}", __package__)
    return module.AUTO[model_type]


def class_for_architecture(name: str) -> type:
    """A model class by its class name (`"BertForMaskedLM"`), as config.architectures lists them."""
    for model_type in MODEL_MODULES:
        for cls in model_table(model_type).values():
            if cls.__name__ == name:
                return cls
    raise UnknownArchitectureError(f"architecture {name!r} is not implemented by Haven")


class AutoConfig:
    """`AutoConfig.from_pretrained(path_or_id)` -> the architecture's config object."""

    def __init__(self) -> None:
        raise TypeError("use AutoConfig.from_pretrained(path_or_id) or AutoConfig.for_model(model_type)")

    @staticmethod
    def for_model(model_type: str, **kwargs: Any) -> PretrainedConfig:
        return model_table(model_type)["config"](**kwargs)

    @staticmethod
    def from_pretrained(path_or_id: str | os.PathLike, **kwargs: Any) -> PretrainedConfig:
        """The config class is chosen by the file's `model_type`; keyword arguments as for
        `PretrainedConfig.from_pretrained` (hub options, `return_unused_kwargs`, overrides)."""
        return load_config(path_or_id, kwargs, _config_class)


def _config_class(data: dict[str, Any], path: str) -> type[PretrainedConfig]:
    model_type = data.get("model_type")
    if not model_type:
        raise ConfigError(
            f"{path} has no 'model_type', so Haven cannot tell which architecture it describes. "
            f"Add \"model_type\" (one of: {', '.join(supported_model_types())}) or load it with the "
            "architecture's own config class"
        )
    return model_table(model_type)["config"]


class _AutoModel:
    """Shared implementation of the AutoModel* classes."""

    _key = "model"

    def __init__(self) -> None:
        raise TypeError(f"use {type(self).__name__}.from_pretrained(path_or_id) or .from_config(config)")

    @classmethod
    def model_class(cls, config: PretrainedConfig) -> type:
        table = model_table(config.model_type)
        if cls._key not in table:
            heads = sorted(k for k in table if k != "config")
            raise UnknownArchitectureError(
                f"{config.model_type} has no {cls._key} model in Haven (available: {', '.join(heads)}); "
                f"{cls.__name__} cannot load it"
            )
        return table[cls._key]

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any):
        return cls.model_class(config).from_config(config, **kwargs)

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, *, config: PretrainedConfig | None = None, **kwargs: Any):
        """The class is chosen by the config's `model_type`; keyword arguments as for
        `PreTrainedModel.from_pretrained` (loading options, config overrides, model arguments)."""
        if config is None:
            where = {k: kwargs[k] for k in CONFIG_OPTIONS if k in kwargs}
            config = AutoConfig.from_pretrained(path_or_id, **where)
        return cls.model_class(config).from_pretrained(path_or_id, config=config, **kwargs)


def _make(name: str) -> type:
    return type(name, (_AutoModel,), {"_key": TASK_KEYS[name], "__doc__": f"{name}.from_pretrained(path_or_id)"})


AutoModel = _make("AutoModel")
AutoModelForMaskedLM = _make("AutoModelForMaskedLM")
AutoModelForSequenceClassification = _make("AutoModelForSequenceClassification")
AutoModelForTokenClassification = _make("AutoModelForTokenClassification")
AutoModelForCausalLM = _make("AutoModelForCausalLM")
AutoModelForQuestionAnswering = _make("AutoModelForQuestionAnswering")
