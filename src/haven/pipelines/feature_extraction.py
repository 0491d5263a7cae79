"""feature-extraction: the model's last hidden states, one vector per token.

fe = pipeline("feature-extraction", model=path)
fe("a text")                          # nested lists, shape (1, tokens, hidden)
fe("a text", return_tensors=True)     # a torch tensor (1, tokens, hidden)
fe(["a", "b c"], truncation=True)     # one entry per text, each with its own length
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import PipelineError
from .base import Pipeline


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"

    def _sanitize_parameters(
        self,
        truncation: bool | str | None = None,
        tokenize_kwargs: dict | None = None,
        return_tensors: bool | None = None,
    ) -> tuple[dict, dict, dict]:
        pre = dict(tokenize_kwargs or {})
        if truncation is not None:
            if "truncation" in pre:
                raise PipelineError(
                    "truncation is given twice: as an argument and inside tokenize_kwargs; keep one"
                )
            pre["truncation"] = truncation
        post = {"return_tensors": return_tensors} if return_tensors is not None else {}
        return pre, {}, post

    def preprocess(self, inputs: str, **tokenize_kwargs: Any) -> dict[str, Any]:
        return self.preprocess_batch([inputs], **tokenize_kwargs)[0]

    def preprocess_batch(self, inputs: list[str], **tokenize_kwargs: Any) -> list[dict[str, Any]]:
        for text in inputs:
            if not isinstance(text, str):
                raise PipelineError(
                    f"feature-extraction takes a string or a list of strings, got {type(text).__name__}"
                )
        enc = self.tokenizer(list(inputs), **tokenize_kwargs)
        return [{k: v[i] for k, v in enc.items()} for i in range(len(inputs))]

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        hidden = self.model_forward(model_inputs)[0]  # (B, T, H)
        return [hidden[row, :n].unsqueeze(0) for row, n in enumerate(self.row_lengths(model_inputs))]

    def postprocess(
        self, features: dict[str, Any], hidden: torch.Tensor, return_tensors: bool = False
    ) -> Any:
        if return_tensors:
            return hidden.clone()
        return hidden.tolist()
