"""Quantizing a whole model: which layers become `QuantizedLinear`, and filling them at load.

`replace_linears(model, config)` swaps, on a model built on the meta device, every `nn.Linear`
and GPT-2 `Conv1D` for a `QuantizedLinear` of the same shape, except: the output layer (unless
`quantize_lm_head`), layers named in `modules_to_not_convert`, and layers whose input size is
not a multiple of the group size. Embeddings and norms are never touched.

`quantize_state_dict(model, state_dict)` then turns the checkpoint's float weight of each such
layer into its codes and scales, one layer at a time, giving back the memory-mapped pages of the
float weight as soon as it is read: peak memory holds one float matrix, never the float model.
A state dict that already holds `qweight` / `scales` (a model saved quantized) passes as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from .config import QuantizationConfig
from .quantized import QuantizedLinear

logger = logging.getLogger(__name__)


def _shape(module: nn.Module) -> tuple[int, int, bool] | None:
    """(in_features, out_features, stored_transposed) of a Linear-like module, else None."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        n_in, n_out = module.weight.shape  # GPT-2's Conv1D stores (in, out)
        return n_in, n_out, True
    return None


def replace_linears(model: nn.Module, config: QuantizationConfig) -> list[str]:
    """Swap the layers `config` quantizes for `QuantizedLinear`s (in place). Returns their names."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    replaced, too_small = [], []
    for name, module in list(model.named_modules()):
        found = _shape(module)
        if found is None or config.skips(name) or (module is output and not config.quantize_lm_head):
            continue
        n_in, n_out, transposed = found
        if n_in % config.group_size:
            too_small.append(name)
            continue
        layer = QuantizedLinear(
            n_in,
            n_out,
            bias=getattr(module, "bias", None) is not None,
            bits=config.bits,
            group_size=config.group_size,
            symmetric=bool(config.symmetric),
            compute_dtype=config.compute_dtype,
            stored_transposed=transposed,
            device=module.weight.device,
        )
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, layer)
        replaced.append(name)
    if too_small:
        logger.warning(
            "%d layer(s) stay float: their input size is not a multiple of group_size %d: %s",
            len(too_small), config.group_size, ", ".join(too_small[:8]),
        )
    return replaced


def quantize_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    release: Callable[[torch.Tensor], object] | None = None,
) -> dict[str, torch.Tensor]:
    """Replace each `QuantizedLinear`'s float `<name>.weight` in `state_dict` with its
    `qweight` / `scales` / `zeros`, one layer at a time; `release(tensor)` is called on each
    float weight once it is read (give back its mapped pages). An output layer tied to the input
    embeddings is quantized from the embedding table. Other entries pass unchanged."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    if not layers:
        return state_dict
    tied = dict(getattr(model, "_tied_weights_keys", {})) if getattr(model.config, "tie_word_embeddings", True) else {}
    out = dict(state_dict)
    for name, layer in layers.items():
        key = f"{name}.weight"
        weight = out.pop(key, None)
        if weight is None and key in tied and f"{name}.qweight" not in out:
            weight = out.get(tied[key])
        if weight is None or not weight.is_floating_point():
            continue
        layer.set_float_weight(weight)
        out[f"{name}.qweight"], out[f"{name}.scales"] = layer.qweight, layer.scales
        if layer.zeros is not None:
            out[f"{name}.zeros"] = layer.zeros
        if release is not None and key in state_dict:
            release(state_dict[key])
    return out


def quantized_layers(model: nn.Module) -> dict[str, QuantizedLinear]:
    """The model's `QuantizedLinear` layers by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
