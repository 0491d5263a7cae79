"""The safetensors header, read and validated to the format's rules (no torch import).

One validator for every reader: the runtime's loader (`haven.checkpoint`) and the hub's
indexer (`haven.server.api.index`). A file is 8 bytes of little-endian header length N, N bytes
of UTF-8 JSON, then the data region. The header is accepted only when:

- N is at most `max_header` (the format's own limit is 100,000,000 bytes) and fits in the file;
- it is a JSON object; `__metadata__`, when present and not null, maps strings to strings;
- every other entry is a tensor: `dtype` one of DTYPE_BITS, `shape` a list of integers in
  [0, 2**63 - 1] (no bools, floats or huge numbers), `data_offsets` two integers with
  0 <= begin <= end <= data size, and end - begin == numel * dtype size;
- the tensors tile the data region exactly: sorted by offsets, each begins where the previous
  ended (no overlap, no hole), and the last ends at the end of the file.

These are the rules the safetensors library enforces. Haven is stricter in three places, each
refused here and accepted there: a tensor named twice (the library keeps the last entry), a
dimension above 2**63 - 1 in an empty tensor (torch cannot represent it), and strings with
unpaired surrogate escapes anywhere but tensor names and metadata (the library refuses those too,
Haven checks the strings it keeps). Every refusal is a `CheckpointError` whose message names the
file and the rule.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

from .errors import CheckpointError

# element size in bits of every dtype the format defines (F4 and F6 pack below a byte)
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
MAX_HEADER_BYTES = 100_000_000  # the format's limit
MAX_DIM = 2**63 - 1  # torch sizes are int64
METADATA_KEY = "__metadata__"

_FIX = "re-download or re-save it"


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(dup)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _text(value: Any) -> bool:
    """A str that encodes as UTF-8 (JSON escapes can smuggle in unpaired surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_header(
    f: BinaryIO, file_size: int, source: str, max_header: int = MAX_HEADER_BYTES
) -> tuple[dict[str, Any], int]:
    """(validated header, offset where the data region starts) of the safetensors file open as
    `f` at its start, `file_size` bytes long; `source` names it in errors. Reads at most
    8 + `max_header` bytes. Raises CheckpointError."""
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{source} is truncated ({file_size} bytes): not a safetensors file; {_FIX}")
    (n,) = struct.unpack("<Q", head)
    if n > max_header:
        raise CheckpointError(
            f"{source} declares a safetensors header of {n} bytes, over the limit of {max_header}; "
            f"the file is corrupt or hostile: {_FIX}"
        )
    if n > file_size - 8:
        raise CheckpointError(
            f"{source} is not a valid safetensors file (header length {n} exceeds the file size "
            f"{file_size}); it is truncated or corrupt: {_FIX}"
        )
    raw = f.read(n)
    if len(raw) != n:
        raise CheckpointError(f"{source} is truncated inside its header: {_FIX}")
    return parse_header(raw, file_size - 8 - n, source), 8 + n


def parse_header(raw: bytes, data_size: int, source: str) -> dict[str, Any]:
    """The header JSON `raw`, validated against a data region of `data_size` bytes (module
    docstring); returns the decoded object. Raises CheckpointError."""
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constant)
    except _DuplicateKey as dup:
        raise CheckpointError(f"{source}: its safetensors header names {str(dup)!r} twice: {_FIX}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{source} has a corrupt safetensors header (not UTF-8 JSON): {_FIX}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source} has a corrupt safetensors header (not a JSON object): {_FIX}")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not _text(name):
            raise CheckpointError(f"{source}: a tensor name in the header is not valid Unicode: {_FIX}")
        if name == METADATA_KEY:
            if info is not None and not (isinstance(info, dict) and all(map(_text, [*info, *info.values()]))):
                raise CheckpointError(f"{source}: {METADATA_KEY} must map strings to strings: {_FIX}")
            continue
        spans.append(_tensor_span(name, info, data_size, source))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            what = "overlaps the tensor before it" if begin < pos else f"leaves bytes {pos}..{begin} unused"
            raise CheckpointError(f"{source}: tensor {name!r} {what}: {_FIX}")
        pos = end
    if pos != data_size:
        raise CheckpointError(
            f"{source}: its tensors cover {pos} bytes of a {data_size}-byte data region "
            f"(trailing or missing bytes): {_FIX}"
        )
    return header


def _tensor_span(name: str, info: Any, data_size: int, source: str) -> tuple[int, int, str]:
    """(begin, end, name) of one tensor entry after checking its dtype, shape and offsets."""
    where = f"{source}: tensor {name!r}"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise CheckpointError(f"{where} needs an object with dtype, shape and data_offsets: {_FIX}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        shown = repr(dtype[:40]) if isinstance(dtype, str) else f"of JSON type {type(dtype).__name__}"
        raise CheckpointError(f"{where} has an unknown dtype {shown}: {_FIX}")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape):
        raise CheckpointError(f"{where} has a shape that is not a list of non-negative integers: {_FIX}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise CheckpointError(f"{where}: data_offsets must be two integers [begin, end]: {_FIX}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise CheckpointError(
            f"{where}: data_offsets [{begin}, {end}] fall outside the {data_size}-byte data region: {_FIX}"
        )
    numel = 1
    for d in shape:
        numel *= d
        if numel > MAX_DIM:
            raise CheckpointError(f"{where}: its shape holds more than 2**63 elements: {_FIX}")
    bits = numel * DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        raise CheckpointError(
            f"{where} spans {end - begin} bytes, but shape {shape} of {dtype} needs {bits / 8:g}: {_FIX}"
        )
    return begin, end, name


def parameter_counts(header: dict[str, Any]) -> dict[str, int]:
    """Elements per dtype of a validated header (`__metadata__` left out)."""
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == METADATA_KEY:
            continue
        numel = 1
        for d in info["shape"]:
            numel *= d
        counts[info["dtype"]] = counts.get(info["dtype"], 0) + numel
    return counts
