"""PreTrainedModel: from_pretrained / save_pretrained / push_to_hub for every architecture.

Loading builds the module on the `meta` device (no memory, no random init), memory-maps the
weights and assigns them in place, so a model costs one mapping of its file and no copy.
Subclasses declare:

- `config_class`, `base_model_prefix` (`"bert"`: heads hold the base model under that name);
- `_tied_weights_keys`: {target: source} parameters shared when `config.tie_word_embeddings`;
- `_ignore_unexpected` / `_ignore_missing`: regexes for keys that are fine to skip;
- `sanitize(state_dict)`: a hook for the few checkpoint quirks of a family;
- `_init_weights(module)`: random initialisation, used for models built from a config and
  for parameters a checkpoint does not provide (say a fresh classification head).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import (
    PT_WEIGHTS_INDEX_NAME,
    PT_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    load_safetensors,
    load_torch_bin,
    read_index,
    release_mapped_pages,
    save_state_dict,
)
from .config import PretrainedConfig
from .errors import CheckpointError, ConfigError
from .fastpath import Linear, forget_plain_plans
from .hub import resolve_file
from .hub.mixin import PushToHubMixin

logger = logging.getLogger(__name__)

_LAY_OUT_LOCK = threading.Lock()  # two pipelines preparing one model at once lay it out once

_HUB_KWARGS = ("token", "cache_dir", "local_files_only", "force_download")


class PreTrainedModel(nn.Module, PushToHubMixin):
    config_class: ClassVar[type[PretrainedConfig]] = PretrainedConfig
    base_model_prefix: ClassVar[str] = ""
    main_input_name: ClassVar[str] = "input_ids"
    _tied_weights_keys: ClassVar[dict[str, str]] = {}
    _ignore_unexpected: ClassVar[list[str]] = []
    _ignore_missing: ClassVar[list[str]] = []

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        if not isinstance(config, PretrainedConfig):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}; "
                f"use {type(self).__name__}.from_pretrained(path) to load a checkpoint"
            )
        self.config = config
        self.generation_config = None

    # -- construction ------------------------------------------------------------------------------

    def post_init(self) -> None:
        """Call at the end of a subclass __init__: random init (unless on meta) and tying."""
        if not _on_meta(self):
            self.apply(self._init_weights)
        self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Module | None:
        return None

    def get_output_embeddings(self) -> nn.Module | None:
        return None

    def tie_weights(self) -> None:
        if not getattr(self.config, "tie_word_embeddings", True):
            return
        for target, source in self._tied_weights_keys.items():
            module_name, _, attr = target.rpartition(".")
            src = self.get_parameter(source)
            setattr(self.get_submodule(module_name), attr, src)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.get_default_dtype()

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        seen: set[int] = set()
        total = 0
        for name, p in self.named_parameters():
            if id(p) in seen or (exclude_embeddings and "embed" in name):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    def _apply(self, fn, *args, **kwargs):
        """Every move or cast (`.to()`, `.half()`, `.cuda()`...) goes through here: a decoder's
        cached plain plan holds the old tensors, so it is dropped first."""
        forget_plain_plans(self)
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, state_dict, *args, **kwargs):
        """`nn.Module.load_state_dict`, dropping the cached plain plans first (with `assign=True`
        they would hold the replaced tensors until the next forward)."""
        forget_plain_plans(*self.modules())
        return super().load_state_dict(state_dict, *args, **kwargs)

    def optimize_for_inference(self, enabled: bool = True) -> PreTrainedModel:
        """Prepare float32 CPU inference (pipelines call this). Returns the model.

        - Encoders: a call on a few rows at a time multiplies by weights prepacked once
          (`haven.fastpath.Linear`; 1.2-1.5x on a one-sentence call), or stops (`enabled=False`).
          The packed copies are made on first use and cost memory as large as those weights.
          They follow changes made through the parameters, but writes through `.data` are not
          seen: calling this again drops every copy made so far.
        - Decoders: their matrices are re-laid out for decoding one sequence at a time
          (`lay_out_weights`): stored transposed, q/k/v and gate/up side by side (1.1-1.2x
          faster at batch 1). With 2-4 rows per step (a small batch, beam search) the transposed
          matrices are slower on CPU (0.56-0.84x, measured for Llama): leave them as loaded for
          that. In place, once, no extra memory; the parameters keep their objects, shapes and
          values, but they are strided views from then on: `save_pretrained` writes the usual
          files, while `safetensors.torch.save_file(model.state_dict())` needs `.contiguous()`
          tensors."""
        for module in self.modules():
            if isinstance(module, Linear):
                module.prepacked = enabled
                module.forget_packed()
        if enabled:
            self.lay_out_weights()
        return self

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any) -> PreTrainedModel:
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        model = cls(config, **kwargs)
        if dtype is not None:
            model = model.to(_parse_dtype(dtype))
        return model

    # -- loading -----------------------------------------------------------------------------------

    def sanitize(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename or drop checkpoint keys for this family's quirks. Default: none."""
        return state_dict

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        *,
        config: PretrainedConfig | None = None,
        dtype: torch.dtype | str | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        **kwargs: Any,
    ) -> PreTrainedModel:
        """Load a checkpoint directory or hub repository.

        `dtype`: None / "auto" keep the checkpoint's dtype; a torch dtype (or its name) casts.
        Extra keyword arguments override config values (`num_labels=3`, `output_attentions=True`).
        """
        if dtype is None:
            dtype = kwargs.pop("torch_dtype", None)
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        hub["revision"] = revision
        if config is None:
            config = cls.config_class.from_pretrained(path_or_id, **hub, **kwargs)
        else:
            for key, value in kwargs.items():
                setattr(config, key, value)
        state_dict = load_checkpoint(path_or_id, **hub)

        with torch.device("meta"), _skip_reset_parameters():
            model = cls(config)
        info = model.load_weights(state_dict, ignore_mismatched_sizes=ignore_mismatched_sizes)
        target = _parse_dtype(dtype)
        if target is not None and target != model.dtype:
            model = model.to(target)
        if device is not None:
            model = model.to(device)
        model.name_or_path = str(path_or_id)
        model._load_generation_config(path_or_id, hub)
        model.eval()
        return (model, info) if output_loading_info else model

    def lay_out_weights(self) -> None:
        """Re-lay a float32 CPU model's weights for inference where its modules know how (their
        own `_lay_out(release)`: decoders store their matrices transposed and join
        q/k/v and gate/up; see `haven.fastpath.join_linears`).

        In place and once: parameters keep their objects, shapes and values, so saved files,
        optimizers and code holding them see no difference (state dict entries are strided
        views). Each matrix is copied (about 0.3-0.5 s per GB) and the checkpoint pages it came
        from are given back to the kernel as the copy is made, so resident memory does not
        grow. Other devices and dtypes, and models loaded under `torch.inference_mode()`: nothing.
        """
        if self.device.type != "cpu" or self.dtype != torch.float32:
            return
        with _LAY_OUT_LOCK:
            for module in self.modules():
                lay_out = getattr(module, "_lay_out", None)
                if callable(lay_out):
                    lay_out(release_mapped_pages)

    def _load_generation_config(self, path_or_id: str | os.PathLike, hub: dict[str, Any]) -> None:
        """Decoder families override this to read generation_config.json."""

    def load_weights(
        self, state_dict: dict[str, torch.Tensor], *, ignore_mismatched_sizes: bool = False
    ) -> dict[str, list[str]]:
        """Assign `state_dict` into this (possibly meta) model. Returns missing/unexpected keys."""
        state_dict = self.sanitize(_rename_legacy(state_dict))
        expected = {k: v for k, v in self.state_dict(keep_vars=True).items()}
        state_dict = _match_prefix(state_dict, set(expected), self.base_model_prefix)

        tied = set(self._tied_weights_keys) if getattr(self.config, "tie_word_embeddings", True) else set()
        mismatched = []
        for key, tensor in list(state_dict.items()):
            if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
                if not ignore_mismatched_sizes:
                    raise CheckpointError(
                        f"shape mismatch for {key}: the checkpoint has {tuple(tensor.shape)}, the model built "
                        f"from its config expects {tuple(expected[key].shape)}. The config and weights do not "
                        "belong together; pass ignore_mismatched_sizes=True to re-initialise such weights"
                    )
                mismatched.append(key)
                del state_dict[key]
        for key in tied:
            state_dict.pop(key, None)  # shared with its source; assigned by tie_weights
        unexpected = [k for k in state_dict if k not in expected]
        for key in unexpected:
            del state_dict[key]
        dtype = next((t.dtype for t in state_dict.values() if t.is_floating_point()), torch.get_default_dtype())
        self.load_state_dict(state_dict, strict=False, assign=True)
        missing = [k for k in expected if k not in state_dict and k not in tied]
        self._materialize(missing, dtype)
        self.tie_weights()

        unexpected = [k for k in unexpected if not _matches(k, self._ignore_unexpected)]
        reported_missing = [k for k in missing if not _matches(k, self._ignore_missing)]
        name = type(self).__name__
        if unexpected:
            logger.warning("Some checkpoint weights were not used by %s: %s", name, _preview(unexpected))
        if reported_missing:
            logger.warning(
                "Some weights of %s were not in the checkpoint and are newly initialized: %s. "
                "You should probably TRAIN this model on a downstream task before using it for predictions.",
                name,
                _preview(reported_missing),
            )
        return {"missing_keys": reported_missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}

    def _materialize(self, missing: list[str], dtype: torch.dtype) -> None:
        """Give missing (still meta) parameters real memory and a random init."""
        if not missing:
            return
        modules = {}
        for key in missing:
            module_name, _, attr = key.rpartition(".")
            module = self.get_submodule(module_name)
            old = getattr(module, attr)
            new = torch.empty(old.shape, dtype=dtype if old.is_floating_point() else old.dtype)
            if isinstance(old, nn.Parameter):
                setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                module.register_buffer(attr, new)
            modules[module_name] = module
        missing_set = set(missing)
        for module_name, module in modules.items():
            # _init_weights(module) resets all of the module's own tensors: hand it throwaway
            # stand-ins for the ones that were loaded, then put the loaded ones back.
            prefix = f"{module_name}." if module_name else ""
            loaded = {
                n: p for n, p in module.named_parameters(recurse=False) if prefix + n not in missing_set
            }
            for n, p in loaded.items():
                setattr(module, n, nn.Parameter(torch.empty_like(p), requires_grad=p.requires_grad))
            with torch.no_grad():
                self._init_weights(module)
            for n, p in loaded.items():
                setattr(module, n, p)

    # -- saving ------------------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        max_shard_size: int | str = "5GB",
        state_dict: dict[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Write config.json (+ generation_config.json) and safetensors weights."""
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise CheckpointError(f"{save_directory} is a file; save_pretrained needs a directory")
        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.save_pretrained(save_directory)
        if self.generation_config is not None:
            self.generation_config.save_pretrained(save_directory)
        if state_dict is None:
            state_dict = self.state_dict()
        state_dict = _dedupe_shared(state_dict)
        return ["config.json", *save_state_dict(state_dict, save_directory, max_shard_size)]


# -- helpers ------------------------------------------------------------------------------------------


def load_checkpoint(path_or_id: str | os.PathLike, **hub: Any) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: single or sharded safetensors, else a legacy .bin."""
    for index_name, single_name, loader in (
        (SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, load_safetensors),
        (PT_WEIGHTS_INDEX_NAME, PT_WEIGHTS_NAME, load_torch_bin),
    ):
        single = resolve_file(path_or_id, single_name, optional=True, **hub)
        if single:
            return loader(single)
        index = resolve_file(path_or_id, index_name, optional=True, **hub)
        if index:
            weight_map = read_index(index)
            state_dict: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                shard_path = resolve_file(path_or_id, shard, optional=True, **hub)
                if shard_path is None:
                    raise CheckpointError(f"{index_name} lists {shard}, which is missing from {path_or_id}")
                state_dict.update(loader(shard_path))
            return state_dict
    raise CheckpointError(
        f"no weights found in {os.fspath(path_or_id)}: expected {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} "
        f"or {PT_WEIGHTS_NAME}. Save the model with save_pretrained() or check the path"
    )


def _rename_legacy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old TF-converted checkpoints call LayerNorm parameters gamma/beta."""
    out = {}
    for key, value in state_dict.items():
        if "LayerNorm" in key:
            key = re.sub(r"\.gamma$", ".weight", key)
            key = re.sub(r"\.beta$", ".bias", key)
        out[key] = value
    return out


def _match_prefix(state_dict: dict[str, torch.Tensor], expected: set[str], prefix: str) -> dict[str, torch.Tensor]:
    """Accept checkpoints saved with or without the base-model prefix (`bert.`)."""
    if not prefix:
        return state_dict
    dot = prefix + "."
    model_has = any(k.startswith(dot) for k in expected)
    ckpt_has = any(k.startswith(dot) for k in state_dict)
    if model_has and not ckpt_has:  # base-model checkpoint into a model with a head
        return {(dot + k if dot + k in expected else k): v for k, v in state_dict.items()}
    if not model_has and ckpt_has:  # checkpoint with a head into the base model
        return {(k[len(dot) :] if k.startswith(dot) else k): v for k, v in state_dict.items()}
    return state_dict


def _dedupe_shared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage: keep the first name of tensors that alias each other."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    out = {}
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen[key] = name
        out[name] = tensor.detach()
    return out


def _matches(key: str, patterns: list[str]) -> bool:
    return any(re.search(p, key) for p in patterns)


def _preview(keys: list[str], n: int = 8) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" ... ({len(keys) - n} more)" if len(keys) > n else "")


@contextmanager
def _skip_reset_parameters() -> Iterator[None]:
    """Skip torch's default init in layer constructors while they build on the meta device.

    Weights come from the checkpoint, and the ones it lacks get `_init_weights` in
    `_materialize`, so the constructors' own random init would only be thrown away. The patch is
    class-wide, so it skips only layers whose weight is on meta: a real layer built meanwhile on
    another thread is still initialised.
    """
    classes = (nn.Linear, nn.Embedding, nn.LayerNorm)
    saved = [cls.__dict__["reset_parameters"] for cls in classes]
    for cls, original in zip(classes, saved):
        cls.reset_parameters = _reset_unless_meta(original)
    try:
        yield
    finally:
        for cls, original in zip(classes, saved):
            cls.reset_parameters = original


def _reset_unless_meta(original):
    def reset_parameters(self: nn.Module) -> None:
        weight = getattr(self, "weight", None)
        if weight is None or not weight.is_meta:
            original(self)

    return reset_parameters


def _on_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


def _parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. torch.float32, 'float16' or 'bfloat16'")
    return value
