"""Padding-free encoder computation for heads that read only some positions.

A padded batch (B, T) holds N <= B*T real tokens. `Packed` keeps them as rows of one (N, C)
matrix: linear layers, norms and MLPs run on those rows only, and attention scatters them back
to (B, nh, T, hs) with zeros in the padding slots, which the key mask hides. The last layer can
compute just the rows a head reads (the first token for a sequence classifier, the masks for
fill-mask), since only its queries, output projection and MLP are per position.

Each encoder layer implements `forward_packed(h, p, rows, row_batch)`; the results equal the
padded computation at the positions returned.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import attention, padding_mask


class Packed:
    """The real (non-padding) tokens of a padded batch, as rows of one (N, C) matrix.

    Linear layers, norms and the MLP run on those N rows only; attention scatters them back to
    (B, nh, T, hs) with zeros in the padding slots, which the key mask hides.
    """

    def __init__(self, attention_mask: torch.Tensor):
        self.B, self.T = attention_mask.shape
        keep = attention_mask.bool()
        self.index = keep.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of real tokens
        lengths = keep.sum(1)
        self.first = lengths.cumsum(0) - lengths  # (B,) packed row of each sequence's first token
        self.mask = keep[:, None, None, :]  # (B, 1, 1, T) for SDPA

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.B * self.T, -1).index_select(0, self.index)  # (B, T, C) -> (N, C)

    def heads(self, t: torch.Tensor, nh: int) -> torch.Tensor:
        C = t.shape[1]
        full = t.new_zeros(self.B * self.T, C).index_copy_(0, self.index, t)
        return full.view(self.B, self.T, nh, C // nh).transpose(1, 2)  # (N, C) -> (B, nh, T, hs)

    def unheads(self, y: torch.Tensor) -> torch.Tensor:
        B, nh, T, hs = y.shape
        return y.transpose(1, 2).reshape(B * T, nh * hs).index_select(0, self.index)  # -> (N, C)


def packed_attention(
    p: Packed,
    h: torch.Tensor,
    q_proj: nn.Module,
    k_proj: nn.Module,
    v_proj: nn.Module,
    num_heads: int,
    rows: torch.Tensor | None = None,
    row_batch: torch.Tensor | None = None,
    dropout: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention over packed rows h (N, C): (outputs, the input rows they belong to).

    With `rows`, only those packed rows ask queries (keys/values still come from every token):
    one per sequence in batch order when `row_batch` is None, else `row_batch` names each row's
    sequence.
    """
    k, v = p.heads(k_proj(h), num_heads), p.heads(v_proj(h), num_heads)  # (B, nh, T, hs)
    if rows is None:
        q = p.heads(q_proj(h), num_heads)
        return p.unheads(attention(q, k, v, p.mask, dropout=dropout)[0]), h  # (N, C)
    h = h.index_select(0, rows)  # (M, C)
    mask = p.mask
    if row_batch is not None:  # give each row its own sequence's keys and values
        k, v, mask = (
            k.index_select(0, row_batch),
            v.index_select(0, row_batch),
            mask.index_select(0, row_batch),
        )
    M = h.shape[0]
    q = q_proj(h).view(M, 1, num_heads, -1).transpose(1, 2)  # (M, nh, 1, hs)
    return attention(q, k, v, mask, dropout=dropout)[0].reshape(M, -1), h  # (M, C)


def packed_states(
    encoder: nn.Module, x: torch.Tensor, p: Packed, rows: torch.Tensor, row_batch: torch.Tensor | None = None
) -> torch.Tensor:
    """Final hidden states (M, C) of packed `rows`: padding skipped in every layer, and the last
    layer computed for those rows only."""
    h = p.pack(x)  # (N, C)
    last = len(encoder.layer) - 1
    for i, layer in enumerate(encoder.layer):
        h = encoder.call_layer(layer.forward_packed, h, p, rows if i == last else None, row_batch)
    return h


def selected_states(
    encoder: nn.Module, x: torch.Tensor, attention_mask: torch.Tensor | None, select: torch.Tensor
) -> torch.Tensor:
    """(M, C) final hidden states at the positions where `select` (B, T) is True, row-major.

    Equals `encoder(...).last_hidden_state[select]`, computing only what those positions need.
    """
    B, T = select.shape
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long, device=select.device)
    keep = attention_mask.bool()
    select = select.bool()
    if bool((select & ~keep).any()):
        raise ValueError("select only real tokens: a selected position has attention_mask 0 (padding)")
    flat = select.reshape(-1).nonzero().squeeze(1)  # (M,) flat positions
    if flat.numel() == 0:
        return x.new_empty(0, x.shape[-1])
    rows = (keep.reshape(-1).cumsum(0) - 1).index_select(0, flat)  # their packed rows
    return packed_states(encoder, x, Packed(attention_mask), rows, flat // T)


def first_token_states(
    encoder: nn.Module, x: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """(B, C) final hidden state of each sequence's first token, all a [CLS] classifier reads.

    Padding is packed away so no layer computes it, and the last layer computes the first
    positions only. The result equals `encoder(...).last_hidden_state[:, 0]`. (With left padding
    the first position is a pad token, which only the full computation gives: use it then.)
    """
    if attention_mask is None or bool(attention_mask.all()) or not bool(attention_mask[:, 0].all()):
        return encoder(x, padding_mask(attention_mask), first_token_only=True).last_hidden_state[:, 0]
    p = Packed(attention_mask)
    return packed_states(encoder, x, p, p.first)  # (B, C)
