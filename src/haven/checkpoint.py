"""Reading and writing weight files: safetensors (memory-mapped), shards, legacy .bin.

`load_safetensors` maps the file into memory and returns tensors that are views of that
mapping: nothing is read until a tensor is touched, and nothing is copied. The header is
validated first, so a truncated or corrupt file fails with a message, not a crash.
`release_mapped_pages` gives back the pages of such a view once its data has been copied
elsewhere (a decoder's weights re-laid for decoding), so the copy does not count twice.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import sys
import weakref
from collections.abc import Callable
from typing import Any

import torch

from .errors import CheckpointError
from .hub import resolve_file
from .safetensors_header import METADATA_KEY, read_header

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}

# storages that are private (copy-on-write) mappings of weight files made by load_safetensors
_mapped_storages: weakref.WeakSet = weakref.WeakSet()


def read_safetensors_header(path: str) -> tuple[dict[str, Any], int]:
    """(header dict, byte offset where tensor data starts), validated to the format's rules
    (`haven.safetensors_header`); raises CheckpointError if malformed."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        return read_header(f, size, path)


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file as zero-copy views of a private memory map."""
    path = os.fspath(path)
    header, data_start = read_safetensors_header(path)
    size = os.path.getsize(path)
    storage = torch.UntypedStorage.from_file(path, shared=False, nbytes=size)
    _mapped_storages.add(storage)
    tensors: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == METADATA_KEY:
            continue
        if info["dtype"] not in _DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {info['dtype']}, which Haven cannot load "
                f"(it loads {', '.join(_DTYPES)}); convert the checkpoint to one of those"
            )
        dtype = _DTYPES[info["dtype"]]
        begin, stop = info["data_offsets"]
        offset = data_start + begin
        shape = info["shape"]
        if offset % dtype.itemsize == 0:
            t = torch.empty(0, dtype=dtype)
            t.set_(storage, offset // dtype.itemsize, shape)
        else:  # misaligned for its dtype: copy this one tensor
            raw = torch.empty(0, dtype=torch.uint8).set_(storage, offset, (stop - begin,))
            t = raw.clone().view(dtype).reshape(shape)
        tensors[name] = t
    return tensors


_MADV_DONTNEED = 4
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _private_copies(first: int, last: int) -> bool:
    """Whether any page of this process in [first, last) is a private copy: a page of a private
    file mapping that was written to since it was mapped. True when that cannot be read."""
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first // mmap.PAGESIZE * 8)
            raw = f.read((last - first) // mmap.PAGESIZE * 8)
    except OSError:
        return True
    entries = torch.frombuffer(bytearray(raw), dtype=torch.int64)
    present = entries < 0  # bit 63
    file_page = (entries >> 61) & 1 == 1  # bit 61: a page of the file (not a private copy)
    return bool((present & ~file_page).any())


def release_mapped_pages(tensor: torch.Tensor) -> bool:
    """Drop this process's mapping of the file pages under `tensor`, a view `load_safetensors`
    returned, once its values have been copied elsewhere. Returns whether anything was released.

    The pages stay in the page cache and are read back from the file if the view is touched
    again, so the view keeps its values. A view that was written to (`load_state_dict`, an
    optimizer step, `.data` writes) holds private copies of those pages: it is left alone.
    Only whole pages inside the tensor are released. Linux only; elsewhere, and for tensors
    that are not such views, it does nothing.
    """
    if _libc is None or not tensor.is_contiguous() or tensor.untyped_storage() not in _mapped_storages:
        return False
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    if last <= first or _private_copies(first, last):
        return False
    return _libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED) == 0


def cast_floats(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """`state_dict` with its floating-point tensors in `dtype`, cast one at a time, each mapped
    tensor's pages released once it is copied (`release_mapped_pages`): loading a float32
    checkpoint as bfloat16 then holds the bfloat16 model and one float32 tensor at a time, not
    both models. Entries that share one tensor (tied weights) share its cast."""
    out: dict[str, torch.Tensor] = {}
    casts: dict[tuple, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if not tensor.is_floating_point() or tensor.dtype == dtype:
            out[key] = tensor
            continue
        same = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if same not in casts:
            casts[same] = _cast_releasing(tensor, dtype)
        out[key] = casts[same]
    return out


_CAST_BYTES = 8 << 20  # of a tensor cast (and its mapped pages released) at a time


def _cast_releasing(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`tensor.to(dtype)`, copied a slice of rows at a time, each slice's mapped pages released
    as it is copied (so a large embedding table is not held twice either)."""
    if tensor.dim() == 0 or tensor.numel() == 0 or not tensor.is_contiguous():
        cast = tensor.to(dtype)
        release_mapped_pages(tensor)
        return cast
    cast = torch.empty(tensor.shape, dtype=dtype)
    copy_releasing(tensor, cast, max(1, _CAST_BYTES // max(1, tensor[0].numel() * tensor.element_size())), release_mapped_pages)
    return cast


def copy_releasing(
    source: torch.Tensor,
    dest: torch.Tensor,
    rows: int,
    release: Callable[[torch.Tensor], object] | None,
) -> None:
    """`dest.copy_(source)` slice by slice, `rows` rows of the first dimension at a time, each
    slice of `source` handed to `release` once copied (`release_mapped_pages`: a mapped
    checkpoint's pages leave the process as the copy is made, so peak memory grows by a slice,
    not by the tensor)."""
    for row in range(0, source.shape[0], rows):
        part = source[row : row + rows]
        dest[row : row + rows].copy_(part)
        if release is not None:
            release(part)


def load_torch_bin(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A legacy pytorch_model.bin, loaded with `weights_only=True` (no code runs)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # pickle errors come in many types
        raise CheckpointError(
            f"{path} could not be loaded safely ({type(err).__name__}: {err}). Haven loads .bin files "
            "with weights_only=True only; convert the checkpoint to safetensors"
        ) from None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return sd


def read_index(path: str) -> dict[str, str]:
    """weight_map of a `*.index.json`: tensor name -> shard file name."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
        weight_map = index["weight_map"]
    except (ValueError, RecursionError, KeyError, TypeError):  # ValueError: bad JSON, bad UTF-8, huge ints
        raise CheckpointError(f"{path} is not a valid shard index (needs a 'weight_map' object)") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(
            f"{path} is not a valid shard index: 'weight_map' must map tensor names to shard file names"
        )
    for shard in set(weight_map.values()):
        if os.path.isabs(shard) or ".." in shard.replace("\\", "/").split("/"):
            raise CheckpointError(f"{path} names a shard outside the checkpoint: {shard!r}")
    return weight_map


def parse_size(size: int | str) -> int:
    """'5GB', '500MB', '10KiB' or an int -> bytes."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*", size.upper())
    if not m:
        raise ValueError(f"cannot parse size {size!r}; use an int or e.g. '5GB', '500MB'")
    num, unit = float(m.group(1)), m.group(2)
    base = 1024 if "I" in unit else 1000
    power = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[0]]
    return int(num * base**power)


def save_state_dict(
    state_dict: dict[str, torch.Tensor], directory: str, max_shard_size: int | str = "5GB"
) -> list[str]:
    """Write safetensors, sharded (with an index) when larger than `max_shard_size`."""
    from safetensors.torch import save_file

    limit = parse_size(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for name, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if sizes[-1] and sizes[-1] + nbytes > limit:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor.contiguous()
        sizes[-1] += nbytes
    for stale in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME):
        if os.path.exists(os.path.join(directory, stale)):
            os.remove(os.path.join(directory, stale))
    for old in os.listdir(directory):
        if re.fullmatch(r"model-\d{5}-of-\d{5}\.safetensors", old):
            os.remove(os.path.join(directory, old))
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], os.path.join(directory, SAFE_WEIGHTS_NAME), metadata=meta)
        return [SAFE_WEIGHTS_NAME]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for fname, shard in zip(names, shards):
        save_file(shard, os.path.join(directory, fname), metadata=meta)
        weight_map.update(dict.fromkeys(shard, fname))
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    with open(os.path.join(directory, SAFE_WEIGHTS_INDEX_NAME), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2, sort_keys=True)
    return [*names, SAFE_WEIGHTS_INDEX_NAME]


