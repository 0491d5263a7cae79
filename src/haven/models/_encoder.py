"""Helpers shared by the encoder families (bert, distilbert, roberta/camembert): input checks,
per-call flags, losses, attention, the layer stack, and the task heads' forwards.

The base models (`BertModel`, `DistilBertModel`, `RobertaModel`) mix in `EncoderModel`: each has
`embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)` and a layer stack named as
in the checkpoint (`encoder`, `transformer`; `stack_name` says which). The task heads mix in
`MaskedLMHead`, `SequenceClassifierHead`, `TokenClassifierHead` or `QuestionAnsweringHead`: each family's head class holds
its base model under `base_model_prefix` and its own layers under the checkpoint's names (`cls`,
`lm_head`, `vocab_projector`, `classifier` ...) and says how final hidden states become logits
(`head_logits`, `classify`); the mixin's `forward` / `logits_at` (with the padding-free paths of `packing.py`) do the rest.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PretrainedConfig
from ..errors import ConfigError, InputTooLongError
from ..layers import attention, padding_mask
from ..modeling import LayerLoop
from ..outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from .packing import first_token_states, selected_states

# -- checks, flags, losses -------------------------------------------------------------------------


def check_length(seq_len: int, limit: int, config: PretrainedConfig) -> None:
    """Raise InputTooLongError when `seq_len` tokens do not fit the position embeddings."""
    if seq_len > limit:
        raise InputTooLongError(
            f"the input has {seq_len} tokens but this {config.model_type} model accepts at most {limit} "
            f"(max_position_embeddings={config.max_position_embeddings}). Pass truncation=True "
            "(optionally with max_length=...) to the tokenizer, or shorten the text"
        )


def input_shape(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> tuple[int, int]:
    """(batch, seq_len) of a call that passes exactly one of input_ids / inputs_embeds."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        return input_ids.shape[0], input_ids.shape[1]
    return inputs_embeds.shape[0], inputs_embeds.shape[1]


def absolute_positions(
    table: nn.Embedding, seq_len: int, position_ids: torch.Tensor | None, config: PretrainedConfig
) -> torch.Tensor:
    """Learned absolute position embeddings: (T, C) for 0..T-1 (broadcast over the batch), or
    (B, T, C) for explicit `position_ids`; too long an input raises InputTooLongError."""
    limit = config.max_position_embeddings
    if position_ids is None:
        check_length(seq_len, limit, config)
        return table.weight[:seq_len]  # (T, C)
    check_length(int(position_ids.max()) + 1, limit, config)
    return table(position_ids)  # (B, T, C)


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


