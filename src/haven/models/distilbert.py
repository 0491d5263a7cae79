"""DistilBERT: config, encoder and task heads.

Tensor names follow the reference checkpoints (`distilbert.transformer.layer.0.attention.q_lin.weight`,
`vocab_projector.weight`). DistilBERT has no token types and no pooler; the sequence classifier
reads the first token through `pre_classifier` + ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..layers import attention, get_activation, padding_mask
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput, TokenClassifierOutput
from .bert import (
    check_length,
    finish,
    input_shape,
    masked_lm_loss,
    resolve_flags,
    sequence_classification_loss,
    token_classification_loss,
)
from .packing import Packed, first_token_states, packed_attention, selected_states


class DistilBertConfig(PretrainedConfig):
    model_type = "distilbert"
    attribute_map = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}
    defaults = {
        "vocab_size": 30522,
        "max_position_embeddings": 512,
        "sinusoidal_pos_embds": False,
        "n_layers": 6,
        "n_heads": 12,
        "dim": 768,
        "hidden_dim": 4 * 768,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation": "gelu",
        "initializer_range": 0.02,
        "qa_dropout": 0.1,
        "seq_classif_dropout": 0.2,
        "pad_token_id": 0,
        "eos_token_id": None,
        "bos_token_id": None,
        "tie_word_embeddings": True,
    }


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """(n_pos, dim) fixed positions: sin on even columns, cos on odd, as the original Transformer."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    freq = torch.pow(10000.0, 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)
    angle = pos / freq  # (n_pos, dim)
    table = torch.empty(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()


class Embeddings(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)
        self.config = config

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _, seq_len = input_shape(input_ids, inputs_embeds)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, C)
        if position_ids is None:
            check_length(seq_len, self.config.max_position_embeddings, self.config)
            pos = self.position_embeddings.weight[:seq_len]  # (T, C)
        else:
            check_length(int(position_ids.max()) + 1, self.config.max_position_embeddings, self.config)
            pos = self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(inputs_embeds + pos))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        if config.dim % config.n_heads:
            raise ValueError(f"n_heads ({config.n_heads}) must divide dim ({config.dim})")
        self.n_heads = config.n_heads
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        self.dropout_p = config.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        first_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`first_only`: queries for the first token only (all keys/values), output (B, 1, C)."""
        B, T, C = x.shape
        nh = self.n_heads
        Tq = 1 if first_only else T
        q = self.q_lin(x[:, :Tq]).view(B, Tq, nh, C // nh).transpose(1, 2)  # (B, nh, Tq, hs)
        k = self.k_lin(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v_lin(x).view(B, T, nh, C // nh).transpose(1, 2)
        dropout = self.dropout_p if self.training else 0.0
        y, weights = attention(q, k, v, mask, dropout=dropout, return_weights=output_attentions)
        return self.out_lin(y.transpose(1, 2).reshape(B, Tq, C)), weights  # (B, Tq, C)


class FFN(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.act = get_activation(config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.lin2(self.act(self.lin1(x))))


class TransformerBlock(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        first_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, weights = self.attention(x, mask, output_attentions, first_only)
        x = self.sa_layer_norm(y + (x[:, :1] if first_only else x))
        return self.output_layer_norm(self.ffn(x) + x), weights

    def forward_packed(
        self,
        h: torch.Tensor,
        p: Packed,
        rows: torch.Tensor | None = None,
        row_batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The block on packed rows (N, C) of real tokens; only `rows` of them if given (M, C)."""
        sa = self.attention
        dropout = sa.dropout_p if self.training else 0.0
        y, h = packed_attention(p, h, sa.q_lin, sa.k_lin, sa.v_lin, sa.n_heads, rows, row_batch, dropout)
        x = self.sa_layer_norm(sa.out_lin(y) + h)
        return self.output_layer_norm(self.ffn(x) + x)


class Transformer(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        first_token_only: bool = False,
    ) -> BaseModelOutput:
        """`first_token_only`: the last layer computes the first position only (what the
        sequence classifier reads)."""
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        last = len(self.layer) - 1
        for i, layer in enumerate(self.layer):
            x, weights = layer(x, mask, output_attentions, first_token_only and i == last)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None:
                attentions.append(weights)
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )


