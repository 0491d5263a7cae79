"""`Linear`: `nn.Linear` with a weight prepacked once for oneDNN, for CPU calls on a few dozen rows."""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

_ONEDNN = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)
_packed_weights: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Linear -> (key, packed, storage)


class Linear(nn.Linear):
    """`nn.Linear` with a faster CPU inference path for a few rows at a time (an encoder's
    one-sentence call), once `PreTrainedModel.optimize_for_inference()` turns it on (pipelines
    do).

    A general GEMM re-packs the whole weight matrix into its blocked layout on every call; with
    a few dozen input rows that packing costs as much as the multiplication. When on, for float32
    CPU inference on `PACKED_ROWS` rows (outside that range `F.linear` is as fast or faster),
    this layer multiplies by a copy of its weight packed once, on first use, into oneDNN's
    blocked layout (what IPEX and torch.compile's freezing do). The copy is re-made when the
    weight changes through the parameter (in place or replaced). It is not used while autograd
    records, under autocast, tracing or torch.compile, nor for a weight created under
    `torch.inference_mode()` (no version counter to tell changes by). Writes through `.data`
    are not seen: call `optimize_for_inference()` again after such surgery.

    Cost: the packed copy is extra memory, as large as the weight (a checkpoint's memory-mapped
    weights are read once to pack them, and are then clean page cache the kernel can reclaim).
    The results differ from `F.linear`'s by float32 rounding only (another summation order).
    """

    PACKED_ROWS = (8, 512)
    PACK_HINT = 128  # oneDNN tunes the blocked layout for about this many rows
    prepacked = False  # set per layer by PreTrainedModel.optimize_for_inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features and x.dtype == torch.float32 and x.is_cpu:
            # one row (a decode step at batch 1): a matrix-vector product streams the weight as
            # the checkpoint stores it, (out, in), as fast as a GEMM reads an (in, out) copy
            v = x.reshape(-1)
            out = torch.mv(self.weight, v) if self.bias is None else torch.addmv(self.bias, self.weight, v)
            return out.view(*x.shape[:-1], self.out_features)
        packed = self._packed(x) if self.prepacked else None
        if packed is None:
            return F.linear(x, self.weight, self.bias)
        out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)

    def forget_packed(self) -> None:
        """Drop the packed copy (the next packed call makes a new one)."""
        _packed_weights.pop(self, None)

    def _packed(self, x: torch.Tensor) -> torch.Tensor | None:
        w, b = self.weight, self.bias
        if not (_ONEDNN and x.device.type == "cpu" and x.dtype == w.dtype == torch.float32):
            self.forget_packed()  # moved or cast: the copy is of no further use
            return None
        if torch._C._get_tracing_state() or torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
            return None
        low, high = self.PACKED_ROWS
        if not low <= x.numel() // self.in_features <= high:
            return None
        if torch.is_grad_enabled() and (w.requires_grad or x.requires_grad or (b is not None and b.requires_grad)):
            return None
        if w.is_inference():
            return None
        key = (w.data_ptr(), w._version, tuple(w.shape))
        entry = _packed_weights.get(self)
        if entry is None or entry[0] != key:
            # the storage is kept with the copy so that its address cannot be reused by another weight
            entry = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), self.PACK_HINT), w.untyped_storage())
            _packed_weights[self] = entry
        return entry[1]
