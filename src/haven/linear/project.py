"""`project(x, *layers)`: the projections a block makes of one input, e.g. a layer's q, k and v.

The block says what it computes, `tuple(layer(x) for layer in layers)`; which calls run is decided
here, outside its math:
- quantized layers of one format run as one call of the compiled kernel: x is rounded to int8
  once and one parallel region covers all their output rows (on the ~120M Llama shape, 49 kernel
  calls per decode step instead of 85);
- float32 layers that `optimize_for_inference()` laid side by side (`dense.store_in_out`) run as
  one product by the matrix they make together (`dense.joined`) for up to 8 rows (a decode
  step): the few-row kernel, or MKL's GEMM at one row;
- bfloat16 layers (up to three) run as one call of the bfloat16 few-row kernel for up to 8 rows,
  their weights as loaded (`dense.bf16_product`).
The outputs are then views of one tensor. Anything else calls each layer as a module: layers laid
out apart, a layer with hooks (an adapter, a probe), autograd, many rows (each layer's prepacked
copy, where it has one).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module

from . import kernels
from .dense import Linear, bf16_product, in_out_mm, in_out_product, joined
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
    elif (
        len(layers) > 1
        and all(type(layer) is Linear for layer in layers)
        and x.numel() <= kernels.DENSE_MAX_ROWS * first.in_features  # a decode step; more rows: prepacked copies
        and not _records_grad(x, layers)
        and not _hooked(layers)
    ):
        y = None
        if first.weight.dtype == torch.bfloat16 and len(layers) <= kernels.MAX_LAYERS:
            y = bf16_product(x, *(t for layer in layers for t in (layer.weight, layer.bias)))
        elif not torch.compiler.is_compiling():  # joined() reads data pointers, which break a graph
            matrix = joined(layers)
            if matrix is not None:
                weight, bias = matrix
                y = in_out_product(x, weight, bias)
                if y is None:
                    y = in_out_mm(x, weight, bias)
        if y is not None:
            return tuple(y.split([layer.out_features for layer in layers], dim=-1))
    return tuple(layer(x) for layer in layers)


def _records_grad(x: torch.Tensor, layers: tuple[nn.Module, ...]) -> bool:
    """Whether autograd would record the product (the joined matrix is a view of the first
    weight only, so gradients must flow through each layer's own call)."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for layer in layers for p in layer.parameters()))


def _hooked(layers: tuple[nn.Module, ...]) -> bool:
    """Whether calling the layers as modules would run hooks (theirs or the global ones)."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers)
