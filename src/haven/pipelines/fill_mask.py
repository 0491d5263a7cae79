"""fill-mask: the most likely tokens for each mask token of a text.

fill = pipeline("fill-mask", model=path)
fill("Paris is the [MASK] of France.")             # [{"score", "token", "token_str", "sequence"}, ...]
fill("a [MASK] and a [MASK]", top_k=2)             # one list per mask
fill("the [MASK] sat", targets=["cat", "dog"])     # scores restricted to these tokens
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch

from ..errors import PipelineError
from .base import Pipeline

logger = logging.getLogger(__name__)


class FillMaskPipeline(Pipeline):
    task = "fill-mask"

    def __init__(self, model: Any, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        # Haven's masked-LM heads compute logits at chosen positions only (`logits_at`): the
        # hidden x vocabulary matmul, and the last layer, run on the mask tokens alone.
        self._logits_at = getattr(model, "logits_at", None)
        self._logits_at_args = set(inspect.signature(self._logits_at).parameters) if self._logits_at else set()

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        targets: str | list[str] | None = None,
        tokenizer_kwargs: dict | None = None,
    ) -> tuple[dict, dict, dict]:
        if getattr(self.tokenizer, "mask_token_id", None) is None:
            raise PipelineError("the tokenizer defines no mask_token, so fill-mask has nothing to fill")
        pre = {"tokenizer_kwargs": tokenizer_kwargs} if tokenizer_kwargs else {}
        post: dict[str, Any] = {}
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise PipelineError(f"top_k must be a positive integer, got {top_k!r}")
            post["top_k"] = top_k
        if targets is not None:
            post["target_ids"] = self.target_ids(targets)
        return pre, {}, post

    def target_ids(self, targets: str | list[str]) -> torch.Tensor:
        """Vocabulary ids of `targets`; a word not in the vocabulary stands for its first token (with a warning)."""
        if isinstance(targets, str):
            targets = [targets]
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            token_id = vocab.get(target)
            if token_id is None:
                pieces = self.tokenizer(
                    target,
                    add_special_tokens=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                    max_length=1,
                    truncation=True,
                )["input_ids"]
                if not pieces:
                    logger.warning(
                        "The target %r is not in the model vocabulary and encodes to nothing; ignoring it",
                        target,
                    )
                    continue
                token_id = pieces[0]
                logger.warning(
                    "The target %r is not in the model vocabulary; using its first token %r instead",
                    target,
                    self.tokenizer.convert_ids_to_tokens(token_id),
                )
            ids.append(token_id)
        ids = list(set(ids))
        if not ids:
            raise PipelineError(
                "none of the targets can be encoded; pass at least one word of the vocabulary"
            )
        return torch.tensor(ids, dtype=torch.long)

    # -- steps ------------------------------------------------------------------------------------

    def preprocess(self, inputs: str, tokenizer_kwargs: dict | None = None) -> dict[str, Any]:
        return self.preprocess_batch([inputs], tokenizer_kwargs=tokenizer_kwargs)[0]

    def preprocess_batch(
        self, inputs: list[str], tokenizer_kwargs: dict | None = None
    ) -> list[dict[str, Any]]:
        for text in inputs:
            if not isinstance(text, str):
                raise PipelineError(
                    f"fill-mask takes a string or a list of strings, got {type(text).__name__}"
                )
        enc = self.tokenizer(list(inputs), **(tokenizer_kwargs or {}))
        keys = [k for k in enc.keys()]
        mask_id = self.tokenizer.mask_token_id
        features = []
        for i, text in enumerate(inputs):
            f = {k: enc[k][i] for k in keys}
            if mask_id not in f["input_ids"]:
                raise PipelineError(
                    f"No mask_token ({self.tokenizer.mask_token}) found in the input {text!r}"
                )
            features.append(f)
        return features

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        is_mask = model_inputs["input_ids"] == self.tokenizer.mask_token_id  # (B, T)
        if self._logits_at is not None:
            inputs = {k: v for k, v in model_inputs.items() if k in self._logits_at_args}
            logits = self._logits_at(is_mask, **inputs)  # (masks in batch, V)
        else:
            logits = self.model_forward(model_inputs).logits[is_mask]  # (masks in batch, V)
        probs = logits.float().softmax(dim=-1)
        return list(probs.split(is_mask.sum(dim=1).tolist()))  # per row: (masks, V)

    def postprocess(
        self,
        features: dict[str, Any],
        probs: torch.Tensor,
        top_k: int = 5,
        target_ids: torch.Tensor | None = None,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        input_ids = list(features["input_ids"])
        mask_id = self.tokenizer.mask_token_id
        positions = [i for i, t in enumerate(input_ids) if t == mask_id]
        if target_ids is not None:
            probs = probs[:, target_ids]
        values, indices = probs.topk(min(top_k, probs.shape[-1]))
        single = len(positions) == 1
        decode = self.tokenizer.decode
        pad = self.tokenizer.pad_token_id
        results = []
        for pos, row_values, row_ids in zip(positions, values.tolist(), indices.tolist()):
            row = []
            for score, token in zip(row_values, row_ids):
                if target_ids is not None:
                    token = int(target_ids[token])
                tokens = input_ids.copy()
                tokens[pos] = token
                if pad is not None:
                    tokens = [t for t in tokens if t != pad]
                row.append(
                    {
                        "score": score,
                        "token": token,
                        "token_str": decode([token]),
                        "sequence": decode(tokens, skip_special_tokens=single),
                    }
                )
            results.append(row)
        return results[0] if single else results

    def wrap_output(
        self, inputs: Any, results: list[Any], batched: bool, call_kwargs: dict[str, Any]
    ) -> Any:
        if batched and len(results) == 1:
            return results[0]
        return results if batched else results[0]
