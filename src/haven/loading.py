"""What `from_pretrained` does with each loading option: one table, read by the model and config loaders.

The reference library's `from_pretrained` takes many keyword arguments. Haven honours the ones it
can, accepts the ones that describe what it always does, and refuses the rest with the reason, so
no option is ever taken and silently ignored. `OPTIONS` is that table: name -> `Option(decision,
refuse)`, where `refuse(value)` gives the reason a value cannot be honoured (None: fine).

Keyword arguments that are not loading options are config overrides (`num_labels=3`) or
arguments of the model class (`add_pooling_layer=False`); anything else is a `TypeError`.
Loading options never become config attributes, so they are never written to config.json.

Below the table, what applies them: `LoadOptions` (the options of one call), `place`
(device_map), `checkpoint_quantization` (a checkpoint saved quantized loads so,
another tool's format is refused), `init_parameters` and `skip_reset_parameters` (the model is
built on `meta` without torch's random init, which the checkpoint would overwrite).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    decision: str  # what Haven does with it, in one line
    refuse: Callable[[Any], str | None] = lambda value: None


def _unless(ok: Callable[[Any], bool], reason: str) -> Callable[[Any], str | None]:
    return lambda value: None if ok(value) else reason


def _falsy(reason: str) -> Callable[[Any], str | None]:
    return _unless(lambda v: not v, reason)


def _none(reason: str) -> Callable[[Any], str | None]:
    return _unless(lambda v: v is None, reason)


def _attn_implementation(value: Any) -> str | None:
    if value in (None, "sdpa", "eager"):
        return None
    return (
        f"Haven's attention is PyTorch scaled_dot_product_attention ('sdpa'; 'eager' gives the same results "
        f"and is accepted too), it has no {value!r} kernel: pass attn_implementation='sdpa' or leave it out"
    )


def _device_map(value: Any) -> str | None:
    if value is None or value == "auto":
        return None
    if isinstance(value, dict):
        if not value:
            return "an empty device_map names no device; pass 'auto', a device or {'': device}"
        reasons = [_device_map(device) for device in value.values() if device not in ("auto", "disk")]
        if any(device in ("auto", "disk") for device in value.values()):
            return "the devices of a device_map dict are devices ('cpu', 'cuda:0', 0), not 'auto' or 'disk'"
        if any(reasons):
            return next(r for r in reasons if r)
        if len({parse_device(device) for device in value.values()}) > 1:
            return (
                "Haven places the whole model on one device and does not split modules across devices; "
                "pass device_map='cuda' / 'cpu' (or {'': device}, or a dict naming one device)"
            )
        return None
    if value in ("balanced", "balanced_low_0", "sequential"):
        return "Haven places the whole model on one device; pass device_map='auto' or a device such as 'cuda:0'"
    if value == "disk":
        return "Haven does not offload weights to disk; pass a device that can hold the model"
    try:
        parse_device(value)
    except (RuntimeError, TypeError, ValueError):
        return f"{value!r} is not a device; pass 'cpu', 'cuda', 'cuda:1', an index or a torch.device"
    return None


_NOT_SPLIT = "Haven runs a model on one device and has no tensor/pipeline parallelism"

OPTIONS: dict[str, Option] = {
    # where the files come from
    "revision": Option("honoured: branch, tag or commit of a hub repository"),
    "token": Option("honoured: hub access token"),
    "cache_dir": Option("honoured: download cache directory"),
    "local_files_only": Option("honoured: use the cache only, no network"),
    "force_download": Option("honoured: download again even if cached"),
    "subfolder": Option("honoured for local directories: the checkpoint inside path/subfolder"),
    "proxies": Option(
        "refused: Haven's client reads the proxy from the environment",
        _none("set HTTPS_PROXY / HTTP_PROXY in the environment instead; Haven's HTTP client reads them"),
    ),
    "trust_remote_code": Option(
        "False/None accepted; True refused",
        _falsy("Haven never runs code from a repository; it supports the architectures it implements"),
    ),
    "use_safetensors": Option("honoured: True only *.safetensors, False only pytorch_model.bin, None both"),
    "weights_only": Option(
        "True accepted (Haven always loads .bin files with weights_only=True); False refused",
        _unless(lambda v: v is True, "Haven never unpickles arbitrary objects; convert the checkpoint to safetensors"),
    ),
    "variant": Option(
        "refused",
        _none("Haven loads model.safetensors / pytorch_model.bin only; save or download the variant under that name"),
    ),
    "gguf_file": Option("refused", _none("Haven does not read GGUF files; load the safetensors checkpoint")),
    "from_tf": Option("refused", _falsy("Haven loads PyTorch weights only (safetensors or .bin)")),
    "from_flax": Option("refused", _falsy("Haven loads PyTorch weights only (safetensors or .bin)")),
    "state_dict": Option(
        "refused",
        _none("build the model with from_config(config) and call model.load_state_dict(state_dict)"),
    ),
    "key_mapping": Option("refused", _none("Haven does not rename checkpoint keys on request; rename them and save")),
    # what is returned and how strictly
    "output_loading_info": Option("honoured: also return missing / unexpected / mismatched keys"),
    "ignore_mismatched_sizes": Option("honoured: re-initialise weights whose shape differs from the config's"),
    "low_cpu_mem_usage": Option("accepted: Haven always loads that way (built on meta, weights memory-mapped)"),
    "disable_mmap": Option("honoured: True copies the weights into memory instead of mapping the files"),
    # dtype, device, attention
    "dtype": Option("honoured: None / 'auto' keep the checkpoint's dtype, a dtype casts"),
    "torch_dtype": Option("honoured: the older name of dtype"),
    "device": Option("honoured: move the loaded model to this device"),
    "device_map": Option(
        "honoured when it names one device: None, 'auto' (cuda if available and the model fits max_memory, "
        "else cpu), a device, {'': device} or {module: device} naming one device; sets model.hf_device_map",
        _device_map,
    ),
    "attn_implementation": Option("'sdpa' and 'eager' accepted (the same results in Haven); others refused", _attn_implementation),
    "generation_config": Option("honoured for models that generate: used instead of generation_config.json"),
    # quantization, offloading, parallelism, adapters, kernels
    "load_in_8bit": Option("honoured: int8 weights, quantized at load (haven.linear)"),
    "load_in_4bit": Option("honoured: int4 weights, quantized at load (haven.linear)"),
    "quantization_config": Option(
        "honoured: haven.QuantizationConfig, or a BitsAndBytesConfig (object or dict; fields Haven cannot honour raise)"
    ),
    "max_memory": Option(
        "honoured with device_map: {device: size}; the model goes to the first device it fits, or loading fails "
        "(Haven neither splits a model across devices nor offloads)",
        _unless(lambda v: v is None or isinstance(v, dict), "pass a dict {device: size} such as {0: '10GiB', 'cpu': '30GiB'}"),
    ),
    "offload_folder": Option("refused", _none("Haven does not offload weights; pass a device that can hold the model")),
    "offload_buffers": Option("refused", _falsy("Haven does not offload weights; pass a device that can hold the model")),
    "offload_state_dict": Option("refused", _falsy("Haven does not offload weights; it always memory-maps them")),
    "tp_plan": Option("refused", _none(_NOT_SPLIT)),
    "tp_size": Option("refused", _none(_NOT_SPLIT)),
    "device_mesh": Option("refused", _none(_NOT_SPLIT)),
    "distributed_config": Option("refused", _none(_NOT_SPLIT)),
    "adapter_kwargs": Option("refused", _falsy("Haven does not load PEFT adapters; merge the adapter and save the model")),
    "adapter_name": Option(
        "refused",
        _unless(lambda v: v in (None, "default"), "Haven does not load PEFT adapters; merge the adapter first"),
    ),
    "use_kernels": Option("refused", _falsy("Haven has no hub kernels; its own CPU paths need no option")),
    "kernel_config": Option("refused", _none("Haven has no hub kernels; its own CPU paths need no option")),
    "experts_implementation": Option("refused", _none("Haven implements no mixture-of-experts architecture")),
    "tqdm_class": Option("refused", _none("Haven's progress bars can be silenced (HF_HUB_DISABLE_PROGRESS_BARS=1), not replaced")),
}

# The options a config loader takes (AutoConfig / PretrainedConfig.from_pretrained).
HUB_OPTIONS = ("revision", "token", "cache_dir", "local_files_only", "force_download")
CONFIG_OPTIONS = (*HUB_OPTIONS, "subfolder", "proxies", "trust_remote_code")

# Loading options that an older Haven stored as config attributes; never read from or written to
# config.json (`dtype`, `torch_dtype` and `quantization_config` are real config keys, so they stay).
NOT_CONFIG_KEYS = frozenset(OPTIONS) - {"dtype", "torch_dtype", "quantization_config"}


def take_options(kwargs: dict[str, Any], names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Pop the loading options (all of `OPTIONS`, or only `names`) out of `kwargs`, refusing
    values Haven cannot honour with NotImplementedError. Returns {name: value}."""
    taken = {}
    for name in list(kwargs):
        if name in OPTIONS and (names is None or name in names):
            value = kwargs.pop(name)
            reason = OPTIONS[name].refuse(value)
            if reason is not None:
                raise NotImplementedError(f"from_pretrained({name}={value!r}) is not supported: {reason}")
            taken[name] = value
    return taken


