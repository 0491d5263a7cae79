"""A dtype as callers write it: a `torch.dtype`, or its name ("bfloat16", "torch.float16")."""

from __future__ import annotations

from typing import Any

import torch


def parse_dtype(value: Any, what: str = "dtype") -> torch.dtype:
    """`value` as a torch.dtype; ValueError naming `what` when it is not one."""
    if isinstance(value, torch.dtype):
        return value
    found = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(found, torch.dtype):
        raise ValueError(f"{what}={value!r} is not a dtype; pass e.g. torch.bfloat16 or 'float32'")
    return found


def dtype_or_auto(value: Any, what: str = "dtype") -> torch.dtype | None:
    """`parse_dtype`, with None and "auto" read as "the checkpoint's own" (None)."""
    return None if value is None or value == "auto" else parse_dtype(value, what)
