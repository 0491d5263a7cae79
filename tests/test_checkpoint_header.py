"""Safetensors headers are validated to the format's rules, by one function for the runtime and
the hub's indexer (`haven.safetensors_header`).

The independent reference is the safetensors library itself: every crafted header below is also
opened with `safetensors.safe_open`, which must refuse it too, except where a case is marked
LAXER (the library accepts it; Haven refuses it on purpose, the reason beside the case). Every
refusal in Haven is a `CheckpointError`, never a RuntimeError, TypeError or OverflowError.
"""

from __future__ import annotations

import json
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from haven.checkpoint import load_safetensors, read_safetensors_header
from haven.errors import CheckpointError
from haven.safetensors_header import DTYPE_BITS, parameter_counts, parse_header, read_header


def _file(header: object | bytes, data: bytes = b"", *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _t(dtype: object = "F32", shape: object = (2,), offsets: object = (0, 8)) -> dict:
    shape = list(shape) if isinstance(shape, tuple) else shape
    offsets = list(offsets) if isinstance(offsets, tuple) else offsets
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


HUGE = int("9" * 4000)  # 4,000 digits: under Python's int-parsing limit, far over any size
DEEP = b'{"__metadata__":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
LAXER = "LAXER"

# (id, file bytes, note): every one is refused by Haven; note LAXER = the reference accepts it
BAD = [
    ("shorter-than-8-bytes", b"\x01\x00\x00", ""),
    ("length-beyond-file", _file({"a": _t()}, b"\0" * 8, length=10_000), ""),
    ("length-over-100MB", _file(b"{}", length=100_000_001), ""),
    ("header-not-utf8", _file(b'{"\xff":1}'), ""),
    ("header-not-json", _file(b"{not json"), ""),
    ("header-a-list", _file([1, 2]), ""),
    ("header-a-string", _file("tensors"), ""),
    ("metadata-int-value", _file({"__metadata__": {"k": 1}, "a": _t()}, b"\0" * 8), ""),
    ("metadata-a-list", _file({"__metadata__": ["k"], "a": _t()}, b"\0" * 8), ""),
    ("tensor-not-an-object", _file({"a": [1, 2]}), ""),
    ("missing-dtype", _file({"a": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), ""),
    ("missing-shape", _file({"a": {"dtype": "F32", "data_offsets": [0, 8]}}, b"\0" * 8), ""),
    ("missing-offsets", _file({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), ""),
    ("unknown-dtype", _file({"a": _t(dtype="F12")}, b"\0" * 8), ""),
    ("dtype-an-int", _file({"a": _t(dtype=4)}, b"\0" * 8), ""),
    ("shape-float", _file({"a": _t(shape=[2.0])}, b"\0" * 8), ""),
    ("shape-bool", _file({"a": _t(dtype="U8", shape=[True], offsets=(0, 1))}, b"\0"), ""),
    ("shape-negative", _file({"a": _t(shape=[-2])}, b"\0" * 8), ""),
    ("shape-a-string", _file({"a": _t(shape="2")}, b"\0" * 8), ""),
    ("shape-4000-digits", _file({"a": _t(shape=[HUGE])}, b"\0" * 8), ""),
    ("shape-nan", _file(b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}', b"\0" * 8), ""),
    ("shape-5000-digits", _file(b'{"a":{"dtype":"F32","shape":[' + b"7" * 5000 + b'],"data_offsets":[0,8]}}'), ""),
    ("numel-overflows", _file({"a": _t(dtype="U8", shape=[2**40, 2**40, 2**40], offsets=(0, 0))}), ""),
    ("offsets-three-ints", _file({"a": _t(offsets=[0, 8, 9])}, b"\0" * 8), ""),
    ("offsets-floats", _file({"a": _t(offsets=[0.0, 8.0])}, b"\0" * 8), ""),
    ("offsets-a-string", _file({"a": _t(offsets="0-8")}, b"\0" * 8), ""),
    ("offsets-4000-digits", _file({"a": _t(offsets=[0, HUGE])}, b"\0" * 8), ""),
    ("negative-begin-reads-header", _file({"a": _t(offsets=(-8, 0))}), ""),
    ("end-beyond-data", _file({"a": _t(offsets=(0, 8))}, b"\0" * 4), ""),
    ("begin-after-end", _file({"a": _t(shape=[0], offsets=(8, 0))}, b"\0" * 8), ""),
    ("size-not-shape", _file({"a": _t(shape=[3])}, b"\0" * 8), ""),
    ("overlapping", _file({"a": _t(offsets=(0, 8)), "b": _t(offsets=(4, 12))}, b"\0" * 12), ""),
    ("hole-between", _file({"a": _t(offsets=(0, 8)), "b": _t(offsets=(12, 20))}, b"\0" * 20), ""),
    ("hole-at-start", _file({"a": _t(offsets=(4, 12))}, b"\0" * 12), ""),
    ("trailing-bytes", _file({"a": _t()}, b"\0" * 12), ""),
    ("sub-byte-not-whole-bytes", _file({"a": _t(dtype="F4", shape=[3], offsets=(0, 1))}, b"\0"), ""),
    ("deep-nesting", _file(DEEP), ""),
    ("lone-surrogate-name", _file(b'{"\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\0" * 8), ""),
    ("empty-dim-over-u64", _file({"a": _t(shape=[0, 2**64], offsets=(0, 0))}), ""),
    # the library keeps the last of two same-named entries; Haven refuses the ambiguity
    ("same-name-twice", _file(b'{"a":' + json.dumps(_t()).encode() + b',"a":' + json.dumps(_t()).encode() + b"}", b"\0" * 8), LAXER),
    # an empty tensor whose other dimension torch cannot represent (int64 sizes)
    ("empty-dim-over-int64", _file({"a": _t(shape=[0, 2**63], offsets=(0, 0))}), LAXER),
]

GOOD = [
    ("one-tensor", _file({"a": _t()}, b"\0" * 8)),
    ("metadata-null", _file({"__metadata__": None, "a": _t()}, b"\0" * 8)),
    ("metadata-strings", _file({"__metadata__": {"format": "pt"}, "a": _t()}, b"\0" * 8)),
    ("no-tensors", _file({})),
    ("empty-tensor", _file({"a": _t(shape=[0, 5], offsets=(0, 0)), "b": _t()}, b"\0" * 8)),
    ("leading-space", _file(b' {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\0" * 8)),
    ("padding-spaces", _file(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   ', b"\0" * 8)),
    ("extra-field", _file({"a": {**_t(), "note": "x"}}, b"\0" * 8)),
    ("out-of-name-order", _file({"b": _t(offsets=(8, 16)), "a": _t()}, b"\0" * 16)),
    ("sub-byte", _file({"a": _t(dtype="F4", shape=[4], offsets=(0, 2))}, b"\0" * 2)),
]


def _write(tmp_path, blob: bytes) -> str:
    path = tmp_path / "model.safetensors"
    path.write_bytes(blob)
    return str(path)


def _reference_accepts(path: str) -> bool:
    try:
        with safe_open(path, framework="pt") as f:
            list(f.keys())
    except Exception:  # the library raises SafetensorError and friends
        return False
    return True


def test_the_table_is_large_enough():
    assert len(BAD) >= 28 and len({case[0] for case in BAD}) == len(BAD)


@pytest.mark.parametrize("blob,note", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_crafted_header_refused_with_checkpoint_error(tmp_path, blob, note):
    path = _write(tmp_path, blob)
    assert _reference_accepts(path) is (note == LAXER)
    with pytest.raises(CheckpointError) as info:
        read_safetensors_header(path)
    assert "model.safetensors" in str(info.value)
    with pytest.raises(CheckpointError):
        load_safetensors(path)


@pytest.mark.parametrize("blob", [case[1] for case in GOOD], ids=[case[0] for case in GOOD])
def test_valid_headers_accepted_like_the_reference(tmp_path, blob):
    path = _write(tmp_path, blob)
    assert _reference_accepts(path)
    header, start = read_safetensors_header(path)
    with safe_open(path, framework="pt") as f:
        assert sorted(k for k in header if k != "__metadata__") == sorted(f.keys())
    assert start == 8 + struct.unpack("<Q", blob[:8])[0]


def test_saved_file_loads_and_counts_match_the_reference(tmp_path):
    tensors = {
        "w": torch.randn(3, 5),
        "b": torch.arange(7, dtype=torch.int64),
        "h": torch.randn(2, 2).to(torch.bfloat16),
        "e": torch.zeros(0, 4),
    }
    path = str(tmp_path / "m.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    loaded = load_safetensors(path)
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t)
    header, _ = read_safetensors_header(path)
    expected: dict[str, int] = {}
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            sl = f.get_slice(name)
            n = 1
            for d in sl.get_shape():
                n *= d
            expected[sl.get_dtype()] = expected.get(sl.get_dtype(), 0) + n
    assert parameter_counts(header) == expected


def test_a_dtype_torch_cannot_load_is_a_checkpoint_error(tmp_path):
    path = _write(tmp_path, _file({"a": _t(dtype="F4", shape=[4], offsets=(0, 2))}, b"\0" * 2))
    read_safetensors_header(path)  # a valid file ...
    with pytest.raises(CheckpointError, match="F4"):  # ... Haven cannot map to torch
        load_safetensors(path)


def test_header_limit_is_the_callers(tmp_path):
    blob = _file({"__metadata__": {"pad": "x" * 5000}})
    path = _write(tmp_path, blob)
    with open(path, "rb") as f, pytest.raises(CheckpointError, match="over the limit of 1024"):
        read_header(f, len(blob), "big.safetensors", max_header=1024)


# -- fuzz: the parser returns a valid header or raises CheckpointError, nothing else ----------------

_ints = st.one_of(st.integers(-3, 40), st.integers(-(2**70), 2**70), st.booleans(), st.floats(allow_nan=False))
_json_scalar = st.one_of(st.none(), st.text(max_size=6), _ints)
_entry = st.fixed_dictionaries(
    {
        "dtype": st.one_of(st.sampled_from(sorted(DTYPE_BITS)), _json_scalar),
        "shape": st.one_of(st.lists(_ints, max_size=4), _json_scalar),
        "data_offsets": st.one_of(st.lists(_ints, min_size=0, max_size=3), _json_scalar),
    }
)
_value = st.one_of(_entry, _json_scalar, st.dictionaries(st.text(max_size=4), _json_scalar, max_size=3))
_headers = st.dictionaries(st.one_of(st.just("__metadata__"), st.text(max_size=5)), _value, max_size=5)


def _check(raw: bytes, data_size: int) -> None:
    try:
        header = parse_header(raw, data_size, "fuzz.safetensors")
    except CheckpointError:
        return
    # accepted: it must really obey the rules
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    pos = 0
    for begin, end in spans:
        assert begin == pos and end >= begin
        pos = end
    assert pos == data_size
    assert all(v >= 0 for v in parameter_counts(header).values())


@settings(max_examples=200, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(header=_headers, data_size=st.integers(0, 64))
def test_fuzz_structured_headers(header, data_size):
    _check(json.dumps(header).encode(), data_size)


@settings(max_examples=200, deadline=500)
@given(raw=st.binary(max_size=200), data_size=st.integers(0, 64))
def test_fuzz_raw_bytes(raw, data_size):
    _check(raw, data_size)


@st.composite
def _tiled(draw) -> tuple[dict, int]:
    """A header whose tensors tile the data region (valid), then maybe one field nudged."""
    header: dict = {}
    pos = 0
    for i in range(draw(st.integers(0, 4))):
        dtype = draw(st.sampled_from(["U8", "F16", "F32", "I64", "F4"]))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        numel = 1
        for d in shape:
            numel *= d
        nbytes = -(-numel * DTYPE_BITS[dtype] // 8)
        header[f"t{i}"] = _t(dtype, shape, (pos, pos + nbytes))
        pos += nbytes
    if header and draw(st.booleans()):
        entry = header[draw(st.sampled_from(sorted(header)))]
        field = draw(st.sampled_from(["shape", "data_offsets"]))
        values = entry[field]
        if values:
            k = draw(st.integers(0, len(values) - 1))
            values[k] = values[k] + draw(st.sampled_from([-1, 1, 2**64, -(2**63)]))
    return header, pos + draw(st.sampled_from([0, 0, 0, 1]))


@settings(max_examples=200, deadline=500)
@given(case=_tiled())
def test_fuzz_nearly_valid_headers(case):
    header, data_size = case
    _check(json.dumps(header).encode(), data_size)
