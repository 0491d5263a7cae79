"""Float linear layers whose weight can be prepacked once for oneDNN, for CPU calls on several rows.

`Prepackable` holds the packed copy and the rules for when it is used; `Linear` (the (out, in)
`nn.Linear` every Haven block calls) and GPT-2's `Conv1D` (weight stored (in, out)) plug it in.
"""

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
_packed_weights: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> (key, packed, storage)


class Prepackable:
    """A float layer computing `x W^T + b` that, once `prepacked` is set (by
    `PreTrainedModel.optimize_for_inference()`), multiplies calls of `PACKED_ROWS` rows by a
    copy of its weight packed once into oneDNN's blocked layout (what IPEX and torch.compile's
    freezing do).

    A general GEMM re-packs the whole weight matrix on every call; with a few dozen rows (an
    encoder's one sentence, a decode step of a batch) that packing costs as much as the
    multiplication. The copy is made on first use and re-made when the weight changes through
    the parameter (in place or replaced). It is not used while autograd records, under autocast,
    tracing or torch.compile, nor for a weight created under `torch.inference_mode()` (no version
    counter to tell changes by). Writes through `.data` are not seen: call
    `optimize_for_inference()` again after such surgery.

    Cost: the copy is extra memory, as large as the weight (`packed_nbytes`; a checkpoint's
    memory-mapped weights are read once to pack them, and are then clean page cache the kernel
    can reclaim). The results differ from the plain product's by float32 rounding only (another
    summation order).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    in_features: int
    PACKED_ROWS = (4, 512)  # outside this range the plain product is as fast or faster
    PACK_HINT = 128  # oneDNN tunes the blocked layout for about this many rows
    prepacked = False  # set per layer by PreTrainedModel.optimize_for_inference

    def out_in_weight(self) -> torch.Tensor:
        """The weight as (out, in), the layout oneDNN packs from."""
        return self.weight

    def packed_product(self, x: torch.Tensor) -> torch.Tensor | None:
        """`x W^T + b` through the packed copy, or None where that path does not apply. Callers
        ask only when `prepacked` is on (one attribute read on the hot path otherwise)."""
        packed = self._packed(x)
        if packed is None:
            return None
        out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], out.shape[-1])

    @property
    def packed_nbytes(self) -> int:
        """Bytes the packed copy takes once made: 0 while `prepacked` is off, or where no copy is
        ever made (a weight that is not float32 on the CPU)."""
        w = self.weight
        if not (self.prepacked and _ONEDNN and w.dtype == torch.float32 and w.device.type == "cpu"):
            return 0
        return w.numel() * w.element_size()

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
            packed = torch.ops.mkldnn._reorder_linear_weight(self.out_in_weight().detach(), self.PACK_HINT)
            entry = (key, packed, w.untyped_storage())
            _packed_weights[self] = entry
        return entry[1]


class Linear(Prepackable, nn.Linear):
    """`nn.Linear` with faster CPU inference paths: one row is a matrix-vector product on the
    weight as the checkpoint stores it, and several rows use the prepacked copy once it is on
    (see `Prepackable`; pipelines turn it on for encoders)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features and x.dtype == torch.float32 and x.is_cpu:
            # one row (a decode step at batch 1): a matrix-vector product on the weight as the
            # checkpoint stores it, (out, in). A GEMM on an (in, out) copy streams 7.5-10% faster
            # here, but a copy in that layout doubles the weights or, in place, slows 2-4 rows
            # (README, "fp32 batch 1, where the budget went")
            v = x.reshape(-1)
            out = torch.mv(self.weight, v) if self.bias is None else torch.addmv(self.bias, self.weight, v)
            return out.view(*x.shape[:-1], self.out_features)
        out = self.packed_product(x) if self.prepacked else None
        return F.linear(x, self.weight, self.bias) if out is None else out


def packed_bytes(model: nn.Module) -> int:
    """Bytes the packed copies of a model's prepacked layers take once made."""
    return sum(m.packed_nbytes for m in model.modules() if isinstance(m, Prepackable))