def local_path(path_or_id: str | os.PathLike, subfolder: str | None) -> str | os.PathLike:
    """`path/subfolder` for a local directory; a hub id with a subfolder is refused."""
    if not subfolder:
        return path_or_id
    if os.path.isdir(path_or_id):
        return os.path.join(path_or_id, subfolder)
    raise NotImplementedError(
        f"from_pretrained(subfolder={subfolder!r}) is supported for local directories only; download the "
        f"repository first (haven download {os.fspath(path_or_id)}) and pass the local path"
    )


def parse_device(value: Any):
    """A torch.device from 'cpu', 'cuda:1', an index or a torch.device; 'auto' is cuda if available, else cpu."""
    import torch

    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(value, dict):  # {module: device} naming one device, checked by the table
        return parse_device(next(iter(value.values())))
    if isinstance(value, bool):
        raise TypeError("a device, not a bool")
    if isinstance(value, int):  # an accelerator index, as the reference reads it
        return torch.device("cuda", value)
    return torch.device(value)


@dataclass
class LoadOptions:
    """The loading options of one from_pretrained call, validated."""

    hub: dict[str, Any] = field(default_factory=dict)
    subfolder: str | None = None
    dtype: Any = None
    device: Any = None
    use_safetensors: bool | None = None
    ignore_mismatched_sizes: bool = False
    output_loading_info: bool = False
    disable_mmap: bool = False
    generation_config: Any = None
    quantization: Any = None  # a haven.linear.QuantizationConfig, or None
    device_map: Any = None
    max_memory: dict[Any, Any] | None = None

    @classmethod
    def take(cls, kwargs: dict[str, Any]) -> LoadOptions:
        opts = take_options(kwargs)
        dtype = opts.get("dtype")
        if dtype is None:
            dtype = opts.get("torch_dtype")
        device = opts.get("device")
        device_map = opts.get("device_map")
        if opts.get("max_memory") is not None and device_map is None:
            raise ValueError("max_memory= goes with device_map= (such as device_map='auto'); pass both")
        if device_map is not None and device is not None and device_map != "auto":
            if parse_device(device) != parse_device(device_map):
                raise ValueError(f"device={device!r} and device_map={device_map!r} disagree; pass one of them")
        elif device_map == "auto" and device is not None:
            raise ValueError(f"device={device!r} and device_map='auto' both place the model; pass one of them")
        from .linear.config import resolve

        quantization = resolve(
            opts.get("load_in_8bit", False), opts.get("load_in_4bit", False), opts.get("quantization_config")
        )
        return cls(
            hub={k: opts[k] for k in HUB_OPTIONS if k in opts},
            subfolder=opts.get("subfolder"),
            dtype=dtype,
            device=device,
            use_safetensors=opts.get("use_safetensors"),
            ignore_mismatched_sizes=bool(opts.get("ignore_mismatched_sizes", False)),
            output_loading_info=bool(opts.get("output_loading_info", False)),
            disable_mmap=bool(opts.get("disable_mmap", False)),
            generation_config=opts.get("generation_config"),
            quantization=quantization,
            device_map=device_map,
            max_memory=opts.get("max_memory"),
        )


