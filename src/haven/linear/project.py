"""`project(x, *layers)`: the projections a block makes of one input, e.g. a layer's q, k and v.

The block says what it computes, `tuple(layer(x) for layer in layers)`; which calls run is decided
here, outside its math. Quantized layers of one format run as one call of the compiled kernel: x is
rounded to int8 once and one parallel region covers all their output rows (on the ~120M Llama
shape, 49 kernel calls per decode step instead of 85); the outputs are views of one tensor.
Anything else calls each layer as a module: float layers, a layer with hooks (an adapter, a
probe), autograd, many rows.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module

from . import kernels
from .quantized import QuantizedLinear


def project(x: torch.Tensor, *layers: nn.Module) -> tuple[torch.Tensor, ...]:
    """Each layer applied to x, as `tuple(layer(x) for layer in layers)` gives them."""
    first = layers[0]
    if (
        type(first) is QuantizedLinear
        and len(layers) <= kernels.MAX_LAYERS
        and all(first.same_format(other) for other in layers[1:])
        and not _hooked(layers)
    ):
        outs = QuantizedLinear.by_kernel(list(layers), x)
        if outs is not None:
            return tuple(outs)
    return tuple(layer(x) for layer in layers)


def _hooked(layers: tuple[nn.Module, ...]) -> bool:
    """Whether calling the layers as modules would run hooks (theirs or the global ones)."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers)
