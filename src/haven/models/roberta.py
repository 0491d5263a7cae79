"""RoBERTa, CamemBERT and XLM-RoBERTa: BERT's encoder with RoBERTa's embeddings and heads.

The three families share one implementation and differ only in their config class and
`model_type`. The encoder layers are BERT's (`roberta.encoder.layer.0.attention.self.query.weight`);
what differs is the embeddings — position ids count non-padding tokens from `padding_idx + 1`,
so padding never shifts the positions of real tokens — and the heads (`lm_head.*`,
`classifier.dense` / `classifier.out_proj`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import padding_mask
from ..outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput, TokenClassifierOutput
from .bert import (
    BertConfig,
    BertEncoder,
    BertPooler,
    BertPreTrainedModel,
    check_length,
    finish,
    input_shape,
    masked_lm_loss,
    resolve_flags,
    sequence_classification_loss,
    token_classification_loss,
)
from .packing import first_token_states, selected_states


class RobertaConfig(BertConfig):
    model_type = "roberta"
    defaults = {"vocab_size": 50265, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}


class CamembertConfig(RobertaConfig):
    model_type = "camembert"
    defaults = {"vocab_size": 30522}


class XLMRobertaConfig(RobertaConfig):
    model_type = "xlm-roberta"
    defaults = {"vocab_size": 30522}


def position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """Real tokens get padding_idx+1, padding_idx+2, ...; padding tokens get padding_idx."""
    mask = input_ids.ne(padding_idx)
    return torch.cumsum(mask, dim=1, dtype=torch.long) * mask + padding_idx  # (B, T)


class RobertaEmbeddings(nn.Module):
    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=config.pad_token_id
        )
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
        config = self.config
        # Positions start after padding_idx: the table fits max_position_embeddings - padding_idx - 1 tokens.
        limit = config.max_position_embeddings - self.padding_idx - 1
        if position_ids is None:
            if input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, self.padding_idx)  # (B, T)
                if seq_len > limit:  # padding does not count: only real tokens take positions
                    check_length(int(position_ids.max()) - self.padding_idx, limit, config)
                pos = self.position_embeddings(position_ids)  # (B, T, C)
            else:  # no ids, so no way to tell padding: sequential positions
                check_length(seq_len, limit, config)
                start = self.padding_idx + 1
                pos = self.position_embeddings.weight[start : start + seq_len]  # (T, C)
        else:
            check_length(int(position_ids.max()) + 1, config.max_position_embeddings, config)
            pos = self.position_embeddings(position_ids)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, C)
        if token_type_ids is None:
            types = self.token_type_embeddings.weight[0]  # (C,)
        else:
            types = self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(inputs_embeds + types + pos))


class RobertaPreTrainedModel(BertPreTrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"
    _ignore_unexpected = [r"embeddings\.position_ids$", r"pooler\."]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RobertaLMHead):
            nn.init.zeros_(module.bias)

    def sanitize(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "lm_head.decoder.bias" in state_dict and "lm_head.bias" not in state_dict:
            state_dict = dict(state_dict)
            state_dict["lm_head.bias"] = state_dict.pop("lm_head.decoder.bias")
        return state_dict


class RobertaModel(RobertaPreTrainedModel):
    """The bare encoder: `last_hidden_state` and (with the pooler) `pooler_output`."""

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = RobertaEmbeddings(config)
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


class RobertaLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder (tied to the word embeddings) + bias."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))  # decoder.bias is tied to this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(x))))


class RobertaClassificationHead(nn.Module):
    """First token (<s>) -> dense -> tanh -> out_proj."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(p)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(hidden[:, 0])))
        return self.out_proj(self.dropout(x))


class RobertaForMaskedLM(RobertaPreTrainedModel):
    _tied_weights_keys = {
        "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.roberta.embeddings.word_embeddings

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head.decoder

    def logits_at(
        self,
        select: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(M, V) logits at the positions where `select` (B, T) is True (say the <mask> tokens):
        `forward(...).logits[select]`, without computing padding or the other positions' heads."""
        x = self.roberta.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        return self.lm_head(selected_states(self.roberta.encoder, x, attention_mask, select))

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
        out = self.roberta(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        loss = masked_lm_loss(logits, labels) if labels is not None else None
        return finish(MaskedLMOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


class RobertaForSequenceClassification(RobertaPreTrainedModel):
    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.roberta.embeddings.word_embeddings

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
        roberta = self.roberta
        x = roberta.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        if hidden or attn:
            out = roberta.encoder(x, padding_mask(attention_mask), hidden, attn)
            first = out.last_hidden_state[:, :1]
        else:  # the head reads the first token (<s>) only: compute just what it needs
            out = BaseModelOutput()
            first = first_token_states(roberta.encoder, x, attention_mask)[:, None]  # (B, 1, C)
        logits = self.classifier(first)  # (B, num_labels)
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return finish(SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


class RobertaForTokenClassification(RobertaPreTrainedModel):
    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.roberta.embeddings.word_embeddings

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
        x = self.roberta.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        return self.classifier(selected_states(self.roberta.encoder, x, attention_mask, select))

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
        out = self.roberta(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = token_classification_loss(logits, labels) if labels is not None else None
        return finish(TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


# CamemBERT and XLM-RoBERTa: the same modules under their own names and config classes.


class CamembertModel(RobertaModel):
    config_class = CamembertConfig


class CamembertForMaskedLM(RobertaForMaskedLM):
    config_class = CamembertConfig


class CamembertForSequenceClassification(RobertaForSequenceClassification):
    config_class = CamembertConfig


class CamembertForTokenClassification(RobertaForTokenClassification):
    config_class = CamembertConfig


class XLMRobertaModel(RobertaModel):
    config_class = XLMRobertaConfig


class XLMRobertaForMaskedLM(RobertaForMaskedLM):
    config_class = XLMRobertaConfig


class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    config_class = XLMRobertaConfig


class XLMRobertaForTokenClassification(RobertaForTokenClassification):
    config_class = XLMRobertaConfig


AUTO = {
    "roberta": {
        "config": RobertaConfig,
        "model": RobertaModel,
        "masked-lm": RobertaForMaskedLM,
        "sequence-classification": RobertaForSequenceClassification,
        "token-classification": RobertaForTokenClassification,
    },
    "camembert": {
        "config": CamembertConfig,
        "model": CamembertModel,
        "masked-lm": CamembertForMaskedLM,
        "sequence-classification": CamembertForSequenceClassification,
        "token-classification": CamembertForTokenClassification,
    },
    "xlm-roberta": {
        "config": XLMRobertaConfig,
        "model": XLMRobertaModel,
        "masked-lm": XLMRobertaForMaskedLM,
        "sequence-classification": XLMRobertaForSequenceClassification,
        "token-classification": XLMRobertaForTokenClassification,
    },
}
