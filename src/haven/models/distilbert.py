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
from ..layers import get_activation
from ..linear import Linear
from ..modeling import PreTrainedModel
from ._encoder import (
    EncoderModel,
    EncoderStack,
    MaskedLMHead,
    QuestionAnsweringHead,
    SequenceClassifierHead,
    TokenClassifierHead,
    absolute_positions,
    input_shape,
    self_attention,
)
from .packing import Packed, packed_attention


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
        token_type_ids: torch.Tensor | None = None,  # accepted for uniform call sites; DistilBERT has none
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _, seq_len = input_shape(input_ids, inputs_embeds)
        pos = absolute_positions(self.position_embeddings, seq_len, position_ids, self.config)  # (T|B,T, C)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, C)
        return self.dropout(self.LayerNorm(inputs_embeds + pos))


class MultiHeadSelfAttention(nn.Module):
    """q/k/v and output projections; `TransformerBlock` runs attention with them (padded or packed)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        if config.dim % config.n_heads:
            raise ValueError(f"n_heads ({config.n_heads}) must divide dim ({config.dim})")
        self.n_heads = config.n_heads
        self.q_lin = Linear(config.dim, config.dim)
        self.k_lin = Linear(config.dim, config.dim)
        self.v_lin = Linear(config.dim, config.dim)
        self.out_lin = Linear(config.dim, config.dim)
        self.dropout_p = config.attention_dropout


class FFN(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.lin1 = Linear(config.dim, config.hidden_dim)
        self.lin2 = Linear(config.hidden_dim, config.dim)
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
        """(B, Tq, C) and the attention weights; `first_only`: Tq = 1, the first position only."""
        sa = self.attention
        dropout = sa.dropout_p if self.training else 0.0
        y, weights = self_attention(
            x, sa.q_lin, sa.k_lin, sa.v_lin, sa.n_heads, mask, dropout, output_attentions, first_only
        )
        x = self.sa_layer_norm(sa.out_lin(y) + (x[:, :1] if first_only else x))
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


class Transformer(EncoderStack):
    def __init__(self, config: DistilBertConfig):
        super().__init__([TransformerBlock(config) for _ in range(config.n_layers)])


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


class DistilBertModel(EncoderModel, DistilBertPreTrainedModel):
    """The bare encoder: `last_hidden_state` (DistilBERT has no pooler)."""

    stack_name = "transformer"

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)
        self.post_init()


class DistilBertForMaskedLM(MaskedLMHead, DistilBertPreTrainedModel):
    _tied_weights_keys = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.act = get_activation(config.activation)
        self.distilbert = DistilBertModel(config)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.vocab_projector

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.vocab_projector(self.vocab_layer_norm(self.act(self.vocab_transform(h))))  # (..., V)


class DistilBertForSequenceClassification(SequenceClassifierHead, DistilBertPreTrainedModel):
    """First token -> `pre_classifier` -> ReLU -> dropout -> `classifier`."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def classify(self, first: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(F.relu(self.pre_classifier(first))))  # (B, num_labels)


class DistilBertForTokenClassification(TokenClassifierHead, DistilBertPreTrainedModel):
    """dropout -> `classifier` on every token."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = DistilBertModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.post_init()


class DistilBertForQuestionAnswering(QuestionAnsweringHead, DistilBertPreTrainedModel):
    """dropout (`qa_dropout`) -> `qa_outputs` on every token: start and end logits."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.check_labels(config)
        self.distilbert = DistilBertModel(config)
        self.qa_outputs = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.qa_dropout)
        self.post_init()

    def span_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.qa_outputs(self.dropout(h))  # (..., 2)


AUTO = {
    "distilbert": {
        "config": DistilBertConfig,
        "model": DistilBertModel,
        "masked-lm": DistilBertForMaskedLM,
        "sequence-classification": DistilBertForSequenceClassification,
        "token-classification": DistilBertForTokenClassification,
        "question-answering": DistilBertForQuestionAnswering,
    }
}
