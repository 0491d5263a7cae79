"""What `generate(..., return_dict_in_generate=True)` returns (the reference's field names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..outputs import ModelOutput


@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    """Greedy / sampling. `scores`: processed next-token scores per step, each (B, V);
    `logits`: the model's raw next-token logits per step."""

    sequences: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    attentions: Any = None
    hidden_states: Any = None
    cache: Any = None


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """Beam search. `sequences_scores`: the length-penalised log-probability of each returned
    sequence (with `output_scores`); `beam_indices`: (B * num_return_sequences, new tokens), the
    flat beam each token came from (-1 past the end)."""

    sequences: torch.Tensor | None = None
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    attentions: Any = None
    hidden_states: Any = None
    cache: Any = None
