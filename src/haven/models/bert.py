"""BERT: config, encoder blocks and task heads.

Module names follow the reference checkpoints (`bert.encoder.layer.0.attention.self.query.weight`,
`cls.predictions.transform.dense.weight`), so weights load without renaming. The encoder blocks
defined here are shared by RoBERTa/CamemBERT (`roberta.py`), whose layers are named alike.

Position and token-type ids are computed in `forward`; nothing but checkpoint tensors is
registered, so a model built on the `meta` device is complete once its weights are assigned.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..errors import InputTooLongError
from ..layers import attention, get_activation, padding_mask
from ..modeling import PreTrainedModel
from ..outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput, TokenClassifierOutput
from .packing import Packed, first_token_states, packed_attention, selected_states


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


# -- shared helpers (also used by distilbert.py and roberta.py) ------------------------------------


def check_length(seq_len: int, limit: int, config: PretrainedConfig) -> None:
    """Raise InputTooLongError when `seq_len` tokens do not fit the position embeddings."""
    if seq_len > limit:
        raise InputTooLongError(
            f"the input has {seq_len} tokens but this {config.model_type} model accepts at most {limit} "
            f"(max_position_embeddings={config.max_position_embeddings}). Pass truncation=True "
            "(optionally with max_length=...) to the tokenizer, or shorten the text"
        )


def input_shape(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> tuple[int, int]:
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        return input_ids.shape[0], input_ids.shape[1]
    return inputs_embeds.shape[0], inputs_embeds.shape[1]


def resolve_flags(
    config: PretrainedConfig, hidden: bool | None, attentions: bool | None, return_dict: bool | None
) -> tuple[bool, bool, bool]:
    """Per-call flags, falling back to the config's values."""
    return (
        config.output_hidden_states if hidden is None else hidden,
        config.output_attentions if attentions is None else attentions,
        getattr(config, "return_dict", True) if return_dict is None else return_dict,
    )


def finish(output: Any, return_dict: bool) -> Any:
    return output if return_dict else output.to_tuple()


def sequence_classification_loss(
    config: PretrainedConfig, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Loss by `config.problem_type`, inferred (and stored) as the reference does when unset."""
    num_labels = logits.shape[-1]
    labels = labels.to(logits.device)
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(
        f"unknown problem_type {config.problem_type!r}; use regression, single_label_classification "
        "or multi_label_classification"
    )


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.to(logits.device).view(-1))


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the vocabulary; label -100 marks positions to ignore."""
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.to(logits.device).view(-1))


# -- encoder blocks --------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.config = config

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _, seq_len = input_shape(input_ids, inputs_embeds)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, C)
        if position_ids is None:
            check_length(seq_len, self.config.max_position_embeddings, self.config)
            pos = self.position_embeddings.weight[:seq_len]  # (T, C), broadcast over the batch
        else:
            check_length(int(position_ids.max()) + 1, self.config.max_position_embeddings, self.config)
            pos = self.position_embeddings(position_ids)
        if token_type_ids is None:
            types = self.token_type_embeddings.weight[0]  # (C,): all tokens are segment 0
        else:
            types = self.token_type_embeddings(token_type_ids)
        x = inputs_embeds + types + pos
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden_size ({config.hidden_size}) must be a multiple of num_attention_heads "
                f"({config.num_attention_heads})"
            )
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        first_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`first_only`: queries for the first token only (all keys/values), output (B, 1, C)."""
        B, T, C = x.shape
        nh = self.num_heads
        Tq = 1 if first_only else T
        q = self.query(x[:, :Tq]).view(B, Tq, nh, C // nh).transpose(1, 2)  # (B, nh, Tq, hs)
        k = self.key(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        v = self.value(x).view(B, T, nh, C // nh).transpose(1, 2)
        dropout = self.dropout_p if self.training else 0.0
        y, weights = attention(q, k, v, mask, dropout=dropout, return_weights=output_attentions)
        return y.transpose(1, 2).reshape(B, Tq, C), weights  # (B, Tq, C)


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(y)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        first_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, weights = self.self(x, mask, output_attentions, first_only)
        return self.output(y, x[:, :1] if first_only else x), weights


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertOutput(BertSelfOutput):
    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)


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
        x, weights = self.attention(x, mask, output_attentions, first_only)
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


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        first_token_only: bool = False,
    ) -> BaseModelOutput:
        """`first_token_only`: the last layer computes the first position only (all a [CLS]
        classifier reads), saving its query, output and feed-forward work on the other positions."""
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
    # Old checkpoints store the (non-persistent) position ids, pretraining heads or a pooler
    # that a head model does not use; loading them silently is what users expect.
    _ignore_unexpected = [r"embeddings\.position_ids$", r"^cls\.seq_relationship\.", r"pooler\."]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, BertLMPredictionHead):
            nn.init.zeros_(module.bias)

    def sanitize(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Some exports keep only the decoder's copy of the MLM output bias.
        if "cls.predictions.decoder.bias" in state_dict and "cls.predictions.bias" not in state_dict:
            state_dict = dict(state_dict)
            state_dict["cls.predictions.bias"] = state_dict.pop("cls.predictions.decoder.bias")
        return state_dict


class BertModel(BertPreTrainedModel):
    """The bare encoder: `last_hidden_state` and (with the pooler) `pooler_output`."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        hidden, attn, return_dict = resolve_flags(
            self.config, output_hidden_states, output_attentions, return_dict
        )
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        out = self.encoder(x, padding_mask(attention_mask), hidden, attn)
        if self.pooler is not None:
            out.pooler_output = self.pooler(out.last_hidden_state)
        return finish(out, return_dict)


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


class BertForMaskedLM(BertPreTrainedModel):
    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.bert.embeddings.word_embeddings

    def get_output_embeddings(self) -> nn.Module:
        return self.cls.predictions.decoder

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
        x = self.bert.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        return self.cls(selected_states(self.bert.encoder, x, attention_mask, select))

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
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        logits = self.cls(out.last_hidden_state)  # (B, T, V)
        loss = masked_lm_loss(logits, labels) if labels is not None else None
        return finish(MaskedLMOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


class BertForSequenceClassification(BertPreTrainedModel):
    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.bert.embeddings.word_embeddings

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
        bert = self.bert
        x = bert.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        if hidden or attn:
            out = bert.encoder(x, padding_mask(attention_mask), hidden, attn)
            first = out.last_hidden_state[:, :1]
        else:  # the pooler reads the first token only: compute just what it needs
            out = BaseModelOutput()
            first = first_token_states(bert.encoder, x, attention_mask)[:, None]  # (B, 1, C)
        logits = self.classifier(self.dropout(bert.pooler(first)))  # (B, num_labels)
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return finish(SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


class BertForTokenClassification(BertPreTrainedModel):
    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.bert.embeddings.word_embeddings

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
        x = self.bert.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        return self.classifier(selected_states(self.bert.encoder, x, attention_mask, select))

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
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = token_classification_loss(logits, labels) if labels is not None else None
        return finish(TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


AUTO = {
    "bert": {
        "config": BertConfig,
        "model": BertModel,
        "masked-lm": BertForMaskedLM,
        "sequence-classification": BertForSequenceClassification,
        "token-classification": BertForTokenClassification,
    }
}