def place(model: Any, device_map: Any, max_memory: dict[Any, Any] | None) -> Any:
    """Move a loaded model where `device_map` says (see `OPTIONS['device_map']`), checking
    `max_memory`, and set `model.hf_device_map` as the reference does ({"": "cpu"} or {"": 0}, or
    the dict given). A CUDA device on a PyTorch without CUDA is refused, never ignored."""
    import torch

    from .checkpoint import parse_size

    if isinstance(device_map, dict):
        names = {n for n, _ in model.named_modules()}
        unknown = [k for k in device_map if k and k not in names]
        if unknown:
            raise ValueError(f"device_map names module(s) {unknown} that {type(model).__name__} does not have")
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    candidates = [parse_device(device_map)]
    if device_map == "auto":
        gpus = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        candidates = [*gpus, torch.device("cpu")]
    if max_memory is not None:
        limits = {_memory_key(k): parse_size(v) for k, v in max_memory.items()}
        fitting = [d for d in candidates if limits.get(_memory_key(d), 0 if device_map == "auto" else size) >= size]
        if not fitting:
            raise ValueError(
                f"the model takes {size / 2**20:.1f} MiB, more than max_memory={max_memory!r} allows on "
                f"{', '.join(map(str, candidates))}; Haven neither splits a model across devices nor offloads it: "
                "raise the limit, quantize it (load_in_8bit / load_in_4bit) or leave max_memory out"
            )
        candidates = fitting
    device = candidates[0]
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device_map={device_map!r} places the model on {device}, but this PyTorch ({torch.__version__}) "
            "has no CUDA device; pass device_map='cpu' or 'auto' (CUDA if available, else CPU)"
        )
    model = model.to(device)
    label = "cpu" if device.type == "cpu" else (device.index or 0) if device.type == "cuda" else str(device)
    model.hf_device_map = dict(device_map) if isinstance(device_map, dict) else {"": label}
    return model