class DistilBertPreTrainedModel(PreTrainedModel):
    config_class = DistilBertConfig
    base_model_prefix = "distilbert"
    _ignore_unexpected = [r"embeddings\.position_ids$"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Embeddings) and self.config.sinusoidal_pos_embds:
            with torch.no_grad():
                weight = module.position_embeddings.weight
                weight.copy_(sinusoidal_table(weight.shape[0], weight.shape[1]).to(weight.dtype))


class DistilBertModel(DistilBertPreTrainedModel):
    """The bare encoder: `last_hidden_state` (DistilBERT has no pooler)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # accepted for uniform call sites; DistilBERT has none
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        hidden, attn, return_dict = resolve_flags(
            self.config, output_hidden_states, output_attentions, return_dict
        )
        x = self.embeddings(input_ids, inputs_embeds, position_ids)  # (B, T, C)
        return finish(self.transformer(x, padding_mask(attention_mask), hidden, attn), return_dict)


class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    _tied_weights_keys = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.act = get_activation(config.activation)
        self.distilbert = DistilBertModel(config)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.distilbert.embeddings.word_embeddings

    def get_output_embeddings(self) -> nn.Module:
        return self.vocab_projector

    def logits_at(
        self,
        select: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(M, V) logits at the positions where `select` (B, T) is True (say the [MASK] tokens):
        `forward(...).logits[select]`, without computing padding or the other positions' heads."""
        x = self.distilbert.embeddings(input_ids, inputs_embeds, position_ids)  # (B, T, C)
        h = selected_states(self.distilbert.transformer, x, attention_mask, select)  # (M, C)
        return self.vocab_projector(self.vocab_layer_norm(self.act(self.vocab_transform(h))))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> MaskedLMOutput | tuple:
        _, _, return_dict = resolve_flags(self.config, None, None, return_dict)
        out = self.distilbert(
            input_ids, attention_mask, None, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        x = self.vocab_layer_norm(self.act(self.vocab_transform(out.last_hidden_state)))
        logits = self.vocab_projector(x)  # (B, T, V)
        loss = masked_lm_loss(logits, labels) if labels is not None else None
        return finish(MaskedLMOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


class DistilBertForSequenceClassification(DistilBertPreTrainedModel):
    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.distilbert.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        hidden, attn, return_dict = resolve_flags(
            self.config, output_hidden_states, output_attentions, return_dict
        )
        distilbert = self.distilbert
        x = distilbert.embeddings(input_ids, inputs_embeds, position_ids)  # (B, T, C)
        if hidden or attn:
            out = distilbert.transformer(x, padding_mask(attention_mask), hidden, attn)
            first = out.last_hidden_state[:, 0]
        else:  # the classifier reads the first token only: compute just what it needs
            out = BaseModelOutput()
            first = first_token_states(distilbert.transformer, x, attention_mask)  # (B, C)
        pooled = F.relu(self.pre_classifier(first))  # (B, C)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return finish(SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


class DistilBertForTokenClassification(DistilBertPreTrainedModel):
    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = DistilBertModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.distilbert.embeddings.word_embeddings

    def logits_at(
        self,
        select: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(M, num_labels) logits at the positions where `select` (B, T) is True (say all real
        tokens, `attention_mask.bool()`): `forward(...).logits[select]`, skipping padding."""
        x = self.distilbert.embeddings(input_ids, inputs_embeds, position_ids)  # (B, T, C)
        return self.classifier(selected_states(self.distilbert.transformer, x, attention_mask, select))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> TokenClassifierOutput | tuple:
        _, _, return_dict = resolve_flags(self.config, None, None, return_dict)
        out = self.distilbert(
            input_ids, attention_mask, None, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = token_classification_loss(logits, labels) if labels is not None else None
        return finish(TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


AUTO = {
    "distilbert": {
        "config": DistilBertConfig,
        "model": DistilBertModel,
        "masked-lm": DistilBertForMaskedLM,
        "sequence-classification": DistilBertForSequenceClassification,
        "token-classification": DistilBertForTokenClassification,
    }
}
