"""`Pipeline`: the base every task pipeline builds on.

A call runs three steps, each a method a task overrides:

    preprocess(input, **params)        one input  -> features: dict with "input_ids" (list[int])
                                        and the other model inputs ("attention_mask",
                                        "token_type_ids"), plus anything postprocess needs
    _forward(model_inputs, **params)    a padded batch: dict of (B, T) tensors on the device
                                        -> list with one output per row
    postprocess(features, output, **params)  one input's features and output -> the result

`__call__` takes one input or a list of them. A list is preprocessed (`preprocess_batch`, which
tasks may override to tokenize everything at once), sorted by length, cut into `batch_size`
chunks, padded to each chunk's longest row (`padding_side`, "right" by default), run under
`torch.inference_mode()`, and returned in the caller's order.

Parameters: `_sanitize_parameters(**kwargs)` splits keyword arguments into
(preprocess, forward, postprocess) dicts. Those given to the constructor are defaults; those
given to a call override them for that call only.

Subclasses may also set `padding_side` ("left" for decoder-only generation) and override
`_is_batch(inputs)` (what counts as a list of inputs) and `wrap_output(inputs, results, batched,
call_kwargs)` (the final shape of the answer).

Public steps, for callers that batch requests themselves (the hub's inference API does): a call
is `call_parameters(kwargs)` -> `(pre, fwd, post)`, then `preprocess_batch(items, **pre)` ->
features, then `run_features(features, params=(pre, fwd, post))` -> one result per input (padding,
the forward under inference mode and postprocess; `timing=` adds each stage's seconds), then
`wrap_output(inputs, results, batched, kwargs)`. `__call__` is exactly that sequence.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from typing import Any

import torch

from .. import loading
from ..errors import PipelineError

# Model inputs the base pads; anything else in the features is left for postprocess.
MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def parse_device(device: Any) -> torch.device:
    """None / -1 -> cpu, as pipelines take them; anything else as from_pretrained reads a device
    ("cpu", "cuda:0", an index n -> cuda:n, a torch.device, "auto")."""
    if device is None or (isinstance(device, int) and not isinstance(device, bool) and device == -1):
        return torch.device("cpu")
    try:
        return loading.parse_device(device)
    except (RuntimeError, TypeError, ValueError, KeyError):
        raise PipelineError(
            f"device={device!r} is not understood; pass None, 'cpu', -1, a GPU index like 0, or 'cuda:0'"
        ) from None


class Pipeline:
    """Base class: holds a model and tokenizer and runs preprocess -> forward -> postprocess."""

    task: str = ""
    padding_side: str = "right"

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        task: str = "",
        device: Any = None,
        batch_size: int = 1,
        **kwargs: Any,
    ) -> None:
        self.task = task or self.task
        self.tokenizer = tokenizer
        self.device = parse_device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise PipelineError(
                f"device={device!r} asks for a GPU, but this torch build sees no CUDA device; use device='cpu' (or -1)"
            )
        if model is not None and _model_device(model) != self.device:
            model = model.to(self.device)
        self.model = model
        if model is not None:
            model.eval()
            if hasattr(model, "optimize_for_inference"):  # a Haven model: prepacked weights on CPU
                model.optimize_for_inference()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise PipelineError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self._accepted = forward_arguments(model)
        self._preprocess_params, self._forward_params, self._postprocess_params = self._sanitize_parameters(
            **kwargs
        )

    # -- steps a task implements --------------------------------------------------------------------

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Split keyword arguments into (preprocess, forward, postprocess) parameters."""
        if kwargs:
            raise PipelineError(f"{type(self).__name__} got unknown arguments: {', '.join(sorted(kwargs))}")
        return {}, {}, {}

    def preprocess(self, inputs: Any, **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def preprocess_batch(self, inputs: list[Any], **params: Any) -> list[dict[str, Any]]:
        """Features of each input. Override to tokenize a whole list in one call."""
        return [self.preprocess(x, **params) for x in inputs]

    def _forward(self, model_inputs: dict[str, torch.Tensor], **params: Any) -> list[Any]:
        raise NotImplementedError

    def postprocess(self, features: dict[str, Any], output: Any, **params: Any) -> Any:
        raise NotImplementedError

    # -- helpers for tasks --------------------------------------------------------------------------

    def model_forward(self, model_inputs: dict[str, torch.Tensor]) -> Any:
        """Call the model with the inputs its forward accepts (drops token_type_ids for DistilBERT...)."""
        accepted = self._accepted
        if accepted is not None:
            model_inputs = {k: v for k, v in model_inputs.items() if k in accepted}
        return self.model(**model_inputs)

    @staticmethod
    def row_lengths(model_inputs: dict[str, torch.Tensor]) -> list[int]:
        """Unpadded length of each row of a batch (from the attention mask)."""
        mask = model_inputs.get("attention_mask")
        if mask is None:
            ids = model_inputs["input_ids"]
            return [ids.shape[1]] * ids.shape[0]
        return mask.sum(dim=1).tolist()

    @property
    def pad_token_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
        return 0 if pad is None else pad

    # -- running ------------------------------------------------------------------------------------

    def _is_batch(self, inputs: Any) -> bool:
        return isinstance(inputs, (list, tuple))

    def wrap_output(
        self, inputs: Any, results: list[Any], batched: bool, call_kwargs: dict[str, Any]
    ) -> Any:
        """The answer of a call: `results` (one per input, in order) shaped as the call's `inputs`
        and keyword arguments ask (one result for one input, unless a task answers otherwise)."""
        return results if batched else results[0]

    def __call__(self, inputs: Any, *args: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        if args:
            raise PipelineError(
                f"{type(self).__name__} takes one input (or a list of inputs) and keyword options"
            )
        pre, fwd, post = self.call_parameters(kwargs)
        if isinstance(inputs, Iterator) and not isinstance(inputs, (str, bytes)):
            return self._iterate(inputs, batch_size or self.batch_size, pre, fwd, post)
        batched = self._is_batch(inputs)
        items = list(inputs) if batched else [inputs]
        results = self.run(items, batch_size=batch_size, params=(pre, fwd, post))
        return self.wrap_output(inputs, results, batched, kwargs)

    def call_parameters(self, kwargs: dict[str, Any]) -> tuple[dict, dict, dict]:
        """(preprocess, forward, postprocess) parameters of a call with these keyword arguments:
        the constructor's, overridden by the call's (checked as the task checks a call's arguments)."""
        if not kwargs:
            return self._preprocess_params, self._forward_params, self._postprocess_params
        pre, fwd, post = self._sanitize_parameters(**kwargs)
        return (
            {**self._preprocess_params, **pre},
            {**self._forward_params, **fwd},
            {**self._postprocess_params, **post},
        )

    def _iterate(self, inputs: Iterator, batch_size: int, pre: dict, fwd: dict, post: dict) -> Iterator[Any]:
        chunk: list[Any] = []
        for item in inputs:
            chunk.append(item)
            if len(chunk) == batch_size:
                yield from self.run(chunk, batch_size=batch_size, params=(pre, fwd, post))
                chunk = []
        if chunk:
            yield from self.run(chunk, batch_size=batch_size, params=(pre, fwd, post))

    def run(
        self,
        items: list[Any],
        *,
        batch_size: int | None = None,
        params: tuple[dict, dict, dict] | None = None,
    ) -> list[Any]:
        """Results for a list of inputs, in their order (sorted by length for batching inside)."""
        pre, fwd, post = params if params is not None else self.call_parameters({})
        return self.run_features(self.preprocess_batch(items, **pre), batch_size=batch_size, params=(pre, fwd, post))

    def run_features(
        self,
        features: list[dict[str, Any]],
        *,
        batch_size: int | None = None,
        params: tuple[dict, dict, dict] | None = None,
        timing: dict[str, float] | None = None,
    ) -> list[Any]:
        """Results for preprocessed inputs (`preprocess_batch`'s features), in their order: sorted by
        length, cut into `batch_size` chunks, each padded and run; then postprocess. With `timing`, the
        seconds spent padding ("pad"), in the model ("forward") and in "postprocess" are added to it."""
        _, fwd, post = params if params is not None else self.call_parameters({})
        batch_size = batch_size or self.batch_size
        outputs: list[Any] = [None] * len(features)
        if batch_size == 1 or len(features) == 1:
            order = list(range(len(features)))
        else:
            order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
        padding = forward = 0.0
        with torch.inference_mode():
            for start in range(0, len(features), batch_size):
                idx = order[start : start + batch_size]
                began = time.perf_counter()
                batch = self.collate([features[i] for i in idx])
                padded = time.perf_counter()
                for i, out in zip(idx, self._forward(batch, **fwd)):
                    outputs[i] = out
                padding, forward = padding + padded - began, forward + time.perf_counter() - padded
        began = time.perf_counter()
        results = [self.postprocess(f, o, **post) for f, o in zip(features, outputs)]
        if timing is not None:
            for key, seconds in (("pad", padding), ("forward", forward), ("postprocess", time.perf_counter() - began)):
                timing[key] = timing.get(key, 0.0) + seconds
        return results

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad the model inputs of `features` to the longest row and stack them on the device."""
        if len(features) == 1:
            batch = {k: _as_row(v) for k, v in features[0].items() if k in MODEL_INPUT_NAMES}
        else:
            longest = max(len(f["input_ids"]) for f in features)
            batch = {}
            for key in MODEL_INPUT_NAMES:
                if key not in features[0]:
                    continue
                fill = self.pad_token_id if key == "input_ids" else 0
                rows = [_as_list(f[key]) for f in features]
                if self.padding_side == "left":
                    rows = [[fill] * (longest - len(r)) + r for r in rows]
                else:
                    rows = [r + [fill] * (longest - len(r)) for r in rows]
                batch[key] = torch.tensor(rows, dtype=torch.long)
            if "attention_mask" not in batch:
                lengths = [len(f["input_ids"]) for f in features]
                mask = torch.zeros(len(features), longest, dtype=torch.long)
                for row, n in enumerate(lengths):
                    if self.padding_side == "left":
                        mask[row, longest - n :] = 1
                    else:
                        mask[row, :n] = 1
                batch["attention_mask"] = mask
        if self.device.type != "cpu":
            batch = {k: v.to(self.device) for k, v in batch.items()}
        return batch

    def __repr__(self) -> str:
        name = getattr(self.model, "name_or_path", type(self.model).__name__)
        return f"{type(self).__name__}(task={self.task!r}, model={name!r}, device={str(self.device)!r})"


def _as_list(value: Any) -> list[int]:
    if isinstance(value, torch.Tensor):
        return value.reshape(-1).tolist()
    return list(value)


def _as_row(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.reshape(1, -1)
    return torch.tensor([value], dtype=torch.long)


def _model_device(model: Any) -> torch.device | None:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return None


def forward_arguments(model: Any) -> set[str] | None:
    """Names model.forward accepts, or None when it takes **kwargs (then pass everything)."""
    forward = getattr(model, "forward", None)
    if forward is None:
        return None
    try:
        parameters = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return set(parameters)
