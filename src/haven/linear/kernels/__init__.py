"""Compiled CPU kernels for products of a few rows (the decode step).

- `qgemv.cpp`: `QuantizedLinear`'s int8/int4 products (`torch.ops.haven.qlinear`, below);
- `dense_rows.cpp`: float32 products with a weight stored (in, out), up to DENSE_MAX_ROWS rows
  (`torch.ops.haven.dense_rows`; `haven.linear.dense` calls it, `dense_available()` says whether
  it runs here: it is built only for AVX-512 CPUs);
- `bf16_rows.cpp`: bfloat16 products with weights as stored, up to DENSE_MAX_ROWS rows, one to
  three layers of the same x in one call (`torch.ops.haven.bf16_rows`; `bf16_available()`: built
  only for CPUs with AVX512-BF16).

All are compiled together on first use with `torch.utils.cpp_extension` (-O3 -march=native: its
AVX-512 VNNI path where the CPU has it, a portable loop elsewhere) into a cache folder keyed by the
source, the torch version and the CPU (under HAVEN_KERNELS_DIR, default ~/.cache/haven/kernels),
and loaded from there afterwards. It registers `torch.ops.haven.qlinear` (one call for one to three
layers that multiply the same x: a block's q, k and v), with a shape function for tracing, so a
`torch.compile`d decode step calls it without a graph break (and from C++: its arguments are plain
optional tensors, not lists, which inductor would call back into Python for). The op was named
`qgemv` while it took one layer; the new name keeps torch.compile's on-disk caches from calling
it with the old arguments. When the compiler
is missing or the build fails, `run` returns None and `QuantizedLinear` takes its portable path
(dequantize a tile, F.linear): slower, equally correct. HAVEN_QUANT_KERNELS=0 turns the kernels
off.

Numerics: the kernel rounds x to int8 (per row and block of 4 or 8 inputs, d = max|x| / 127,
round to nearest) and multiplies integer codes with integer codes, as llama.cpp's q8_0 product
does; its compiled portable loop rounds x the same way, so both agree up to float32 rounding.
The float path (many rows: prefill; the kernels off or not built) multiplies the float x.
See qgemv.cpp for the exact formula and tests/quantization/test_kernels.py for the bounds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import platform
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

MAX_ROWS = 16  # above this the portable path (one dequantized tile, a GEMM) is the faster one
DENSE_MAX_ROWS = 8  # the most rows haven::dense_rows takes (dense_rows.cpp's kMaxRows)
_SOURCES = [Path(__file__).with_name(name) for name in ("qgemv.cpp", "dense_rows.cpp", "bf16_rows.cpp")]
_lock = threading.Lock()
_module = None
_failed = False


def _cache_dir() -> Path:
    key = hashlib.sha256(b"".join(p.read_bytes() for p in _SOURCES) + " ".join(_FLAGS).encode() + torch.__version__.encode() + _cpu_id().encode()).hexdigest()[:16]
    base = os.environ.get("HAVEN_KERNELS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "haven", "kernels")
    return Path(base) / key


# -fopenmp: at::parallel_for is OpenMP in torch's CPU builds, and without it the output blocks run
# on one thread (the pragma is dropped)
_FLAGS = ["-O3", "-march=native", "-fopenmp"]


def _cpu_id() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return platform.machine() + flags


@contextlib.contextmanager
def _exclusive(folder: Path):
    """Hold the build folder alone among Haven processes, by a lock the system drops when its
    holder dies. torch's own build lock is a plain `lock` file, which a process killed while
    building or loading (Ctrl-C during the first model load) leaves behind, and every later
    process then waits on forever; inside this lock no other process can be using it, so one
    found there is stale and removed."""
    with open(folder / "haven.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        yield


def load():
    """The path of the compiled library (its ops registered as `torch.ops.haven.*`), building it on
    first use; None when it cannot be built."""
    global _module, _failed
    if _module is not None or _failed:
        return _module
    with _lock:
        if _module is None and not _failed:
            try:
                from torch.utils.cpp_extension import load as build

                folder = _cache_dir()
                folder.mkdir(parents=True, exist_ok=True)
                with _exclusive(folder):
                    path = build(
                        name="haven_qgemv",
                        sources=[str(p) for p in _SOURCES],
                        extra_cflags=_FLAGS,
                        extra_ldflags=["-fopenmp"],
                        build_directory=str(folder),
                        is_python_module=False,
                        verbose=False,
                    )
                torch.library.register_fake("haven::qlinear")(_qlinear_shape)
                torch.library.register_fake("haven::dense_rows")(_dense_rows_shape)
                torch.library.register_fake("haven::bf16_rows")(_bf16_rows_shape)
                _module = path or str(folder)
            except Exception as err:  # no compiler, no headers, a failed build: the portable path runs
                _failed = True
                logger.warning("Haven's quantized kernels could not be built (%s); using the portable path", err)
    return _module


@torch.compiler.assume_constant_result
def available() -> bool:
    """Whether the compiled kernels run here (building them on first use). A `torch.compile`
    trace runs this as plain Python and keeps the answer as a constant."""
    return load() is not None


def _qlinear_shape(x, qweight, scales, zeros, bias, bits, group_size, qweight2=None, scales2=None, zeros2=None,
                 bias2=None, qweight3=None, scales3=None, zeros3=None, bias3=None):
    """The output `torch.ops.haven.qlinear` makes, for tracing (torch.compile) without running it."""
    out = sum(q.shape[0] for q in (qweight, qweight2, qweight3) if q is not None)
    return x.new_empty((*x.shape[:-1], out))


def _dense_rows_shape(x, weight, bias):
    """The output `torch.ops.haven.dense_rows` makes, for tracing."""
    return x.new_empty((*x.shape[:-1], weight.shape[1]))


def _bf16_rows_shape(x, weight, bias, weight2=None, bias2=None, weight3=None, bias3=None):
    """The output `torch.ops.haven.bf16_rows` makes, for tracing."""
    return x.new_empty((*x.shape[:-1], sum(w.shape[0] for w in (weight, weight2, weight3) if w is not None)))


def _has_kernel(op: str) -> bool:
    return load() is not None and torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")


_dense: bool | None = None
_bf16: bool | None = None


@torch.compiler.assume_constant_result
def dense_available() -> bool:
    """Whether `torch.ops.haven.dense_rows` runs here: the library built, for an AVX-512 CPU
    (answered once; callers ask on every product, between memory-bound matrix products that
    leave the interpreter's data cold, so the answer is one global read)."""
    global _dense
    if _dense is None:
        _dense = _has_kernel("haven::dense_rows")
    return _dense


@torch.compiler.assume_constant_result
def bf16_available() -> bool:
    """Whether `torch.ops.haven.bf16_rows` runs here: the library built, for a CPU with
    AVX512-BF16 (answered once, as `dense_available`)."""
    global _bf16
    if _bf16 is None:
        _bf16 = _has_kernel("haven::bf16_rows")
    return _bf16


def enabled() -> bool:
    return os.environ.get("HAVEN_QUANT_KERNELS", "1") != "0"


_FLOAT32 = (None, torch.float32)


MAX_LAYERS = 3  # layers one kernel call multiplies by (a block's q, k and v)


def run(layers, x: torch.Tensor) -> torch.Tensor | None:
    """The outputs of `layers` (one to MAX_LAYERS) for x, side by side in one (..., sum of their
    out_features) tensor, by one call of the compiled kernel (float32 compute, x of shape (..., in)
    rounded to int8 once, as the module docstring says; one parallel region over all their output
    rows). None when it does not apply: another compute dtype, the kernels off or not buildable
    here. The layers share their input size and format (bits, group size, zeros or none), and the
    caller keeps to at most MAX_ROWS rows."""
    first = layers[0]
    if first.compute_dtype not in _FLOAT32 or not enabled() or (_module is None and not available()):
        return None
    if x.dtype != torch.float32:
        x = x.float()
    args = []
    for layer in layers:
        bias = layer.bias if layer.bias is None or layer.bias.dtype == torch.float32 else layer.bias.float()
        args += [layer.qweight, layer.scales, layer.zeros, bias]
    q, s, z, b, *more = args
    return torch.ops.haven.qlinear.default(x, q, s, z, b, first.bits, first.group_size, *more)
