"""PretrainedConfig: `config.json` <-> a Python object.

Each architecture subclasses `PretrainedConfig`, sets `model_type` and lists its defaults in
`defaults`. Every key found in a config.json is kept — known or not — and written back by
`save_pretrained`, so a config survives a round trip through Haven untouched.
`attribute_map` lets a family read its own key names under the common ones
(GPT-2's `n_embd` is also `config.hidden_size`).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, ClassVar

from .errors import ConfigError
from .hub.mixin import PushToHubMixin

CONFIG_NAME = "config.json"

# Keys every config has, with the reference library's defaults.
_COMMON_DEFAULTS: dict[str, Any] = {
    "architectures": None,
    "problem_type": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "tie_word_embeddings": True,
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "is_decoder": False,
}

# Keys that describe a config file, not the model; never stored as attributes.
_DROPPED_ON_LOAD = {"model_type", "transformers_version", "haven_version", "_name_or_path"}


class PretrainedConfig(PushToHubMixin):
    model_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    attribute_map: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        merged: dict[str, Any] = dict(_COMMON_DEFAULTS)
        for klass in reversed(type(self).__mro__):
            merged.update(copy.deepcopy(klass.__dict__.get("defaults", {})))
        # Labels: `id2label` wins over `num_labels`; JSON keys are strings, memory keys are ints.
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        for key in _DROPPED_ON_LOAD:
            kwargs.pop(key, None)
        merged.update(kwargs)
        for key, value in merged.items():
            setattr(self, key, value)
        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ConfigError(f"id2label must be a mapping of class index to name, got {type(id2label).__name__}")
            try:
                self.id2label = {int(k): str(v) for k, v in id2label.items()}
            except ValueError as err:
                raise ConfigError(f"id2label keys must be integers (as strings in JSON): {err}") from None
        else:
            self.num_labels = 2 if num_labels is None else num_labels
        if label2id is not None:
            self.label2id = {str(k): int(v) for k, v in label2id.items()}
        else:
            self.label2id = {v: k for k, v in self.id2label.items()}

    # -- aliases (attribute_map) -------------------------------------------------------------------

    def __setattr__(self, key: str, value: Any) -> None:
        key = type(self).attribute_map.get(key, key)
        super().__setattr__(key, value)

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails: resolve aliases, else a clear AttributeError.
        amap = type(self).attribute_map
        if key in amap:
            return getattr(self, amap[key])
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    # -- labels --------------------------------------------------------------------------------------

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"num_labels must be a positive integer, got {n!r}")
        current = self.__dict__.get("id2label")
        if current is None or len(current) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    # -- (de)serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_type": self.model_type} if self.model_type else {}
        for key, value in self.__dict__.items():
            if key.startswith("_"):
                continue
            if key == "id2label":
                value = {str(k): v for k, v in value.items()}
            out[key] = copy.deepcopy(value)
        from . import __version__

        out["haven_version"] = __version__
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> PretrainedConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        declared = data.get("model_type")
        if cls.model_type and declared and declared != cls.model_type:
            # Loading a related config (say camembert into RobertaConfig) is allowed, as upstream.
            pass
        return cls(**{**data, **overrides})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> PretrainedConfig:
        return cls.from_dict(read_config_dict(path))

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | os.PathLike, *, revision: str | None = None, **kwargs: Any
    ) -> PretrainedConfig:
        """Read `config.json` from a local directory, a file, or a hub repository id."""
        hub_kwargs = {k: kwargs.pop(k) for k in ("token", "cache_dir", "local_files_only") if k in kwargs}
        path = resolve_config_file(path_or_id, revision=revision, **hub_kwargs)
        config = cls.from_dict(read_config_dict(path), **kwargs)
        config._name_or_path = str(path_or_id)
        return config

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        if os.path.isfile(save_directory):
            raise ConfigError(f"{save_directory} is a file; save_pretrained needs a directory")
        os.makedirs(save_directory, exist_ok=True)
        self.to_json_file(os.path.join(save_directory, CONFIG_NAME))
        if kwargs.get("push_to_hub"):
            raise ConfigError("use config.push_to_hub(repo_id) to publish a config")

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:  # configs are mutable; identity hash keeps them usable as dict keys
        return id(self)


def resolve_config_file(path_or_id: str | os.PathLike, **hub_kwargs: Any) -> str:
    """Path of config.json for a directory, a direct file path, or a hub repo id."""
    if os.path.isfile(path_or_id):
        return os.fspath(path_or_id)
    from .hub import resolve_file

    return resolve_file(path_or_id, CONFIG_NAME, **hub_kwargs)


def read_config_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a config.json, turning syntax errors into a ConfigError that names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            "fix or re-download the file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; it does not look like a config.json") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data
