"""The optimizer and learning-rate schedule the Trainer builds by default.

AdamW (torch's) over two groups: weight decay for every weight except biases and normalisation
parameters (LayerNorm modules, or names with layernorm / rmsnorm / norm in them), as the reference
does. Schedules are multipliers of the base learning rate in a `LambdaLR`, stepped once per optimizer
step: linear / cosine decay after a linear warmup, or constant (with or without warmup).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import torch
from torch import nn

_NO_DECAY = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")


def decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that get weight decay."""
    norm_params = {
        f"{mod_name}.{p_name}" if mod_name else p_name
        for mod_name, module in model.named_modules()
        if isinstance(module, nn.LayerNorm)
        for p_name, _ in module.named_parameters(recurse=False)
    }
    return [n for n, _ in model.named_parameters() if n not in norm_params and not _NO_DECAY.search(n.lower())]


def create_optimizer(model: nn.Module, args: Any) -> torch.optim.Optimizer:
    decay = set(decay_parameter_names(model))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    fused = args.optim == "adamw_torch_fused"
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon, fused=fused or None)


def _linear(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _cosine(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _constant(step: int, *, warmup: int, total: int) -> float:
    return step / max(1, warmup) if step < warmup else 1.0


_SCHEDULES = {"linear": _linear, "cosine": _cosine, "constant_with_warmup": _constant}


def create_scheduler(optimizer: torch.optim.Optimizer, args: Any, num_training_steps: int
                     ) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = args.get_warmup_steps(num_training_steps)
    if args.lr_scheduler_type == "constant":
        warmup = 0  # the reference's "constant" has no warmup: use constant_with_warmup for one
    schedule = _SCHEDULES.get(args.lr_scheduler_type, _constant)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(schedule, warmup=warmup,
                                                                         total=num_training_steps))
