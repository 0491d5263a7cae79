"""What makes CPU inference fast without changing what a model computes.

- `call`: a module call without `nn.Module.__call__`'s bookkeeping where no hook could notice.
- `plain_signature`: whether a decoder block may run as one function on its tensors instead of
  calling its modules (`haven.models._decoder.plain_plan`), and what to re-check next time.
- Weights laid out for decoding: matrices stored (in, out), layers that read the same input side
  by side in one matrix (`join_linears`, `joint_linear`, `linear_group`).
- `Linear`: `nn.Linear` with a weight prepacked once for few-row calls (the encoders' blocks).

Each path is taken only where its result is the one the module call would give (bit for bit,
or, for prepacked weights, to float32 rounding), and falls back to that call otherwise.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

# -- calling modules in hot paths ---------------------------------------------------------------------

_GLOBAL_HOOKS = tuple(
    getattr(torch.nn.modules.module, name, {})
    for name in (
        "_global_backward_pre_hooks",
        "_global_backward_hooks",
        "_global_forward_pre_hooks",
        "_global_forward_hooks",
        "_global_forward_hooks_always_called",
    )
)


def intercepted() -> bool:
    """Whether any module call may do more than its forward: global hooks, or a trace running
    (`torch.jit.trace`, or `torch.compile` capturing the model: it sees modules and hooks)."""
    return any(_GLOBAL_HOOKS) or bool(torch._C._get_tracing_state()) or torch.compiler.is_compiling()


def _no_local_hooks(m: nn.Module) -> bool:
    """No hooks on `m` itself and no `m.compile()`."""
    return not (
        m._forward_hooks
        or m._forward_pre_hooks
        or m._backward_hooks
        or m._backward_pre_hooks
        or m._compiled_call_impl is not None  # m.compile()
    )


def _forward_only(m: nn.Module) -> bool:
    """Whether `m(x)` would run `m.forward(x)` and nothing else: no hooks on `m` or global ones,
    no `m.compile()`, nothing being traced."""
    return _no_local_hooks(m) and not intercepted()


_ORIGINAL_FORWARD: dict[type, object] = {}


def register_plain(*classes: type) -> None:
    """Remember the `forward` these module classes were defined with: a path that stands in for
    their call is only taken while the class still has it (not patched over, as some libraries
    do to swap in their own kernels)."""
    for cls in classes:
        _ORIGINAL_FORWARD.setdefault(cls, cls.forward)


register_plain(nn.Linear, nn.LayerNorm)


def _plain_module(m: nn.Module, kind: type) -> bool:
    """`m` is exactly a `kind` with the forward it was defined with, `forward` not re-bound on
    the instance (as accelerate's offloading hooks do), no hooks or `m.compile()` on it."""
    return (
        type(m) is kind
        and kind.forward is _ORIGINAL_FORWARD.get(kind)
        and "forward" not in m.__dict__
        and _no_local_hooks(m)
    )


def _plain_linear(m: nn.Module) -> bool:
    """An `nn.Linear` whose call is exactly `F.linear(x, weight, bias)`: not a subclass or an
    adapter, no hooks, nothing intercepting module calls."""
    return _plain_module(m, nn.Linear) and not intercepted()


def call(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`m(x)`, minus `nn.Module.__call__`'s bookkeeping where skipping it changes nothing.

    A decode step makes a few hundred module calls on tensors of a few KB, and on CPU their
    overhead is a measurable share of the step. When `m` has no hooks, none are registered
    globally and nothing is being traced, `__call__` would run `m.forward(x)` and nothing else,
    so that is what this does; a plain `nn.Linear` goes straight to `F.linear` on its parameters.
    Anything else (hooks, `m.compile()`, a replaced or wrapped module such as an adapter) takes
    the normal call.
    """
    if not _forward_only(m):
        return m(x)
    if _plain_module(m, nn.Linear):
        p = m._parameters
        return F.linear(x, p["weight"], p["bias"])
    return m.forward(x)


_DENSE = (nn.Parameter, torch.Tensor)  # not a subclass (quantized, distributed: no plain memory to point at)


def plain_signature(modules: tuple[tuple[nn.Module, type], ...] | None, into: list) -> bool:
    """Whether a block's modules may be stood in for by a function of their tensors (see
    `plain_plan`).

    `modules` is what the block's `plain_parts()` returns: (module, expected type) pairs, or
    None when the block itself says no. True when every module is plain (`_plain_module`: its
    exact type, with the class's own forward, no hooks) and in eval mode, and every parameter is
    an ordinary dense tensor (not a tensor subclass such as a quantized or distributed weight);
    then what identifies the modules and their parameters' memory (address, shape, strides,
    dtype) is appended to `into`, so a caller can tell later whether a module was
    replaced or a parameter re-pointed (replaced, moved, cast, `.data` swapped, or viewed another
    way from the same address). A parameter replaced by another over the very same memory holds
    the same values.

    Global hooks and tracing are the caller's to check, once (`intercepted`)."""
    if modules is None:
        return False
    for m, kind in modules:
        # `_plain_module` and the eval-mode check, inlined: this runs for every module of the
        # stack on every forward
        state = m.__dict__
        if (
            type(m) is not kind
            or state["training"]
            or "forward" in state
            or state["_forward_hooks"]
            or state["_forward_pre_hooks"]
            or state["_backward_hooks"]
            or state["_backward_pre_hooks"]
            or m._compiled_call_impl is not None
            or kind.forward is not _ORIGINAL_FORWARD.get(kind)
        ):
            return False
        into.append(id(m))
        for p in state["_parameters"].values():
            if p is None:
                continue
            if type(p) not in _DENSE or p.layout is not torch.strided:
                return False
            into += (p.data_ptr(), p.shape, p.stride(), p.dtype)
    return True


_plain_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # stack owner -> (signature, plan)


def plain_plan(model: nn.Module, blocks: nn.ModuleList, x: torch.Tensor, want_weights: bool) -> list | None:
    """Per block, what its family's `plain_block` function needs (`block.plain()`), when running
    that function on it gives, bit for bit, what calling the block's modules would: inference
    (no gradient, no attention weights asked for), contiguous rows in, and every module of the
    blocks plain (`plain_signature`: exact types with their own forward, eval mode, no hooks,
    dense parameters; nothing traced or compiled). Otherwise None, and the modules are called
    as usual.

    Checked on every forward in one pass over the blocks (about 20 us per block on this
    project's machine); the tensors are gathered again only when a module, a parameter or a
    block's settings (`block.plain_settings()`: sizes, eps, activation) changed since. The
    plan is held outside the model (not copied or pickled with it) and dropped when the
    model's parameters are moved, cast or loaded (`forget_plain_plans`)."""
    if want_weights or torch.is_grad_enabled() or not x.is_contiguous() or intercepted():
        return None
    signature: list = []
    for block in blocks:
        if not plain_signature(block.plain_parts(), signature):
            return None
        signature.append(block.plain_settings())
    cached = _plain_plans.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    plan = [block.plain() for block in blocks]
    _plain_plans[model] = (signature, plan)
    return plan


def forget_plain_plans(*modules: nn.Module) -> None:
    """Drop the plans these modules hold for their blocks (the tensors in a plan stay alive
    until the next plain forward otherwise)."""
    for module in modules:
        _plain_plans.pop(module, None)


# -- weights laid out for inference -------------------------------------------------------------------
#
# On CPU a batch-1 matmul streams its weight from memory, and MKL streams a weight stored
# (in, out) faster than the (out, in) layout checkpoints hold `nn.Linear` weights in (about 10%
# per matrix, measured). Decoders re-lay their matrices that way before decoding (see
# `PreTrainedModel.optimize_for_inference`), in place: each parameter stays the same object with
# the same shape and values, now a strided view, so saving, optimizers and the reference API
# work as before (a state dict holds those views). Layers that read the same input
# (queries/keys/values, gate/up) are laid side by side in one matrix and multiplied at once
# (`joint_linear`).


def _copy_transposed(dst: torch.Tensor, src: torch.Tensor, rows: int = 64) -> None:
    """dst (in, out) = src (out, in).t(), a band of rows at a time: a whole-matrix transposing
    copy runs at about a third of the speed on CPU (measured: 400 MB in 0.4 s against 0.13 s)."""
    for start in range(0, src.shape[0], rows):
        dst[:, start : start + rows].copy_(src[start : start + rows].t())


def lay_out_transposed(p: torch.Tensor, release=None) -> None:
    """Store the 2-D parameter `p` transposed, in place (same object, shape and values; strides
    (1, rows)). `release(old)` is called with the old data once it has been copied (to give
    back a mapped checkpoint's pages). Does nothing if `p` is stored that way already, or is an
    inference tensor (made under `torch.inference_mode()`, it cannot take new data)."""
    if (p.stride(0) == 1 and p.shape[0] > 1) or p.is_inference():
        return
    with torch.no_grad(), torch.inference_mode(False):  # usable under autograd afterwards
        old = p.data
        storage = torch.empty(p.shape[1], p.shape[0], dtype=p.dtype, device=p.device)
        _copy_transposed(storage, old)
        p.data = storage.t()
    if release is not None:
        release(old)


def join_linears(linears: list[nn.Linear], release=None) -> None:
    """Lay out the weights of `linears`, which read the same input, as the column blocks of one
    (in, sum of outs) matrix, in order; their biases (if every layer has one) as one vector.

    In place: each layer keeps its (out, in) parameter objects, now views of their blocks, so the
    layers work and save as before, and `joint_linear` multiplies by the whole matrix at once.
    Joining a single layer only changes how its weight is stored. Does nothing for layers that
    are joined already, or whose parameters are inference tensors.
    """
    if not all(type(m) is nn.Linear for m in linears):  # wrapped or replaced (an adapter): leave it
        return
    if len(linears) == 1:
        lay_out_transposed(linears[0].weight, release)
        return
    if _joint_weights(linears, check_calls=False) is not None:
        return
    if any(p.is_inference() for m in linears for p in m.parameters()):
        return
    first = linears[0].weight
    total = sum(m.out_features for m in linears)
    with torch.no_grad(), torch.inference_mode(False):
        matrix = torch.empty(first.shape[1], total, dtype=first.dtype, device=first.device)
        with_bias = all(m.bias is not None for m in linears)
        bias = torch.empty(total, dtype=first.dtype, device=first.device) if with_bias else None
        col = 0
        for m in linears:
            n, old = m.out_features, m.weight.data
            _copy_transposed(matrix[:, col : col + n], old)
            m.weight.data = matrix[:, col : col + n].t()
            if release is not None:
                release(old)
            if with_bias:
                bias[col : col + n].copy_(m.bias.data)
                m.bias.data = bias[col : col + n]
            col += n


def _joint_weights(
    linears: tuple[nn.Linear, ...] | list[nn.Linear], check_calls: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight (sum of outs, in), bias or None) spanning the layers' parameters, if their
    parameters are still the adjacent blocks `join_linears` laid out (checked from the parameters
    themselves, so one replaced, moved or cast is noticed) and, with `check_calls`, the layers are plain
    `nn.Linear`s (no hooks, not wrapped); else None."""
    if check_calls and not _plain_linear(linears[0]):
        return None
    w, b0 = linears[0]._parameters.get("weight"), linears[0]._parameters.get("bias")
    if w is None or w.dim() != 2 or w.stride(0) != 1:
        return None
    width, itemsize, base = w.stride(1), w.element_size(), w.data_ptr()
    col = 0
    for m in linears:
        if check_calls and not _plain_linear(m):
            return None
        p, b = m._parameters.get("weight"), m._parameters.get("bias")
        if p is None:
            return None
        if p.data_ptr() != base + col * itemsize or p.stride() != (1, width) or p.dtype != w.dtype:
            return None
        if (b is None) != (b0 is None) or (b is not None and b.data_ptr() != b0.data_ptr() + col * itemsize):
            return None
        col += p.shape[0]
    if col != width:
        return None
    bias = None if b0 is None else b0.as_strided((width,), (1,))
    return w.as_strided((width, w.shape[1]), (1, width)), bias


def joint_linear(x: torch.Tensor, linears: tuple[nn.Linear, ...]) -> torch.Tensor:
    """The outputs of `linears` for `x`, concatenated along the last dimension.

    One matmul when `join_linears` laid the layers out together (and they are still so) and no
    gradient has to reach their parameters; otherwise each layer is called as usual (hooks,
    adapters, a model moved or cast, training) and the outputs are joined.
    """
    joint = _joint_weights(linears)
    if joint is not None and not (
        torch.is_grad_enabled()
        and any(p.requires_grad for m in linears for p in m._parameters.values() if p is not None)
    ):
        return F.linear(x, *joint)
    return torch.cat([call(m, x) for m in linears], dim=-1)


def linear_group(linears: tuple[nn.Linear, ...]) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
    """(weight, bias) pairs whose outputs, joined, are `joint_linear`'s: one pair spanning the
    layers when `join_linears` laid them out together, else one per layer (for `group_linear`)."""
    joint = _joint_weights(linears, check_calls=False)
    return (joint,) if joint is not None else tuple((m.weight, m.bias) for m in linears)


def group_linear(x: torch.Tensor, group: tuple[tuple[torch.Tensor, torch.Tensor | None], ...]) -> torch.Tensor:
    """The outputs of a `linear_group` for `x`, joined along the last dimension."""
    if len(group) == 1:
        return F.linear(x, *group[0])
    return torch.cat([F.linear(x, w, b) for w, b in group], dim=-1)


# `Linear` moved to haven.linear.dense; re-exported here until the encoders import it from there
from .linear.dense import _ONEDNN, Linear, _packed_weights  # noqa: E402,F401