def per_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, T, K) logits against (B, T) labels (masked LM, token classification);
    label -100 marks positions to ignore."""
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.to(logits.device).view(-1))


def span_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor
) -> torch.Tensor:
    """Extractive QA loss: the mean of the start and end cross-entropies over the (B, T) logits.
    Positions outside the input (say a answer truncated away) are clamped to T and ignored."""
    T = start_logits.shape[1]
    losses = [
        F.cross_entropy(logits, positions.to(logits.device).reshape(-1).clamp(0, T), ignore_index=T)
        for logits, positions in ((start_logits, start_positions), (end_logits, end_positions))
    ]
    return (losses[0] + losses[1]) / 2


def move_decoder_bias(state_dict: dict[str, torch.Tensor], head: str) -> dict[str, torch.Tensor]:
    """Some exports keep only the decoder's copy of the MLM output bias (`{head}.decoder.bias`);
    Haven's parameter is `{head}.bias` (the decoder's is tied to it)."""
    if f"{head}.decoder.bias" in state_dict and f"{head}.bias" not in state_dict:
        state_dict = dict(state_dict)
        state_dict[f"{head}.bias"] = state_dict.pop(f"{head}.decoder.bias")
    return state_dict


# -- blocks ----------------------------------------------------------------------------------------


def self_attention(
    x: torch.Tensor,
    q_proj: nn.Module,
    k_proj: nn.Module,
    v_proj: nn.Module,
    num_heads: int,
    mask: torch.Tensor | None,
    dropout: float = 0.0,
    output_attentions: bool = False,
    first_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head self-attention of x (B, T, C) before the output projection: (y, weights).

    `first_only`: queries for the first token only (all keys/values), y is (B, 1, C)."""
    B, T, C = x.shape
    nh = num_heads
    Tq = 1 if first_only else T
    q = q_proj(x[:, :Tq]).view(B, Tq, nh, C // nh).transpose(1, 2)  # (B, nh, Tq, hs)
    k = k_proj(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
    v = v_proj(x).view(B, T, nh, C // nh).transpose(1, 2)
    y, weights = attention(q, k, v, mask, dropout=dropout, return_weights=output_attentions)
    return y.transpose(1, 2).reshape(B, Tq, C), weights  # (B, Tq, C)


class EncoderStack(LayerLoop, nn.Module):
    """The layer stack (`layer.N`), with optional per-layer hidden states and attentions.

    Each layer is called as `layer(x, mask, output_attentions, first_only) -> (x, weights)` and
    implements `forward_packed` for the padding-free paths of `packing.py`; both go through
    `call_layer` (gradient checkpointing)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layer = nn.ModuleList(layers)

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
            x, weights = self.call_layer(layer, x, mask, output_attentions, first_token_only and i == last)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None:
                attentions.append(weights)
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )


# -- base model and heads (mixins over PreTrainedModel subclasses) ----------------------------------


class EncoderModel:
    """Base-model forward: embeddings -> layer stack (-> pooler, if the model has one)."""

    stack_name: ClassVar[str] = "encoder"
    config: PretrainedConfig
    embeddings: nn.Module

    @property
    def stack(self) -> EncoderStack:
        return getattr(self, self.stack_name)

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
        out = self.stack(x, padding_mask(attention_mask), hidden, attn)
        pooler = getattr(self, "pooler", None)
        if pooler is not None:
            out.pooler_output = pooler(out.last_hidden_state)
        return finish(out, return_dict)


class EncoderHead:
    """A task head over the base model held under `base_model_prefix`."""

    base_model_prefix: ClassVar[str]
    config: PretrainedConfig

    @property
    def base(self) -> EncoderModel:
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self.base.embeddings.word_embeddings


class PerTokenHead(EncoderHead):
    """`forward` and `logits_at` for a head that maps each final hidden state to logits on its
    own (masked LM, token classification); the class defines `head_logits(h)`."""

    output_class: ClassVar[type[MaskedLMOutput] | type[TokenClassifierOutput]]

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., C) final hidden states -> (..., K) logits."""
        raise NotImplementedError

    def logits_at(
        self,
        select: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(M, K) logits at the positions where `select` (B, T) is True (say the mask tokens, or all
        real tokens `attention_mask.bool()`): `forward(...).logits[select]`, without computing
        padding, or the head and the last layer at the other positions."""
        x = self.base.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        return self.head_logits(selected_states(self.base.stack, x, attention_mask, select))  # (M, K)

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
    ) -> MaskedLMOutput | TokenClassifierOutput | tuple:
        _, _, return_dict = resolve_flags(self.config, None, None, return_dict)
        out = self.base(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        logits = self.head_logits(out.last_hidden_state)  # (B, T, K)
        loss = per_token_loss(logits, labels) if labels is not None else None
        return finish(self.output_class(loss, logits, out.hidden_states, out.attentions), return_dict)


class MaskedLMHead(PerTokenHead):
    """Masked LM: `head_logits` gives (..., vocab_size); label -100 marks positions to ignore."""

    output_class = MaskedLMOutput


class TokenClassifierHead(PerTokenHead):
    """`classifier(dropout(h))` on every token."""

    output_class = TokenClassifierOutput
    classifier: nn.Linear
    dropout: nn.Dropout

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(h))  # (..., num_labels)


class SequenceClassifierHead(EncoderHead):
    """`forward` for a classifier of the first token; the class defines `classify(first)`.

    Without hidden states or attentions asked for, only what the first token needs is computed
    (padding packed away, the last layer on the first positions only)."""

    def classify(self, first: torch.Tensor) -> torch.Tensor:
        """(B, C) final state of the first token -> (B, num_labels) logits."""
        raise NotImplementedError

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
        base = self.base
        x = base.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        if hidden or attn:
            out = base.stack(x, padding_mask(attention_mask), hidden, attn)
            first = out.last_hidden_state[:, 0]
        else:
            out = BaseModelOutput()
            first = first_token_states(base.stack, x, attention_mask)  # (B, C)
        logits = self.classify(first)  # (B, num_labels)
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return finish(SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


class QuestionAnsweringHead(EncoderHead):
    """Extractive question answering: `qa_outputs` maps each final hidden state to a start and
    an end logit (the class may define `span_logits(h)` to add dropout first)."""

    qa_outputs: nn.Linear

    @staticmethod
    def check_labels(config: PretrainedConfig) -> None:
        if config.num_labels != 2:
            raise ConfigError(
                f"a question-answering head scores a start and an end per token, so it needs num_labels=2, "
                f"got {config.num_labels}; load it without num_labels / id2label"
            )

    def span_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.qa_outputs(h)  # (..., 2)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> QuestionAnsweringModelOutput | tuple:
        _, _, return_dict = resolve_flags(self.config, None, None, return_dict)
        out = self.base(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        logits = self.span_logits(out.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0].contiguous(), logits[..., 1].contiguous()  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        output = QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)
        return finish(output, return_dict)
