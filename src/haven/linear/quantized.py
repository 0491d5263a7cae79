"""`QuantizedLinear`: a Linear layer whose weight is stored as int8 or int4 codes with group scales.

It is what `quantize_model` plugs in where a model had an `nn.Linear` (or GPT-2's `Conv1D`,
whose weight the checkpoint stores (in, out)): the block calls it as it called the float layer.
Its state dict is `qweight`, `scales`, `zeros` (asymmetric only) and `bias`, in the layout of
`haven.linear.quantize`, so a saved quantized model reloads without quantizing again.

The product runs in one of two ways, chosen per call:
- the compiled CPU kernels of `haven.linear.kernels` (one to a few rows, the decode step), when
  they built on this machine: they also round x to int8 (in small blocks) and multiply integers;
- otherwise (prefill, the kernels off or not built) the portable path: the weight is dequantized
  a tile of output rows at a time and multiplied with the float x by `F.linear`. Always
  available; the float copy never exists for more than one tile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .quantize import SCALE_DTYPE, dequantize, quantize

_TILE_BYTES = 1 << 20  # float bytes of one dequantized tile


class QuantizedLinear(nn.Module):
    """y = x W^T + b with W held as codes + scales (see `haven.linear.quantize`)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        bits: int,
        group_size: int,
        symmetric: bool,
        compute_dtype: torch.dtype | None = None,
        stored_transposed: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.symmetric = bits, group_size, symmetric
        self.compute_dtype = compute_dtype
        # a float checkpoint stores this layer's weight (in, out) (GPT-2's Conv1D)
        self.stored_transposed = stored_transposed
        groups = in_features // group_size
        cols = in_features if bits == 8 else in_features // 2
        code = torch.int8 if bits == 8 else torch.uint8
        self.register_buffer("qweight", torch.empty(out_features, cols, dtype=code, device=device))
        self.register_buffer("scales", torch.empty(out_features, groups, dtype=SCALE_DTYPE, device=device))
        if symmetric:
            self.zeros = None
        else:
            self.register_buffer("zeros", torch.empty(out_features, groups, dtype=SCALE_DTYPE, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, device=device), requires_grad=False) if bias else None

    def extra_repr(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"int{self.bits}, group_size={self.group_size}, {kind}"
        )

    def set_float_weight(self, weight: torch.Tensor) -> None:
        """Quantize `weight` ((out, in), or (in, out) if `stored_transposed`) into this layer."""
        if self.stored_transposed:
            weight = weight.t()
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight of shape {tuple(weight.shape)} does not fit {self.extra_repr()}")
        q = quantize(weight, self.bits, self.group_size, self.symmetric)
        self.qweight, self.scales = q.qweight, q.scales
        if not self.symmetric:
            self.zeros = q.zeros

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float (out, in) weight the codes stand for."""
        return dequantize(self.qweight, self.scales, self.zeros, self.bits, self.group_size, dtype)

    def same_format(self, other: QuantizedLinear) -> bool:
        """Whether one kernel call can multiply x by both layers' codes."""
        return (type(other) is type(self) and other.in_features == self.in_features and other.bits == self.bits
                and other.group_size == self.group_size and other.symmetric == self.symmetric
                and other.compute_dtype == self.compute_dtype)

    @staticmethod
    def by_kernel(layers: list[QuantizedLinear], x: torch.Tensor) -> list[torch.Tensor] | None:
        """`[layer(x) for layer in layers]` by one call of the compiled kernel (up to
        `kernels.MAX_LAYERS` layers of the same format; the outputs are views of one tensor), or
        None where the kernel does not apply: many rows, autograd, not the CPU, the kernels off
        or not built (each layer's float path runs then)."""
        if (
            x.device.type != "cpu"
            or x.numel() > kernels.MAX_ROWS * layers[0].in_features
            or (torch.is_grad_enabled() and x.requires_grad)
        ):
            return None
        out = kernels.run(layers, x)
        if out is None:
            return None
        out = out if out.dtype == x.dtype else out.to(x.dtype)
        return [out] if len(layers) == 1 else list(out.split([layer.out_features for layer in layers], dim=-1))

    def _apply(self, fn, *args, **kwargs):
        """Moves and casts (`model.to(torch.bfloat16)`) apply to the bias; the scales and zeros
        stay float16, the format the codes were chosen for and the kernels read."""
        out = super()._apply(fn, *args, **kwargs)
        self._scales_as_stored()
        return out

    def _scales_as_stored(self) -> None:
        if self.scales.is_floating_point() and self.scales.dtype != SCALE_DTYPE:
            self.scales = self.scales.to(SCALE_DTYPE)
        if self.zeros is not None and self.zeros.is_floating_point() and self.zeros.dtype != SCALE_DTYPE:
            self.zeros = self.zeros.to(SCALE_DTYPE)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A model saved by a Haven that kept float32 scales and zeros loads with them rounded to
        float16 (the codes stay as saved)."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._scales_as_stored()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.by_kernel([self], x)
        if out is not None:
            return out[0]
        dtype = self.compute_dtype or x.dtype
        h = x.to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        tile = max(self.group_size, _TILE_BYTES // (self.in_features * dtype.itemsize))
        if tile >= self.out_features:
            return F.linear(h, self.dequantized(dtype), bias).to(x.dtype)
        parts = []
        for r in range(0, self.out_features, tile):
            z = None if self.zeros is None else self.zeros[r : r + tile]
            w = dequantize(self.qweight[r : r + tile], self.scales[r : r + tile], z, self.bits, self.group_size, dtype)
            parts.append(F.linear(h, w, None if bias is None else bias[r : r + tile]))
        return torch.cat(parts, dim=-1).to(x.dtype)
