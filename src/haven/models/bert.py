"""BERT: config, encoder blocks and task heads.

Module names follow the reference checkpoints (`bert.encoder.layer.0.attention.self.query.weight`,
`cls.predictions.transform.dense.weight`), so weights load without renaming. The blocks and
models defined here also serve RoBERTa/CamemBERT (`roberta.py`), whose tensors are named alike;
what all encoders share (heads' forwards, losses, the layer stack) is in `_encoder.py`.

Position and token-type ids are computed in `forward`; nothing but checkpoint tensors is
registered, so a model built on the `meta` device is complete once its weights are assigned.
"""

from __future__ import annotations

from typing import ClassVar

import torch
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
    move_decoder_bias,
    self_attention,
)
from .packing import Packed, packed_attention


class BertConfig(PretrainedConfig):
    model_type = "bert"
    defaults = {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "use_cache": True,
        "classifier_dropout": None,
        "is_decoder": False,
        "add_cross_attention": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "tie_word_embeddings": True,
    }


def classifier_dropout(config: PretrainedConfig) -> nn.Dropout:
    """The heads' dropout: `classifier_dropout`, or `hidden_dropout_prob` when unset."""
    p = config.classifier_dropout
    return nn.Dropout(config.hidden_dropout_prob if p is None else p)


# -- encoder blocks --------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig, position_padding_idx: int | None = None):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=position_padding_idx
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.config = config

    def positions(
        self, input_ids: torch.Tensor | None, seq_len: int, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """Position embeddings, (T, C) or (B, T, C): 0, 1, 2 ... unless `position_ids` are given."""
        return absolute_positions(self.position_embeddings, seq_len, position_ids, self.config)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _, seq_len = input_shape(input_ids, inputs_embeds)
        pos = self.positions(input_ids, seq_len, position_ids)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, C)
        if token_type_ids is None:
            types = self.token_type_embeddings.weight[0]  # (C,): all tokens are segment 0
        else:
            types = self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(inputs_embeds + types + pos))


class BertSelfAttention(nn.Module):
    """The query/key/value projections; `BertLayer` runs attention with them (padded or packed)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden_size ({config.hidden_size}) must be a multiple of num_attention_heads "
                f"({config.num_attention_heads})"
            )
        self.num_heads = config.num_attention_heads
        self.query = Linear(config.hidden_size, config.hidden_size)
        self.key = Linear(config.hidden_size, config.hidden_size)
        self.value = Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(y)) + residual)


class BertAttention(nn.Module):
    """`self` (q/k/v) and `output` (projection, residual, LayerNorm), named as in the checkpoint."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertOutput(BertSelfOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.dense = Linear(config.intermediate_size, config.hidden_size)


class BertLayer(nn.Module):
    """Post-norm transformer block: attention + residual + LN, MLP + residual + LN."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        first_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, Tq, C) and the attention weights; `first_only`: Tq = 1, the first position only."""
        sa = self.attention.self
        dropout = sa.dropout_p if self.training else 0.0
        y, weights = self_attention(
            x, sa.query, sa.key, sa.value, sa.num_heads, mask, dropout, output_attentions, first_only
        )
        x = self.attention.output(y, x[:, :1] if first_only else x)
        return self.output(self.intermediate(x), x), weights

    def forward_packed(
        self,
        h: torch.Tensor,
        p: Packed,
        rows: torch.Tensor | None = None,
        row_batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The block on packed rows (N, C) of real tokens; only `rows` of them if given (M, C)."""
        sa = self.attention.self
        dropout = sa.dropout_p if self.training else 0.0
        y, h = packed_attention(p, h, sa.query, sa.key, sa.value, sa.num_heads, rows, row_batch, dropout)
        x = self.attention.output(y, h)
        return self.output(self.intermediate(x), x)


class BertEncoder(EncoderStack):
    def __init__(self, config: BertConfig):
        super().__init__([BertLayer(config) for _ in range(config.num_hidden_layers)])


class BertPooler(nn.Module):
    """tanh(dense(first token))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


# -- models ------------------------------------------------------------------------------------------


class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    _mlm_head: ClassVar[str] = "cls.predictions"  # holds the MLM output `bias`
    # Old checkpoints store the (non-persistent) position ids, pretraining heads or a pooler
    # that a head model does not use; loading them silently is what users expect.
    _ignore_unexpected = [r"embeddings\.position_ids$", r"^cls\.seq_relationship\.", r"pooler\."]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        bias = module._parameters.get("bias")  # an MLM head's own output bias
        if bias is not None and not isinstance(module, (nn.Linear, nn.LayerNorm)):
            nn.init.zeros_(bias)

    def sanitize(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return move_decoder_bias(state_dict, self._mlm_head)

    @staticmethod
    def _base_model_class() -> type[BertModel]:
        return BertModel

    def _add_base_model(self, add_pooling_layer: bool) -> None:
        """The base model, under `base_model_prefix` (`bert`, `roberta`)."""
        setattr(self, self.base_model_prefix, self._base_model_class()(self.config, add_pooling_layer))


class BertModel(EncoderModel, BertPreTrainedModel):
    """The bare encoder: `last_hidden_state` and (with the pooler) `pooler_output`."""

    embeddings_class: ClassVar[type[BertEmbeddings]] = BertEmbeddings

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = self.embeddings_class(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)  # weight tied to the word embeddings
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))  # decoder.bias is tied to this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


class BertForMaskedLM(MaskedLMHead, BertPreTrainedModel):
    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.cls.predictions.decoder

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.cls(h)  # (..., V)


class BertForSequenceClassification(SequenceClassifierHead, BertPreTrainedModel):
    """The pooler (tanh dense on [CLS]) -> dropout -> `classifier`."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def classify(self, first: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.bert.pooler(first[:, None])))  # (B, num_labels)


class BertForTokenClassification(TokenClassifierHead, BertPreTrainedModel):
    """dropout -> `classifier` on every token (RoBERTa's token classifier too)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._add_base_model(add_pooling_layer=False)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()


class BertForQuestionAnswering(QuestionAnsweringHead, BertPreTrainedModel):
    """`qa_outputs` on every token: start and end logits (RoBERTa's QA head too)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.check_labels(config)
        self.num_labels = config.num_labels
        self._add_base_model(add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()


AUTO = {
    "bert": {
        "config": BertConfig,
        "model": BertModel,
        "masked-lm": BertForMaskedLM,
        "sequence-classification": BertForSequenceClassification,
        "token-classification": BertForTokenClassification,
        "question-answering": BertForQuestionAnswering,
    }
}
