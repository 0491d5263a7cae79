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
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar

from .errors import ConfigError
from .hub.mixin import PushToHubMixin
from .loading import CONFIG_OPTIONS, HUB_OPTIONS, NOT_CONFIG_KEYS, local_path, take_options

CONFIG_NAME = "config.json"

logger = logging.getLogger(__name__)

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

_LABEL_KEYS = ("num_labels", "id2label", "label2id")


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
        if id2label is None:
            num_labels = 2 if num_labels is None else num_labels
        elif num_labels is not None and num_labels != len(id2label):
            # a file's stale num_labels: its id2label wins, as in the reference
            logger.warning("num_labels=%s disagrees with id2label (%d labels); using id2label", num_labels, len(id2label))
            num_labels = None
        self._set_labels(num_labels, id2label, label2id)

    def _set_labels(self, num_labels: int | None, id2label: Any, label2id: Any) -> None:
        """Labels from explicit values: `id2label` wins over `num_labels` (they must agree when both
        are given); without `label2id`, it is the inverse of the (new) `id2label`."""
        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ConfigError(f"id2label must be a mapping of class index to name, got {type(id2label).__name__}")
            try:
                id2label = {int(k): str(v) for k, v in id2label.items()}
            except ValueError as err:
                raise ConfigError(f"id2label keys must be integers (as strings in JSON): {err}") from None
            if num_labels is not None and num_labels != len(id2label):
                raise ConfigError(
                    f"num_labels={num_labels} disagrees with the {len(id2label)} labels of id2label; pass one of them"
                )
            self.id2label = id2label
            self.label2id = {v: k for k, v in id2label.items()}
        elif num_labels is not None:
            self.num_labels = num_labels
        if label2id is not None:
            self.label2id = {str(k): int(v) for k, v in label2id.items()}

    # -- overrides (from_pretrained's keyword arguments) -------------------------------------------

    def unknown_keys(self, overrides: dict[str, Any]) -> list[str]:
        """The keys of `overrides` that are not attributes of this config (nor label settings)."""
        amap = type(self).attribute_map
        return [k for k in overrides if k not in self.__dict__ and k not in amap and k not in _LABEL_KEYS]

    def update_from_kwargs(self, overrides: dict[str, Any]) -> None:
        """Set config attributes from keyword arguments, as `from_pretrained(..., num_labels=5)` does.

        Only attributes the config has (its class's defaults, or keys of the loaded config.json)
        may be set; anything else is a TypeError. Explicit labels beat the file's: `num_labels=5`
        on a 2-label config gives LABEL_0..LABEL_4 (as the reference does), `id2label` replaces the
        labels (and `label2id`, unless that is given too)."""
        unknown = self.unknown_keys(overrides)
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}: they are neither loading options "
                f"(haven.loading.OPTIONS) nor attributes of {type(self).__name__}"
            )
        rest = dict(overrides)
        labels = [rest.pop(k, None) for k in _LABEL_KEYS]
        for key, value in rest.items():
            setattr(self, key, value)
        self._set_labels(*labels)

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
            if key.startswith("_") or key in NOT_CONFIG_KEYS:
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
        """A config from a config.json's contents (a related `model_type`, say camembert into
        RobertaConfig, is allowed, as upstream), then `overrides` (see `update_from_kwargs`).
        Loading options an older Haven wrote into config.json (`device_map`...) are dropped."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        config = cls(**{k: v for k, v in data.items() if k not in NOT_CONFIG_KEYS})
        config.update_from_kwargs(overrides)
        return config

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> PretrainedConfig:
        return cls.from_dict(read_config_dict(path))

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, **kwargs: Any) -> PretrainedConfig:
        """Read `config.json` from a local directory, a file, or a hub repository id.

        Keyword arguments: the hub options (`revision`, `token`, `cache_dir`, `local_files_only`,
        `force_download`, `subfolder`), `return_unused_kwargs`, and config attributes to override
        (`num_labels=3`); anything else is a TypeError, or with `return_unused_kwargs=True`
        returned as `(config, unused)`."""
        return load_config(path_or_id, kwargs, lambda data, path: cls)

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


def load_config(
    path_or_id: str | os.PathLike,
    kwargs: dict[str, Any],
    choose: Callable[[dict[str, Any], str], type[PretrainedConfig]],
) -> Any:
    """The shared body of `PretrainedConfig.from_pretrained` and `AutoConfig.from_pretrained`:
    `choose(data, path)` picks the config class from the file's contents."""
    kwargs = dict(kwargs)
    return_unused = kwargs.pop("return_unused_kwargs", False)
    opts = take_options(kwargs, CONFIG_OPTIONS)
    path_or_id = local_path(path_or_id, opts.get("subfolder"))
    path = resolve_config_file(path_or_id, **{k: opts[k] for k in HUB_OPTIONS if k in opts})
    data = read_config_dict(path)
    config = choose(data, path).from_dict(data)
    unused = {k: kwargs.pop(k) for k in config.unknown_keys(kwargs)} if return_unused else {}
    config.update_from_kwargs(kwargs)
    config._name_or_path = str(path_or_id)
    return (config, unused) if return_unused else config


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
