"""RoBERTa, CamemBERT and XLM-RoBERTa: BERT's encoder with RoBERTa's positions and heads.

The three families share one implementation and differ only in their config class and
`model_type`. Embeddings, layers, pooler and the token classifier are BERT's (`bert.py`), with
the same tensor names under `roberta.` (`roberta.encoder.layer.0.attention.self.query.weight`).
What differs: position ids count non-padding tokens from `padding_idx + 1`, so padding never
shifts the positions of real tokens; the MLM head `lm_head.*`; the sequence classifier
`classifier.dense` / `classifier.out_proj`; the config defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._encoder import MaskedLMHead, SequenceClassifierHead, check_length
from .bert import (
    BertConfig,
    BertEmbeddings,
    BertForQuestionAnswering,
    BertForTokenClassification,
    BertModel,
    BertPreTrainedModel,
    classifier_dropout,
)


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


class RobertaEmbeddings(BertEmbeddings):
    """BERT's embeddings with positions counted from padding_idx + 1 over real tokens only."""

    def __init__(self, config: RobertaConfig):
        super().__init__(config, position_padding_idx=config.pad_token_id)
        self.padding_idx = config.pad_token_id

    def positions(
        self, input_ids: torch.Tensor | None, seq_len: int, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        if position_ids is not None:
            return super().positions(input_ids, seq_len, position_ids)
        # Positions start after padding_idx: the table fits max_position_embeddings - padding_idx - 1 tokens.
        limit = self.config.max_position_embeddings - self.padding_idx - 1
        if input_ids is None:  # no ids, so no way to tell padding: sequential positions
            check_length(seq_len, limit, self.config)
            start = self.padding_idx + 1
            return self.position_embeddings.weight[start : start + seq_len]  # (T, C)
        position_ids = position_ids_from_input_ids(input_ids, self.padding_idx)  # (B, T)
        if seq_len > limit:  # padding does not count: only real tokens take positions
            check_length(int(position_ids.max()) - self.padding_idx, limit, self.config)
        return self.position_embeddings(position_ids)  # (B, T, C)


class RobertaPreTrainedModel(BertPreTrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"
    _mlm_head = "lm_head"
    _ignore_unexpected = [r"embeddings\.position_ids$", r"pooler\."]

    @staticmethod
    def _base_model_class() -> type[RobertaModel]:
        return RobertaModel


class RobertaModel(RobertaPreTrainedModel, BertModel):
    """The bare encoder: `last_hidden_state` and (with the pooler) `pooler_output`."""

    embeddings_class = RobertaEmbeddings


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
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = classifier_dropout(config)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(hidden[:, 0])))
        return self.out_proj(self.dropout(x))


class RobertaForMaskedLM(MaskedLMHead, RobertaPreTrainedModel):
    _tied_weights_keys = {
        "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head.decoder

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(h)  # (..., V)


class RobertaForSequenceClassification(SequenceClassifierHead, RobertaPreTrainedModel):
    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(config)
        self.post_init()

    def classify(self, first: torch.Tensor) -> torch.Tensor:
        return self.classifier(first[:, None])  # (B, num_labels)


class RobertaForTokenClassification(RobertaPreTrainedModel, BertForTokenClassification):
    """BERT's token classifier over `roberta` (tensors `classifier.weight`, `classifier.bias`)."""


class RobertaForQuestionAnswering(RobertaPreTrainedModel, BertForQuestionAnswering):
    """BERT's QA head over `roberta` (tensors `qa_outputs.weight`, `qa_outputs.bias`)."""


# CamemBERT and XLM-RoBERTa: the same modules under their own names and config classes.


class CamembertModel(RobertaModel):
    config_class = CamembertConfig


class CamembertForMaskedLM(RobertaForMaskedLM):
    config_class = CamembertConfig


class CamembertForSequenceClassification(RobertaForSequenceClassification):
    config_class = CamembertConfig


class CamembertForTokenClassification(RobertaForTokenClassification):
    config_class = CamembertConfig


class CamembertForQuestionAnswering(RobertaForQuestionAnswering):
    config_class = CamembertConfig


class XLMRobertaModel(RobertaModel):
    config_class = XLMRobertaConfig


class XLMRobertaForMaskedLM(RobertaForMaskedLM):
    config_class = XLMRobertaConfig


class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    config_class = XLMRobertaConfig


class XLMRobertaForTokenClassification(RobertaForTokenClassification):
    config_class = XLMRobertaConfig


class XLMRobertaForQuestionAnswering(RobertaForQuestionAnswering):
    config_class = XLMRobertaConfig


def _auto_entry(*classes: type) -> dict[str, type]:
    return dict(
        zip(
            ("config", "model", "masked-lm", "sequence-classification", "token-classification", "question-answering"),
            classes,
        )
    )


AUTO = {
    "roberta": _auto_entry(
        RobertaConfig,
        RobertaModel,
        RobertaForMaskedLM,
        RobertaForSequenceClassification,
        RobertaForTokenClassification,
        RobertaForQuestionAnswering,
    ),
    "camembert": _auto_entry(
        CamembertConfig,
        CamembertModel,
        CamembertForMaskedLM,
        CamembertForSequenceClassification,
        CamembertForTokenClassification,
        CamembertForQuestionAnswering,
    ),
    "xlm-roberta": _auto_entry(
        XLMRobertaConfig,
        XLMRobertaModel,
        XLMRobertaForMaskedLM,
        XLMRobertaForSequenceClassification,
        XLMRobertaForTokenClassification,
        XLMRobertaForQuestionAnswering,
    ),
}
