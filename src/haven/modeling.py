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

import copy
import functools
import logging
import os
import re
import threading
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import (
    cast_floats,
    dedupe_shared,
    load_checkpoint,
    match_prefix,
    release_mapped_pages,
    rename_legacy,
    save_state_dict,
)
from .config import PretrainedConfig
from .dtypes import dtype_or_auto
from .errors import CheckpointError, ConfigError
from .hub.mixin import PushToHubMixin
from .linear.dense import Linear, Prepackable, store_in_out
from .linear.quantized import QuantizedLinear
from .linear.replace import quantize_state_dict
from .loading import (
    LoadOptions,
    checkpoint_quantization,
    init_parameters,
    local_path,
    place,
    skip_reset_parameters,
)

logger = logging.getLogger(__name__)
_state_dict_call = threading.local()  # set while a model's state_dict() runs (see state_dict)


class LayerLoop:
    """Mixed into the modules that run a stack of layers (encoder stacks, decoder models): each
    layer goes through `call_layer`, which checkpoints it when gradient checkpointing is on
    (`PreTrainedModel.gradient_checkpointing_enable`), the module trains and grad is enabled."""

    gradient_checkpointing: bool = False
    checkpoint_fn: Any = None
    training: bool

    @property
    def checkpointing(self) -> bool:
        """Whether layers are checkpointed in this call."""
        return self.gradient_checkpointing and self.training and torch.is_grad_enabled()

    def call_layer(self, layer: Any, *args: Any) -> Any:
        return self.checkpoint_fn(layer, *args) if self.checkpointing else layer(*args)