def _memory_key(key: Any) -> str:
    """max_memory keys as devices: 0 / 'cuda:0' / torch.device('cuda', 0) -> 'cuda:0', 'cpu' -> 'cpu'."""
    device = parse_device(key) if not isinstance(key, str) or key != "cpu" else None
    if device is None:
        return "cpu"
    return f"{device.type}:{device.index or 0}" if device.type == "cuda" else device.type


# -- applying them ---------------------------------------------------------------------------------


def checkpoint_quantization(config: Any, asked: Any, path_or_id: Any) -> Any:
    """The QuantizationConfig to load with: the checkpoint's own (saved quantized by Haven; another
    tool's format is refused by name), or the one asked for at load (None: float)."""
    from .linear.config import QuantizationConfig

    stored = getattr(config, "quantization_config", None)
    if not stored:
        return asked
    if not isinstance(stored, dict):
        stored = stored.to_dict()
    saved = QuantizationConfig.from_dict(stored)
    if asked is not None and asked.to_dict() != saved.to_dict():
        raise ValueError(
            f"{path_or_id} is already quantized ({saved.to_dict()}); it cannot be quantized again differently: "
            "leave load_in_8bit / load_in_4bit / quantization_config out, or load the float checkpoint"
        )
    return saved


def init_parameters(cls: type) -> set[str]:
    """Names of the keyword arguments a model class takes besides its config."""
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if n not in ("self", "config") and p.kind is not p.VAR_KEYWORD}


@contextmanager
def skip_reset_parameters() -> Iterator[None]:
    """Skip torch's default init in layer constructors while they build on the meta device.

    Weights come from the checkpoint, and the ones it lacks get `_init_weights` in
    `_materialize`, so the constructors' own random init would only be thrown away. The patch is
    class-wide, so it skips only layers whose weight is on meta: a real layer built meanwhile on
    another thread is still initialised.
    """
    from torch import nn

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
    def reset_parameters(self) -> None:
        weight = getattr(self, "weight", None)
        if weight is None or not weight.is_meta:
            original(self)

    return reset_parameters
