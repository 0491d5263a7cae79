"""Auto classes: pick the architecture's config and model class from `model_type`.

Each file in `haven.models` exposes `AUTO = {model_type: {"config": Cls, "model": Cls,
"masked-lm": Cls, ...}}`; this module only knows which file holds which `model_type`, and
imports it on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .config import PretrainedConfig, read_config_dict, resolve_config_file
from .errors import ConfigError, UnknownArchitectureError

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
    def from_pretrained(path_or_id: str | os.PathLike, *, revision: str | None = None, **kwargs: Any) -> PretrainedConfig:
        hub = {k: kwargs.pop(k) for k in ("token", "cache_dir", "local_files_only") if k in kwargs}
        path = resolve_config_file(path_or_id, revision=revision, **hub)
        data = read_config_dict(path)
        model_type = data.get("model_type")
        if not model_type:
            raise ConfigError(
                f"{path} has no 'model_type', so Haven cannot tell which architecture it describes. "
                f"Add \"model_type\" (one of: {', '.join(supported_model_types())}) or load it with the "
                "architecture's own config class"
            )
        config = model_table(model_type)["config"].from_dict(data, **kwargs)
        config._name_or_path = str(path_or_id)
        return config


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
        if config is None:
            config_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_OVERRIDES}
            config = AutoConfig.from_pretrained(path_or_id, **config_kwargs, **overrides)
        return cls.model_class(config).from_pretrained(path_or_id, config=config, **kwargs)


# Keyword arguments of from_pretrained that are config values, not loading options.
_CONFIG_OVERRIDES = {
    "num_labels",
    "id2label",
    "label2id",
    "problem_type",
    "output_attentions",
    "output_hidden_states",
    "attn_implementation",
}


def _make(name: str) -> type:
    return type(name, (_AutoModel,), {"_key": TASK_KEYS[name], "__doc__": f"{name}.from_pretrained(path_or_id)"})


AutoModel = _make("AutoModel")
AutoModelForMaskedLM = _make("AutoModelForMaskedLM")
AutoModelForSequenceClassification = _make("AutoModelForSequenceClassification")
AutoModelForTokenClassification = _make("AutoModelForTokenClassification")
AutoModelForCausalLM = _make("AutoModelForCausalLM")