class PreTrainedModel(nn.Module, PushToHubMixin):
    config_class: ClassVar[type[PretrainedConfig]] = PretrainedConfig
    base_model_prefix: ClassVar[str] = ""
    main_input_name: ClassVar[str] = "input_ids"
    _tied_weights_keys: ClassVar[dict[str, str]] = {}
    _ignore_unexpected: ClassVar[list[str]] = []
    _ignore_missing: ClassVar[list[str]] = []
    prepack_weights: ClassVar[bool] = True  # optimize_for_inference() prepacks the Linear layers' weights
    store_weights_in_out: ClassVar[bool] = False  # optimize_for_inference() re-lays float Linear weights (in, out)

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
            module = self.get_submodule(module_name)
            if isinstance(module, QuantizedLinear):  # a quantized output layer holds its own codes
                continue
            setattr(module, attr, self.get_parameter(source))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.get_default_dtype()

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of parameters, each shared one counted once; `only_trainable`: those that
        require grad; `exclude_embeddings`: without the weights of the `nn.Embedding` modules
        (token, position, token-type tables; a tied output layer shares the token table)."""
        embedding_weights = {
            id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)
        } if exclude_embeddings else set()
        return sum(
            p.numel()
            for p in self.parameters()  # shared parameters appear once
            if id(p) not in embedding_weights and (p.requires_grad or not only_trainable)
        )

    # -- resizing the vocabulary ----------------------------------------------------------------------

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Give the token embeddings (and the output layer, tied or not) `new_num_tokens` rows,
        rounded up to a multiple of `pad_to_multiple_of`; `config.vocab_size` follows. Returns
        the input embedding module.

        Rows kept keep their values (and the parameters keep their identity, so ties and
        optimizers holding them stay valid); rows removed are dropped from the end. New rows,
        as the reference does by default (`mean_resizing=True`), are drawn around the mean of
        the old rows (a normal with 1e-9 x their covariance), and new output biases are 0 (what
        transformers 5.25 gives); with `mean_resizing=False` new rows get the model's random init."""
        embeddings = self.get_input_embeddings()
        if not isinstance(embeddings, nn.Embedding):
            raise TypeError(f"{type(self).__name__} has no nn.Embedding token table to resize")
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
            n = embeddings.num_embeddings if new_num_tokens is None else new_num_tokens
            new_num_tokens = -(-n // pad_to_multiple_of) * pad_to_multiple_of
        if new_num_tokens is None:
            return embeddings
        if not isinstance(new_num_tokens, int) or new_num_tokens < 1:
            raise ValueError(f"new_num_tokens must be a positive integer, got {new_num_tokens!r}")
        output = self.get_output_embeddings()
        resized: set[int] = set()
        for param, kind in (
            (embeddings.weight, "rows"),
            (getattr(output, "weight", None), "rows"),
            (getattr(output, "bias", None), "bias"),
        ):
            if param is not None and id(param) not in resized:  # tied parameters are resized once
                resized.add(id(param))
                self._resize_rows(param, new_num_tokens, kind, mean_resizing)
        embeddings.num_embeddings = new_num_tokens
        if embeddings.padding_idx is not None and embeddings.padding_idx >= new_num_tokens:
            embeddings.padding_idx = None
        if output is not None and hasattr(output, "out_features"):
            output.out_features = new_num_tokens
        for module in self.modules():
            if isinstance(module, Prepackable):
                module.forget_packed()
        self.config.vocab_size = new_num_tokens
        self.tie_weights()
        return embeddings

    def _resize_rows(self, param: nn.Parameter, n: int, kind: str, mean_resizing: bool) -> None:
        """Resize `param` along its first dimension in place (its `.data` is replaced)."""
        old = param.data
        keep = min(n, old.shape[0])
        new = old.new_empty((n, *old.shape[1:]))
        new[:keep] = old[:keep]
        added = n - keep
        if added:
            with torch.no_grad():
                if kind == "bias":
                    new[keep:] = 0.0
                elif mean_resizing:
                    new[keep:] = _draw_around_mean(old, added)
                else:
                    new[keep:].normal_(0.0, getattr(self.config, "initializer_range", 0.02))
        param.data = new

    # -- gradient checkpointing ------------------------------------------------------------------------

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute each layer's activations during the backward pass instead of keeping them
        (less memory, one more forward per layer), in training mode with gradients enabled.
        `gradient_checkpointing_kwargs` go to `torch.utils.checkpoint.checkpoint` (default
        `use_reentrant=False`). Decoders then run without a KV cache while training, as the
        reference does (`use_cache=True` is turned off with a warning)."""
        from torch.utils.checkpoint import checkpoint

        kwargs = {"use_reentrant": False} if gradient_checkpointing_kwargs is None else dict(gradient_checkpointing_kwargs)
        self._set_gradient_checkpointing(functools.partial(checkpoint, **kwargs))

    def gradient_checkpointing_disable(self) -> None:
        """Keep activations again (see `gradient_checkpointing_enable`)."""
        self._set_gradient_checkpointing(None)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(isinstance(m, LayerLoop) and m.gradient_checkpointing for m in self.modules())

    # the names transformers 5.25 prefers
    activation_checkpointing_enable = gradient_checkpointing_enable
    activation_checkpointing_disable = gradient_checkpointing_disable
    is_activation_checkpointing = is_gradient_checkpointing

    def _set_gradient_checkpointing(self, checkpoint_fn: Any) -> None:
        loops = [m for m in self.modules() if isinstance(m, LayerLoop)]
        if not loops:
            raise ValueError(f"{type(self).__name__} has no layer stack to checkpoint")
        for loop in loops:
            loop.gradient_checkpointing = checkpoint_fn is not None
            loop.checkpoint_fn = checkpoint_fn

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """nn.Module's state dict, with weights that `optimize_for_inference()` holds (in, out) in
        memory given back in the checkpoint's contiguous layout (copies, one per shared weight,
        so tied entries stay one tensor): what safetensors and every saver expect. With
        `keep_vars=True` the parameters themselves are returned, as they are."""
        if getattr(_state_dict_call, "active", False):  # inside an enclosing model's call: it copies
            return super().state_dict(*args, **kwargs)
        _state_dict_call.active = True
        try:
            state = super().state_dict(*args, **kwargs)
        finally:
            _state_dict_call.active = False
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        if kwargs.get("keep_vars", len(args) > 2 and args[2]):
            return state
        copies: dict[tuple, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith(prefix) and isinstance(value, torch.Tensor) and not value.is_contiguous():
                same = (value.untyped_storage().data_ptr(), value.storage_offset(), value.stride(), tuple(value.shape))
                if same not in copies:
                    copies[same] = value.contiguous()
                state[key] = copies[same]
        return state

    def optimize_for_inference(self, enabled: bool = True, *, prepack: bool | None = None) -> PreTrainedModel:
        """Prepare float32 CPU inference (pipelines call this). Returns the model.

        Calls on several rows at a time (an encoder's one sentence; a decode step of a batch)
        multiply by weights prepacked once (`haven.linear.dense.Prepackable`: 1.2-1.5x on an
        encoder's one-sentence call, 1.15-1.45x on a GPT-2 decode step of 2-16 rows), or stop
        doing so (`enabled=False`). The packed copies are made on first use and cost memory as
        large as those weights (`haven.linear.dense.packed_bytes(model)`). They follow changes
        made through the parameters, but writes through `.data` are not seen: calling this again
        drops every copy made so far.

        `prepack=None` follows the class's `prepack_weights`: encoders prepack; decoders do not,
        since the copy would double the resident weights of a model that mostly decodes one
        row at a time (one row never uses the copy). `prepack=True` turns it on for a decoder
        that decodes batches (the inference server's continuous batch does).

        Decoders (`store_weights_in_out`) also hold their float32 `Linear` weights (in, out) in
        memory (`haven.linear.dense.store_in_out`), the layers a block multiplies one input by
        (its modules' `projected_together`: Llama's q/k/v and gate/up) side by side as one
        matrix that `project()` multiplies in one call. A decode step is then faster at every
        batch size than on the checkpoint's layout (README, Performance). The re-laid copies
        replace the weights one group at a time, and a memory-mapped checkpoint's pages are
        released as they are copied. `enabled=False` lays them back."""
        prepack = self.prepack_weights if prepack is None else bool(prepack)
        if self.store_weights_in_out:
            together = [
                [getattr(module, name) for name in names]
                for module in self.modules()
                for names in getattr(module, "projected_together", ())
            ]
            together = [layers for layers in together if all(type(layer) is Linear for layer in layers)]
            grouped = {layer for layers in together for layer in layers}
            together += [[m] for m in self.modules() if isinstance(m, Linear) and m not in grouped]
            for layers in together:
                store_in_out(layers, enabled, release=release_mapped_pages)
        for module in self.modules():
            if isinstance(module, Prepackable):
                module.prepacked = enabled and prepack
                module.forget_packed()
        return self

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any) -> PreTrainedModel:
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        model = cls(config, **kwargs)
        if dtype is not None:
            model = model.to(dtype_or_auto(dtype))
        return model

    # -- loading -----------------------------------------------------------------------------------

    def sanitize(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename or drop checkpoint keys for this family's quirks. Default: none."""
        return state_dict

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | os.PathLike, *, config: PretrainedConfig | None = None, **kwargs: Any
    ) -> PreTrainedModel:
        """Load a checkpoint directory or hub repository.

        Keyword arguments are of three kinds, as in the reference library:
        - loading options (`dtype`, `device_map`, `revision`, `output_loading_info`,
          `ignore_mismatched_sizes`...): `haven.loading.OPTIONS` says what Haven does with each,
          and refuses (NotImplementedError) what it cannot honour, such as `load_in_4bit`;
        - config attributes to override (`num_labels=3`, `output_attentions=True`);
        - arguments of the model class (`add_pooling_layer=False`).
        Anything else is a TypeError. `dtype`: None / "auto" keep the checkpoint's dtype.
        """
        opts = LoadOptions.take(kwargs)
        init_params = init_parameters(cls)
        init_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in init_params}
        path = local_path(path_or_id, opts.subfolder)
        config = (
            copy.deepcopy(config) if config is not None else cls.config_class.from_pretrained(path, **opts.hub)
        )
        unknown = config.unknown_keys(kwargs)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.from_pretrained() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: "
                f"they are not loading options (haven.loading.OPTIONS), attributes of {type(config).__name__}, "
                f"nor arguments of {cls.__name__}"
            )
        config.update_from_kwargs(kwargs)
        quantization = checkpoint_quantization(config, opts.quantization, path_or_id)
        state_dict = load_checkpoint(path, use_safetensors=opts.use_safetensors, **opts.hub)
        if opts.disable_mmap:
            state_dict = {k: v.clone() for k, v in state_dict.items()}

        with torch.device("meta"), skip_reset_parameters():
            model = cls(config, **init_kwargs)
        if quantization is not None:
            from .linear.replace import replace_linears

            replace_linears(model, quantization)
            model.config.quantization_config = quantization.to_dict()
        target = dtype_or_auto(opts.dtype)
        if target is not None and quantization is None:
            state_dict = cast_floats(state_dict, target)
        info = model.load_weights(state_dict, ignore_mismatched_sizes=opts.ignore_mismatched_sizes)
        if target is not None and target != model.dtype:
            model = model.to(target)
        if opts.device_map is not None:
            model = place(model, opts.device_map, opts.max_memory)
        elif opts.device is not None:
            model = model.to(opts.device)
        model.name_or_path = str(path_or_id)
        if opts.generation_config is None:
            model._load_generation_config(path, opts.hub)
        elif callable(getattr(model, "generate", None)):
            model.generation_config = opts.generation_config
        else:
            raise ValueError(f"{cls.__name__} does not generate text; leave generation_config out")
        model.eval()
        return (model, info) if opts.output_loading_info else model

    def _load_generation_config(self, path_or_id: str | os.PathLike, hub: dict[str, Any]) -> None:
        """Decoder families override this to read generation_config.json."""

    def load_weights(
        self, state_dict: dict[str, torch.Tensor], *, ignore_mismatched_sizes: bool = False
    ) -> dict[str, list[str]]:
        """Assign `state_dict` into this (possibly meta) model. Returns missing/unexpected keys."""
        state_dict = self.sanitize(rename_legacy(state_dict))
        expected = {k: v for k, v in self.state_dict(keep_vars=True).items()}
        state_dict = match_prefix(state_dict, set(expected), self.base_model_prefix)
        state_dict = quantize_state_dict(self, state_dict, release_mapped_pages)

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
                mismatched.append((key, tuple(tensor.shape), tuple(expected[key].shape)))
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
        resized = {key for key, _, _ in mismatched}
        reported_missing = [k for k in missing if k not in resized and not _matches(k, self._ignore_missing)]
        name = type(self).__name__
        if mismatched:
            logger.warning(
                "Some weights of %s were re-initialized because their shape in the checkpoint differs from the "
                "model's (ignore_mismatched_sizes=True): %s. You should probably TRAIN this model on a downstream "
                "task before using it for predictions.",
                name,
                _preview([f"{key}: checkpoint {old} -> model {new}" for key, old, new in mismatched]),
            )
        if unexpected:
            logger.warning("Some checkpoint weights were not used by %s: %s", name, _preview(unexpected))
        if reported_missing:
            logger.warning(
                "Some weights of %s were not in the checkpoint and are newly initialized: %s. "
                "You should probably TRAIN this model on a downstream task before using it for predictions.",
                name,
                _preview(reported_missing),
            )
        return {
            "missing_keys": reported_missing,
            "unexpected_keys": unexpected,
            "mismatched_keys": [key for key, _, _ in mismatched],
        }

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
        state_dict = dedupe_shared(state_dict)
        return ["config.json", *save_state_dict(state_dict, save_directory, max_shard_size)]


# -- helpers ------------------------------------------------------------------------------------------


def _matches(key: str, patterns: list[str]) -> bool:
    return any(re.search(p, key) for p in patterns)


def _preview(keys: list[str], n: int = 8) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" ... ({len(keys) - n} more)" if len(keys) > n else "")


def _draw_around_mean(old: torch.Tensor, count: int) -> torch.Tensor:
    """`count` rows from a normal around the mean of `old`'s rows with 1e-9 x their covariance
    (so new tokens start where an average token is), or the mean itself when that covariance is
    not positive definite."""
    rows = old.float()
    mean = rows.mean(0)
    centered = rows - mean
    covariance = 1e-9 * (centered.T @ centered) / rows.shape[0]
    try:
        dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance)
    except ValueError:  # not positive definite
        return mean.expand(count, -1).to(old.dtype)
    return dist.sample((count,)).to(old.dtype)


def _on_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())
