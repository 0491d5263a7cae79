"""GPT-2: learned positions, pre-norm blocks, Conv1D projections stored (in, out), tied LM head.

Module names match the checkpoint (`transformer.h.0.attn.c_attn.weight`); checkpoints saved
without the `transformer.` prefix (the original `gpt2` files) load too, and old files' causal
mask buffers (`attn.bias`, `attn.masked_bias`) are ignored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError, InputTooLongError
from ..generation.mixin import GenerationMixin
from ..layers import KVCache, attention, decoder_mask, decoder_positions, get_activation
from ..linear import Linear
from ..linear.dense import Prepackable, bf16_product, in_out_mm, in_out_product
from ..modeling import LayerLoop, PreTrainedModel
from ..outputs import BaseModelOutput
from ._decoder import (
    CausalLMHead,
    LastTokenClassifierHead,
    cache_argument,
    check_inputs,
    decoder_flags,
    run_stack,
)


class GPT2Config(PretrainedConfig):
    model_type = "gpt2"
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }
    defaults = {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "scale_attn_weights": True,
        "use_cache": True,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head}); fix config.json"
            )


class Conv1D(Prepackable, nn.Module):
    """A linear layer whose weight is stored (in, out), as GPT-2 checkpoints have it: x @ W + b.
    2 to 8 rows run the few-row kernel (`in_out_product`; in bfloat16 `bf16_product`, from one
    row); more rows use a prepacked copy once it is on (`Prepackable`); one row and the rest a
    GEMM."""

    PACKED_ROWS = (2, 512)  # an (in, out) weight is slow to multiply from two rows on

    def __init__(self, n_out: int, n_in: int):
        super().__init__()
        self.in_features = n_in
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def out_in_weight(self) -> torch.Tensor:
        return self.weight.t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        out = bf16_product(x, w.t(), self.bias) if w.dtype == torch.bfloat16 else in_out_product(x, w, self.bias)
        if out is None and self.prepacked:
            out = self.packed_product(x)
        return in_out_mm(x, self.weight, self.bias) if out is None else out


class GPT2Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.head_dim = config.n_embd // config.n_head
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.upcast = config.reorder_and_upcast_attn
        self.dropout = config.attn_pdrop
        self.c_attn = Conv1D(3 * config.n_embd, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
        want_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = x.shape
        q, k, v = (
            self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        )  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, nh, past + T, hs)
        dropout = self.dropout if self.training else 0.0
        if self.upcast and q.dtype != torch.float32:
            y, weights = self._upcast_attention(q, k, v, mask, is_causal, dropout)
        else:
            y, weights = attention(
                q,
                k,
                v,
                mask,
                is_causal=is_causal,
                scale=self.scale,
                dropout=dropout,
                return_weights=want_weights,
            )
        y = self.c_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)
        return (self.resid_dropout(y) if self.training else y), weights

    def _upcast_attention(self, q, k, v, mask, is_causal, dropout):
        """`reorder_and_upcast_attn`: scores and softmax in float32, whatever the model dtype
        (autocast off, or it would run the product in its lower dtype again)."""
        with torch.autocast(q.device.type, enabled=False):
            scores = (q.float() @ k.float().transpose(-2, -1)) * self.scale  # (B, nh, T, S)
            if is_causal and mask is None:
                t, s = q.shape[-2], k.shape[-2]
                mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
            weights = scores.softmax(-1).to(v.dtype)
            if dropout:
                weights = F.dropout(weights, p=dropout)
            return weights @ v, weights


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)
        self.act = get_activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c_proj(self.act(self.c_fc(x)))
        return self.dropout(y) if self.training else y


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x, mask, is_causal, cache, want_weights=False):
        a, weights = self.attn(self.ln_1(x), mask, is_causal, cache, want_weights)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class GPT2PreTrainedModel(PreTrainedModel):
    config_class = GPT2Config
    base_model_prefix = "transformer"
    prepack_weights = False  # a packed copy of every matrix would double the resident weights
    store_weights_in_out = True  # decode steps: the output layer (the tied wte) re-laid (in, out), as the blocks are
    _ignore_unexpected = [r"(^|\.)attn\.masked_bias$", r"(^|\.)attn\.bias$"]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, Conv1D):
            nn.init.normal_(module.weight, 0.0, self.config.initializer_range)
            nn.init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class GPT2Model(LayerLoop, GPT2PreTrainedModel):
    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.wte

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput | tuple:
        cfg = self.config
        flags = decoder_flags(self, use_cache, output_hidden_states, output_attentions)
        B, T, past, cache = check_inputs(
            input_ids, inputs_embeds, attention_mask, cache_argument(cache, kwargs), flags[0]
        )
        if past + T > cfg.n_positions:
            raise InputTooLongError(
                f"{past + T} tokens ({past} cached + {T} new) exceed this GPT-2's context window of "
                f"{cfg.n_positions} positions (n_positions); truncate the prompt or lower max_new_tokens"
            )
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        if position_ids is None:
            position_ids = decoder_positions(attention_mask, past, T, B, x.device)
        x = x + self.wpe(position_ids)
        if self.training:
            x = self.drop(x)
        mask, is_causal = decoder_mask(attention_mask, T, past, batch_size=B, device=x.device)
        return run_stack(
            self, self.h, self.ln_f, x, (mask, is_causal, cache), cache, flags, return_dict
        )


class GPT2LMHeadModel(CausalLMHead, GenerationMixin, GPT2PreTrainedModel):
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.transformer.wte

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head


class GPT2ForSequenceClassification(LastTokenClassifierHead, GPT2PreTrainedModel):
    """Scores the last non-padding token, as the reference does."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        self.post_init()


AUTO = {
    "gpt2": {
        "config": GPT2Config,
        "model": GPT2Model,
        "causal-lm": GPT2LMHeadModel,
        "sequence-classification": GPT2ForSequenceClassification,
    }
}
