"""What `from_pretrained` does with each loading option: one table, read by the model and config loaders.

The reference library's `from_pretrained` takes many keyword arguments. Haven honours the ones it
can, accepts the ones that describe what it always does, and refuses the rest with the reason, so
no option is ever taken and silently ignored. `OPTIONS` is that table: name -> `Option(decision,
refuse)`, where `refuse(value)` gives the reason a value cannot be honoured (None: fine).

Keyword arguments that are not loading options are config overrides (`num_labels=3`) or
arguments of the model class (`add_pooling_layer=False`); anything else is a `TypeError`.
Loading options never become config attributes, so they are never written to config.json.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LATER = "Haven does not implement quantized loading yet (a later release adds quantize-at-load)"


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
        if set(value) == {""}:
            return _device_map(value[""])
        return (
            "Haven places the whole model on one device and does not split modules across devices; "
            "pass device_map='cuda' / 'cpu' (or {'': device})"
        )
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
        "honoured when it names one device: None, 'auto' (cuda if available, else cpu), a device, {'': device}",
        _device_map,
    ),
    "attn_implementation": Option("'sdpa' and 'eager' accepted (the same results in Haven); others refused", _attn_implementation),
    "generation_config": Option("honoured for models that generate: used instead of generation_config.json"),
    # quantization, offloading, parallelism, adapters, kernels
    "load_in_8bit": Option("refused", _falsy(LATER + "; load in float32/bfloat16 with dtype=... for now")),
    "load_in_4bit": Option("refused", _falsy(LATER + "; load in float32/bfloat16 with dtype=... for now")),
    "quantization_config": Option("refused", _none(LATER + "; load in float32/bfloat16 with dtype=... for now")),
    "max_memory": Option("refused", _none("Haven places the whole model on one device; it does not split by memory")),
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
    if isinstance(value, dict):  # {"": device}, checked by the table
        return parse_device(value[""])
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

    @classmethod
    def take(cls, kwargs: dict[str, Any]) -> LoadOptions:
        opts = take_options(kwargs)
        dtype = opts.get("dtype")
        if dtype is None:
            dtype = opts.get("torch_dtype")
        device = opts.get("device")
        if opts.get("device_map") is not None:
            mapped = parse_device(opts["device_map"])
            if device is not None and parse_device(device) != mapped:
                raise ValueError(f"device={device!r} and device_map={opts['device_map']!r} disagree; pass one of them")
            device = mapped
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
        )
