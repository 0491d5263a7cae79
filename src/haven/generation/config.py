"""GenerationConfig: the knobs of `generate()`, read from and written to `generation_config.json`.

Field names are the reference library's. As in the reference, a fresh config leaves every field
unset (None); `generate()` fills what is still unset from the model's own generation config and
then from `DEFAULTS`, so it can tell "the user asked for 20" from "nobody said anything".
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from ..errors import GenerationError

GENERATION_CONFIG_NAME = "generation_config.json"

# Applied at generate time to whatever neither the caller nor the model's config set.
DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "use_cache": True,
    "early_stopping": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "output_scores": False,
    "output_logits": False,
    "return_dict_in_generate": False,
}

# Every field a GenerationConfig knows. Unknown keys found in a file are kept as attributes too.
FIELDS: tuple[str, ...] = (
    # length
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "early_stopping",
    "max_time",
    "stop_strings",
    # strategy
    "do_sample",
    "num_beams",
    "use_cache",
    # logits manipulation
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "bad_words_ids",
    # outputs
    "num_return_sequences",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
    # special tokens
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)

# Keys that describe a file rather than generation; not kept as attributes.
_METADATA = {"transformers_version", "_from_model_config", "_commit_hash", "haven_version"}


class GenerationConfig:
    """How `generate()` decodes: length limits, strategy, sampling filters, outputs, special ids.

    `GenerationConfig(max_new_tokens=50, do_sample=True, top_p=0.9)`; fields left out stay None
    and are filled from the model's `generation_config.json`, then from `DEFAULTS`.
    """

    def __init__(self, **kwargs: Any) -> None:
        for name in FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        for key in _METADATA:
            kwargs.pop(key, None)
        for key, value in kwargs.items():  # unknown keys survive a load/save round trip
            setattr(self, key, value)

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> GenerationConfig:
        return cls(**{**copy.deepcopy(data), **overrides})

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, **hub_kwargs: Any) -> GenerationConfig:
        """Read `generation_config.json` from a model directory, a file path or a hub repository."""
        path = os.fspath(path_or_id)
        if not os.path.isfile(path):
            from ..hub import resolve_file

            path = resolve_file(path_or_id, GENERATION_CONFIG_NAME, **hub_kwargs)
        return cls.from_json_file(path)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> GenerationConfig:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise GenerationError(f"{os.fspath(path)} is not valid JSON ({err}); fix or delete the file") from None
        if not isinstance(data, dict):
            raise GenerationError(f"{os.fspath(path)} must hold a JSON object of generation settings")
        return cls.from_dict(data)

    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        """Derive a generation config from a model config: its special token ids (and any field it sets)."""
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        known = {k: v for k, v in data.items() if k in FIELDS and v is not None}
        return cls(**known)

    # -- serialisation --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}

    def to_diff_dict(self) -> dict[str, Any]:
        """Only the fields that are set (what `generation_config.json` stores)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    def to_json_string(self) -> str:
        from .. import __version__

        return json.dumps({**self.to_diff_dict(), "haven_version": __version__}, indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike, config_file_name: str | None = None) -> str:
        """Write `generation_config.json` into `save_directory`; returns the file's path."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, config_file_name or GENERATION_CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())
        return path

    # -- merging --------------------------------------------------------------------------------------

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the given fields (those that are GenerationConfig fields or already attributes).

        Returns the keyword arguments that were not generation settings (model inputs).
        """
        unused = {}
        for key, value in kwargs.items():
            if key in FIELDS or key in self.__dict__:
                setattr(self, key, value)
            else:
                unused[key] = value
        return unused

    def fill_unset(self, other: GenerationConfig | dict[str, Any]) -> None:
        """Copy `other`'s values into the fields that are still None here."""
        items = other.to_dict() if isinstance(other, GenerationConfig) else other
        for key, value in items.items():
            if getattr(self, key, None) is None and value is not None:
                setattr(self, key, copy.deepcopy(value))

    def copy(self) -> GenerationConfig:
        return copy.deepcopy(self)

    @property
    def eos_token_ids(self) -> list[int]:
        """`eos_token_id` as a list (it may be stored as one int or a list)."""
        eos = self.eos_token_id
        if eos is None:
            return []
        return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]

    # -- validation -----------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise GenerationError for values generate() cannot honour. Call after filling defaults."""
        if self.max_new_tokens is not None and (not isinstance(self.max_new_tokens, int) or self.max_new_tokens <= 0):
            raise GenerationError(
                f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}; "
                "ask for at least one new token (e.g. max_new_tokens=20)"
            )
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length <= 0):
            raise GenerationError(f"max_length must be a positive integer, got {self.max_length!r}")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise GenerationError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        n = self.num_return_sequences
        if not isinstance(n, int) or n < 1:
            raise GenerationError(f"num_return_sequences must be an integer >= 1, got {n!r}")
        if self.num_beams > 1 and n > self.num_beams:
            raise GenerationError(
                f"num_return_sequences ({n}) cannot exceed num_beams ({self.num_beams}): beam search keeps only "
                f"num_beams hypotheses; raise num_beams to at least {n} or lower num_return_sequences"
            )
        if self.num_beams == 1 and n > 1 and not self.do_sample:
            raise GenerationError(
                f"greedy search returns one sequence per prompt, but num_return_sequences={n}; "
                "pass do_sample=True (different samples) or num_beams >= num_return_sequences (beam search)"
            )
        if self.do_sample:
            t = self.temperature
            if t is not None and (not isinstance(t, (int, float)) or t <= 0):
                raise GenerationError(
                    f"temperature must be a positive number when sampling, got {t!r}; "
                    "for greedy decoding pass do_sample=False instead"
                )
            if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
                raise GenerationError(f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}")
            if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
                raise GenerationError(f"top_p must be in [0, 1], got {self.top_p!r}")
            if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
                raise GenerationError(f"min_p must be in [0, 1], got {self.min_p!r}")
            if self.typical_p is not None and not 0.0 < self.typical_p <= 1.0:
                raise GenerationError(f"typical_p must be in (0, 1], got {self.typical_p!r}")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise GenerationError(f"repetition_penalty must be > 0 (1.0 disables it), got {self.repetition_penalty!r}")
        if self.early_stopping not in (True, False, "never", None):
            raise GenerationError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if self.bad_words_ids is not None and (
            not isinstance(self.bad_words_ids, list)
            or not all(isinstance(w, list) and w and all(isinstance(t, int) and t >= 0 for t in w)
                       for w in self.bad_words_ids)
        ):
            raise GenerationError(
                "bad_words_ids must be a list of non-empty lists of token ids, e.g. "
                "tokenizer(['word'], add_special_tokens=False).input_ids"
            )
        if isinstance(self.stop_strings, str):
            self.stop_strings = [self.stop_strings]

    # -- dunder ---------------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_diff_dict() == other.to_diff_dict()

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"GenerationConfig {json.dumps(self.to_diff_dict(), indent=2, sort_keys=True, default=str)}"
