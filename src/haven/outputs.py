"""Model outputs: dataclasses that also behave like the reference library's ModelOutput.

`out.logits`, `out["logits"]`, `out[0]` (the first field that is not None), `out.to_tuple()`,
`dict(out)` and `**out` all work, so code written against the reference carries over. A decoder's
KV cache is the field `cache`, as in the reference since transformers 5.25; `out.past_key_values`,
its older name, still reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass
class ModelOutput:
    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: the cache's older name
        if name == "past_key_values" and "cache" in self.__dataclass_fields__:
            return self.cache
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


Tensor = torch.Tensor
Tensors = tuple[torch.Tensor, ...]


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    cache: Any = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    cache: Any = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