# -- a model's checkpoint ---------------------------------------------------------------------------


def load_checkpoint(
    path_or_id: str | os.PathLike, *, use_safetensors: bool | None = None, **hub: Any
) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: single or sharded safetensors, else a legacy .bin
    (`use_safetensors`: True safetensors only, False .bin only)."""
    formats = [
        (SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, load_safetensors),
        (PT_WEIGHTS_INDEX_NAME, PT_WEIGHTS_NAME, load_torch_bin),
    ]
    if use_safetensors is not None:
        formats = formats[:1] if use_safetensors else formats[1:]
    for index_name, single_name, loader in formats:
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
    expected = " or ".join(name for pair in formats for name in pair[:2][::-1])
    hint = "" if use_safetensors is None else f" (use_safetensors={use_safetensors} limits the search to those)"
    raise CheckpointError(
        f"no weights found in {os.fspath(path_or_id)}: expected {expected}{hint}. "
        "Save the model with save_pretrained() or check the path"
    )


def rename_legacy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old TF-converted checkpoints call LayerNorm parameters gamma/beta."""
    out = {}
    for key, value in state_dict.items():
        if "LayerNorm" in key:
            key = re.sub(r"\.gamma$", ".weight", key)
            key = re.sub(r"\.beta$", ".bias", key)
        out[key] = value
    return out



def match_prefix(state_dict: dict[str, torch.Tensor], expected: set[str], prefix: str) -> dict[str, torch.Tensor]:
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



def dedupe_shared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
