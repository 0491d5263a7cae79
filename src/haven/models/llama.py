"""Llama and Mistral: RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU MLP.

Mistral is Llama plus sliding-window attention (`sliding_window`, null = off), so both live
here: `MistralConfig` only changes defaults, and the Mistral classes are the Llama ones with
another config class. Module names match the checkpoint (`model.layers.0.self_attn.q_proj.weight`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError
from ..generation.mixin import GenerationMixin
from ..layers import (
    KVCache,
    RMSNorm,
    RotaryEmbedding,
    attention,
    decoder_mask,
    decoder_positions,
    get_activation,
    rope_parameters,
    rotate,
)
from ..linear import Linear
from ..linear.project import project
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


class LlamaConfig(PretrainedConfig):
    model_type = "llama"
    defaults = {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "head_dim": None,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "use_cache": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "rope_parameters": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads "
                f"({self.num_key_value_heads}); fix config.json"
            )


class MistralConfig(LlamaConfig):
    model_type = "mistral"
    defaults = {
        "intermediate_size": 14336,
        "num_key_value_heads": 8,
        "max_position_embeddings": 4096 * 32,
        "sliding_window": 4096,
    }


# -- modules ---------------------------------------------------------------------------------------


class LlamaAttention(nn.Module):
    projected_together = (("q_proj", "k_proj", "v_proj"),)  # one matrix once optimized for inference

    def __init__(self, config: LlamaConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        bias = config.attention_bias
        self.q_proj = Linear(config.hidden_size, self.n_head * self.head_dim, bias=bias)
        self.k_proj = Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.v_proj = Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.o_proj = Linear(self.n_head * self.head_dim, config.hidden_size, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
        want_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = x.shape
        nh, nkv = self.n_head, self.n_kv
        q, k, v = project(x, self.q_proj, self.k_proj, self.v_proj)
        q = q.view(B, T, nh, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, nkv, past + T, hs)
        dropout = self.dropout if self.training else 0.0
        if want_weights:
            y, weights = attention(
                q, k, v, mask, is_causal=is_causal, scale=self.scale, dropout=dropout, return_weights=True
            )
        else:
            weights = None
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout,
                is_causal=is_causal,
                scale=self.scale,
                enable_gqa=self.n_kv != self.n_head,
            )
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, nh * hs)
        return self.o_proj(y), weights


class LlamaMLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x))."""

    projected_together = (("gate_proj", "up_proj"),)  # one matrix once optimized for inference

    def __init__(self, config: LlamaConfig):
        super().__init__()
        h, i, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = Linear(h, i, bias=bias)
        self.up_proj = Linear(h, i, bias=bias)
        self.down_proj = Linear(i, h, bias=bias)
        self.act = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = project(x, self.gate_proj, self.up_proj)
        return self.down_proj(self.act(gate) * up)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, rope, mask, is_causal, cache, want_weights=False):
        a, weights = self.self_attn(self.input_layernorm(x), rope, mask, is_causal, cache, want_weights)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, weights


class LlamaPreTrainedModel(PreTrainedModel):
    config_class = LlamaConfig
    base_model_prefix = "model"
    prepack_weights = False  # a packed copy of every matrix would double the resident weights
    store_weights_in_out = True  # decode steps: every matrix re-laid (in, out), q/k/v and gate/up joined
    _ignore_unexpected = [r"rotary_emb\.inv_freq$"]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        else:
            super()._init_weights(module)


class LlamaModel(LayerLoop, LlamaPreTrainedModel):
    """The decoder stack; returns the final normed hidden states."""

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = RotaryEmbedding(
            config.head_dim, rope_parameters(config), config.max_position_embeddings
        )
        self.sliding_window = getattr(config, "sliding_window", None)  # Mistral (null = off)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

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
        flags = decoder_flags(self, use_cache, output_hidden_states, output_attentions)
        B, T, past, cache = check_inputs(
            input_ids, inputs_embeds, attention_mask, cache_argument(cache, kwargs), flags[0]
        )
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        known_max = None
        if position_ids is None:
            position_ids = decoder_positions(attention_mask, past, T, B, x.device)
            known_max = past + T
        rope = self.rotary(position_ids, x.dtype, known_max)
        mask, is_causal = decoder_mask(
            attention_mask, T, past, batch_size=B, device=x.device, sliding_window=self.sliding_window
        )
        return run_stack(
            self, self.layers, self.norm, x, (rope, mask, is_causal, cache), cache, flags, return_dict
        )


class LlamaForCausalLM(CausalLMHead, GenerationMixin, LlamaPreTrainedModel):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    base_model_class = LlamaModel

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head


class LlamaForSequenceClassification(LastTokenClassifierHead, LlamaPreTrainedModel):
    """Scores the last non-padding token (as the reference does: the last token that is not pad)."""

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = self.base_model_class(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    base_model_class = LlamaModel



# Mistral: the same network with its own config class (defaults, sliding window).


class MistralPreTrainedModel(LlamaPreTrainedModel):
    config_class = MistralConfig


class MistralModel(LlamaModel):
    config_class = MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig
    base_model_class = MistralModel


class MistralForSequenceClassification(LlamaForSequenceClassification):
    config_class = MistralConfig
    base_model_class = MistralModel


AUTO = {
    "llama": {
        "config": LlamaConfig,
        "model": LlamaModel,
        "causal-lm": LlamaForCausalLM,
        "sequence-classification": LlamaForSequenceClassification,
    },
    "mistral": {
        "config": MistralConfig,
        "model": MistralModel,
        "causal-lm": MistralForCausalLM,
        "sequence-classification": MistralForSequenceClassification,
    },
}
