"""Helpers shared by the decoder families (gpt2, llama/mistral): input checks, heads, losses.

The two task heads (`CausalLMHead`, `LastTokenClassifierHead`) are mixins: each family's head
class holds its decoder under `base_model_prefix` (`transformer` for GPT-2, `model` for Llama)
and its linear layer under the checkpoint's name (`lm_head`, `score`), so one forward serves both.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from ..config import PretrainedConfig
from ..layers import KVCache, cache_argument
from ..outputs import BaseModelOutput, CausalLMOutput, SequenceClassifierOutput

logger = logging.getLogger(__name__)


def decoder_flags(
    model: torch.nn.Module, use_cache: bool | None, hidden: bool | None, attentions: bool | None
) -> tuple[bool, bool, bool]:
    """(use_cache, want hidden states, want attention weights): call values, else the config's;
    the cache is off while training unless asked for, and always while layers are checkpointed
    (turned off with a warning, as the reference does)."""
    cfg = model.config
    if use_cache and model.checkpointing:
        logger.warning("use_cache=True is incompatible with gradient checkpointing while training; using use_cache=False")
        use_cache = False
    return (
        (cfg.use_cache and not model.training) if use_cache is None else use_cache,
        cfg.output_hidden_states if hidden is None else hidden,
        cfg.output_attentions if attentions is None else attentions,
    )


def run_stack(
    model: torch.nn.Module,
    blocks: torch.nn.ModuleList,
    norm: torch.nn.Module,
    x: torch.Tensor,
    block_args: tuple,
    cache: KVCache | None,
    flags: tuple[bool, bool, bool],
    return_dict: bool | None,
) -> BaseModelOutput | tuple:
    """Run the blocks (`block(x, *block_args, want_weights)`), advance the cache by the new
    tokens, apply the final norm and package what was asked for."""
    use_cache, want_hidden, want_weights = flags
    hidden, weights = [], []
    if cache is not None and model.checkpointing:
        raise ValueError(
            "gradient checkpointing recomputes each block in the backward pass, so it cannot write a KV cache: "
            "pass no cache while training, or call model.eval() / gradient_checkpointing_disable()"
        )
    for block in blocks:
        if want_hidden:
            hidden.append(x)
        x, w = model.call_layer(block, x, *block_args, want_weights)
        if want_weights:
            weights.append(w)
    if cache is not None:
        cache.advance(x.shape[1])
    x = norm(x)
    if want_hidden:
        hidden.append(x)
    out = BaseModelOutput(
        last_hidden_state=x,
        cache=cache if use_cache else None,
        hidden_states=tuple(hidden) if want_hidden else None,
        attentions=tuple(weights) if want_weights else None,
    )
    return out if (model.config.return_dict if return_dict is None else return_dict) else out.to_tuple()


def check_inputs(
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    cache: KVCache | None,
    use_cache: bool,
) -> tuple[int, int, int, KVCache | None]:
    """Validate a decoder call; returns (batch, new tokens, cached tokens, the cache to write)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    B, T = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
    if cache is not None and not isinstance(cache, KVCache):
        raise TypeError(
            f"cache must be a haven.layers.KVCache (got {type(cache).__name__}); "
            "pass the `cache` a previous call returned, or None"
        )
    cache = cache if cache is not None else (KVCache() if use_cache else None)
    if cache is not None:
        cache.check_batch(B)
    past = cache.length if cache is not None else 0
    if attention_mask is not None and tuple(attention_mask.shape) != (B, past + T):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but must cover the cached and the new "
            f"tokens: ({B}, {past + T}) = (batch, {past} cached + {T} new)"
        )
    return B, T, past, cache


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


class CausalLMHead:
    """forward() of a causal LM: the decoder, the LM head on the kept positions, the shifted loss."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutput | tuple:
        base = getattr(self, self.base_model_prefix)(
            input_ids,
            attention_mask,
            position_ids,
            cache_argument(cache, kwargs),
            inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.lm_head(slice_last(base.last_hidden_state, logits_to_keep))  # (B, T', V)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        out = CausalLMOutput(
            loss=loss,
            logits=logits,
            cache=base.cache,
            hidden_states=base.hidden_states,
            attentions=base.attentions,
        )
        return out if (self.config.return_dict if return_dict is None else return_dict) else out.to_tuple()


class LastTokenClassifierHead:
    """forward() of a sequence classifier scoring each row's last non-padding token, as the
    reference does (a decoder's last token is the only one that has seen the whole text)."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple:
        base = getattr(self, self.base_model_prefix)(
            input_ids,
            attention_mask,
            position_ids,
            cache_argument(cache, kwargs),
            inputs_embeds,
            use_cache=False,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.score(base.last_hidden_state)  # (B, T, L)
        idx = last_token_index(input_ids, self.config.pad_token_id, logits.shape[1], logits.device)
        pooled = logits[torch.arange(logits.shape[0], device=logits.device), idx]  # (B, L)
        loss = classification_loss(self.config, pooled, labels) if labels is not None else None
        out = SequenceClassifierOutput(
            loss=loss, logits=pooled, hidden_states=base.hidden_states, attentions=base.attentions
        )
        return out if (self.config.return_dict if return_dict is None else return_dict) else out.to_tuple()
