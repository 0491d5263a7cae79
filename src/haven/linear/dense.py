"""Float linear layers and the CPU paths they choose per call.

- `in_out_product`: 2-8 rows (a decode step of a small batch or a few beams) times a weight
  stored (in, out), by the compiled `haven::dense_rows` kernel (`kernels/dense_rows.cpp` says why that
  layout and that kernel).
- `Prepackable`: a copy of the weight packed once for oneDNN, for calls of a few dozen rows.
- `Linear`, the `nn.Linear` every Haven block calls: its weight has the checkpoint's (out, in)
  shape, and `store_in_out` (which `optimize_for_inference()` calls for decoders) re-lays it in
  memory as (in, out), the layers a block multiplies one input by side by side in one matrix
  (`joined`). GPT-2's `Conv1D` has its weight stored (in, out) in the checkpoint.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import copy_releasing
from . import kernels

_ONEDNN = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)
_packed_weights: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> (key, packed, storage)


def in_out_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """`x @ weight + bias` for an (in, out) `weight` with contiguous rows and 2 to `kernels.DENSE_MAX_ROWS`
    rows of x, by `haven::dense_rows`. None where that kernel is not the one to run: one row
    (MKL's GEMM streams this layout as fast, measured in a model's loop of products), more
    rows, not float32 on the CPU, autograd recording, autocast or tracing on, or the kernel not
    built for this CPU. Callers run it between memory-bound products, where each check costs
    more than in a warm loop, so the checks are few and cheap."""
    if weight.stride(1) != 1 or not _few_rows(x, (weight, bias), weight.shape[0], torch.float32, 2):
        return None
    if not kernels.dense_available():
        return None
    return torch.ops.haven.dense_rows.default(x, weight, bias)


def bf16_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *more: torch.Tensor | None) -> torch.Tensor | None:
    """`x @ weight.T + bias` for a bfloat16 (out, in) `weight` whose rows (a Linear's) or columns
    (a Conv1D's weight, transposed) are contiguous, and 1 to `kernels.DENSE_MAX_ROWS` rows of x,
    by `haven::bf16_rows` (`kernels/bf16_rows.cpp` has the speeds); `more`: up to two further
    weights and biases, (weight2, bias2, weight3, bias3), with contiguous rows, multiplying the
    same x in the same call (a block's q, k and v), their outputs side by side. None where it
    does not apply, as `in_out_product`."""
    k = weight.shape[1]
    if 1 not in weight.stride() or not _few_rows(x, (weight, bias, *more), k, torch.bfloat16, 1):
        return None
    if any(w.shape[1] != k or w.stride(1) != 1 for w in more[0::2]) or (more and weight.stride(1) != 1):
        return None
    if not kernels.bf16_available():
        return None
    return torch.ops.haven.bf16_rows.default(x, weight, bias, *more)


def _few_rows(x: torch.Tensor, weights_and_biases: tuple, k: int, dtype: torch.dtype, least: int) -> bool:
    """Whether a few-row kernel can take the product of x and the (weight, bias, weight2, bias2
    ...) given: `least` to DENSE_MAX_ROWS rows of `k` inputs, all `dtype` on the CPU, the biases
    contiguous, and nothing recording (autograd, autocast, tracing)."""
    if not (least * k <= x.numel() <= kernels.DENSE_MAX_ROWS * k and 0 < k and x.dtype == dtype and x.is_cpu):
        return False
    if torch.is_autocast_enabled("cpu") or torch._C._get_tracing_state():
        return False
    grad = torch.is_grad_enabled()
    if grad and x.requires_grad:
        return False
    for t in weights_and_biases:
        if t is not None and (t.dtype != dtype or (grad and t.requires_grad) or (t.dim() == 1 and t.stride(0) != 1)):
            return False
    return True


def in_out_mm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`x @ weight + bias` for an (in, out) `weight`, by MKL's GEMM on x's rows as one matrix:
    what F.linear computes, without `matmul`'s handling of leading dimensions (about 20 us a
    call, 3% of a Llama decode step)."""
    rows = x.reshape(-1, weight.shape[0])
    out = torch.mm(rows, weight) if bias is None else torch.addmm(bias, rows, weight)
    return out.view(*x.shape[:-1], weight.shape[1])


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
            packed = torch.ops.mkldnn._reorder_linear_weight(self.out_in_weight().detach().contiguous(), self.PACK_HINT)
            entry = (key, packed, w.untyped_storage())
            _packed_weights[self] = entry
        return entry[1]


class Linear(Prepackable, nn.Linear):
    """`nn.Linear` with faster CPU inference paths. Once `store_in_out` has re-laid the weight,
    2 to 8 rows run `in_out_product` (the few-row kernel), and one row or more rows a GEMM on
    that layout; as loaded, one row is a matrix-vector product. Several rows use the prepacked
    copy once it is on (see `Prepackable`; pipelines turn it on for encoders). A bfloat16
    weight, in either layout, multiplies 1 to 8 rows by `bf16_product`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if w.dtype == torch.bfloat16:  # either layout
            out = bf16_product(x, w, self.bias)
            if out is not None:
                return out
        if w.stride(1) != 1:  # held (in, out): store_in_out
            out = in_out_product(x, w.t(), self.bias) if x.numel() > self.in_features else None
            if out is None and self.prepacked:
                out = self.packed_product(x)
            return in_out_mm(x, w.t(), self.bias) if out is None else out
        if x.numel() == self.in_features and x.dtype == torch.float32 and x.is_cpu:
            # one row, the checkpoint's (out, in) layout: a matrix-vector product (as fast as
            # F.linear's GEMM here, without its set-up)
            v = x.reshape(-1)
            out = torch.mv(w, v) if self.bias is None else torch.addmv(self.bias, w, v)
            return out.view(*x.shape[:-1], self.out_features)
        out = self.packed_product(x) if self.prepacked else None
        return F.linear(x, w, self.bias) if out is None else out

    @property
    def stored_in_out(self) -> bool:
        """Whether the weight is held (in, out) in memory (`store_in_out`)."""
        return self.weight.stride(1) != 1


def store_in_out(
    layers: Sequence[Linear], enabled: bool = True, release: Callable[[torch.Tensor], object] | None = None
) -> bool:
    """Hold the float32 CPU weights of `layers`, which multiply the same input (a block's q, k
    and v; or one layer), (in, out) in memory, side by side as the column blocks of one matrix
    (their biases likewise, when all have one), where `haven::dense_rows` runs on this CPU; or
    (`enabled=False`, or where the kernel does not run) each back (out, in). Returns whether
    they are held (in, out) now.

    Each parameter keeps its identity, its (out, in) shape and its values: it becomes a
    transposed view of its block, so ties (GPT-2's output layer and its token embedding), state
    dicts and saving see the same weight, and `joined()` finds the matrix the layers make
    together (`project()` multiplies by it in one call). On this layout one row streams a few
    percent faster (MKL's GEMM), 2-8 rows run the few-row kernel (1.05-1.1x faster than the
    checkpoint's layout at 2-3 rows, 1.5-1.66x at 4-8) and more rows a GEMM as fast or faster
    (measured in `kernels/dense_rows.cpp`). `release` is called with each old weight once copied
    (the loader's `release_mapped_pages`, so a memory-mapped checkpoint's pages leave the process
    as the copies are made)."""
    weights = [layer.weight for layer in layers]
    first = weights[0]
    want = (
        enabled
        and all(w.dtype == torch.float32 and w.device.type == "cpu" and min(w.shape) > 1 for w in weights)
        and all(w.shape[1] == first.shape[1] for w in weights)
        and kernels.dense_available()
    )
    if want and (joined(layers) is not None if len(layers) > 1 else first.stride(1) != 1):
        return True
    if not want:
        for layer in layers:
            if layer.stored_in_out:
                _replace(layer, "weight", layer.weight.detach().contiguous(), release=None)
        return False
    outs = [w.shape[0] for w in weights]
    matrix = torch.empty(first.shape[1], sum(outs))
    biases = torch.empty(sum(outs)) if all(layer.bias is not None for layer in layers) else None
    column = 0
    for layer, out in zip(layers, outs):
        block = matrix[:, column : column + out]
        copy_releasing(layer.weight.detach(), block.t(), _COPY_ROWS, release)  # peak memory: one slice more
        _replace(layer, "weight", block.t(), release)
        if biases is not None:
            biases[column : column + out].copy_(layer.bias.detach())
            _replace(layer, "bias", biases[column : column + out], release)
        column += out
    return True


_COPY_ROWS = 512  # rows of an old weight copied (and released) at a time by store_in_out


def _replace(layer: Linear, name: str, value: torch.Tensor, release: Callable[[torch.Tensor], object] | None) -> None:
    """Give the parameter `name` of `layer` the tensor `value` (same values), keeping the parameter."""
    param = getattr(layer, name)
    old = param.detach()
    with torch.no_grad():
        param.data = value
    if release is not None:
        release(old)
    layer.forget_packed()


def joined(layers: Sequence[Linear]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The (in, sum of outs) matrix whose column blocks the layers' weights are, in order (as
    `store_in_out` lays them), and the bias made of theirs (None when none has one); None when
    they are not so laid (then each is multiplied on its own). Every element of the matrix
    belongs to one of the weights, so the view is safe whatever the layers went through."""
    first = layers[0].weight
    ld = first.stride(1)
    if ld == 1:
        return None
    size = first.element_size()
    column = first.shape[0]
    bias0 = layers[0].bias
    for layer in layers[1:]:
        w, b = layer.weight, layer.bias
        if w.stride(1) != ld or w.stride(0) != 1 or w.shape[1] != first.shape[1] or w.dtype != first.dtype:
            return None
        if w.data_ptr() != first.data_ptr() + column * size:
            return None
        if (b is None) != (bias0 is None) or (b is not None and (b.data_ptr() != bias0.data_ptr() + column * size or b.stride(0) != 1)):
            return None
        column += w.shape[0]
    if column > ld:
        return None
    matrix = first.t().as_strided((first.shape[1], column), (ld, 1))
    bias = None if bias0 is None else bias0.as_strided((column,), (1,))
    return matrix, bias


def packed_bytes(model: nn.Module) -> int:
    """Bytes the packed copies of a model's prepacked layers take once made."""
    return sum(m.packed_nbytes for m in model.modules() if isinstance(m, Prepackable))
