"""Helpers shared by the decoder families (gpt2, llama/mistral): input checks, heads, losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import PretrainedConfig
from ..layers import KVCache


def check_inputs(
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    past_key_values: KVCache | None,
    use_cache: bool,
) -> tuple[int, int, int, KVCache | None]:
    """Validate a decoder call; returns (batch, new tokens, cached tokens, the cache to write)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    B, T = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
    if past_key_values is not None and not isinstance(past_key_values, KVCache):
        raise TypeError(
            f"past_key_values must be a haven.layers.KVCache (got {type(past_key_values).__name__}); "
            "pass the `past_key_values` a previous call returned, or None"
        )
    cache = past_key_values if past_key_values is not None else (KVCache() if use_cache else None)
    if cache is not None:
        _match_batch(cache, B)
    past = cache.length if cache is not None else 0
    if attention_mask is not None and tuple(attention_mask.shape) != (B, past + T):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but must cover the cached and the new "
            f"tokens: ({B}, {past + T}) = (batch, {past} cached + {T} new)"
        )
    return B, T, past, cache


def _match_batch(cache: KVCache, batch: int) -> None:
    """A cache holds rows for one batch size: an empty one (new, or `crop(0)`) is re-sized, a
    filled one with another batch size is refused (its buffers would otherwise broadcast or fail
    deep inside attention with a bare shape error)."""
    held = next((k.shape[0] for k in cache.keys if k.dim() == 4), batch)
    if held == batch:
        return
    if cache.length == 0:
        cache.keys.clear()
        cache.values.clear()
        return
    raise ValueError(
        f"past_key_values holds {cache.length} cached tokens for a batch of {held} but this call has a "
        f"batch of {batch}; pass the same rows as the call that filled it, or a new cache (None)"
    )


def slice_last(hidden: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """The positions the LM head should see: all (0), the last N (int), or given indices (tensor)."""
    if isinstance(logits_to_keep, int):
        return hidden if logits_to_keep == 0 else hidden[:, -logits_to_keep:]
    return hidden[:, logits_to_keep]


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: position t predicts labels[t + 1]; -100 is ignored."""
    labels = labels.to(logits.device)
    shifted = F.pad(labels, (0, 1), value=-100)[:, 1:]  # (B, T)
    return F.cross_entropy(logits.float().flatten(0, 1), shifted.flatten(), ignore_index=-100)


def last_token_index(
    input_ids: torch.Tensor | None, pad_token_id: int | None, seq_len: int, device
) -> torch.Tensor:
    """Index of each row's last non-padding token (the last position when that cannot be known)."""
    if input_ids is None or pad_token_id is None:
        if input_ids is not None and input_ids.shape[0] > 1:
            raise ValueError(
                "cannot pick the last token of a batch without a padding token: set config.pad_token_id"
            )
        return torch.full((1 if input_ids is None else input_ids.shape[0],), seq_len - 1, device=device)
    keep = (input_ids != pad_token_id).int()
    return (torch.arange(seq_len, device=device) * keep).argmax(-1)


def classification_loss(config: PretrainedConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Regression (1 label), single-label or multi-label loss, as `problem_type` says or the labels imply."""
    kind = config.problem_type
    if kind is None:
        if config.num_labels == 1:
            kind = "regression"
        elif labels.dtype in (torch.long, torch.int):
            kind = "single_label_classification"
        else:
            kind = "multi_label_classification"
    if kind == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float().squeeze(-1))
    if kind == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.float())
