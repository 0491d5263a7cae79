"""Few-rows quantized products (the decode step's matmuls): Haven's kernels vs fp32 and torch's.

    .venv/bin/python benchmarks/quant_kernels.py [--rows 1 2 4 8] [--group 32] [--asymmetric]
    .venv/bin/python benchmarks/quant_kernels.py --old HEAD~3     # also the kernel of an earlier commit
    .venv/bin/python benchmarks/quant_kernels.py --hot            # weights cache-resident (compute bound)
    .venv/bin/python benchmarks/quant_kernels.py --threads 1 --cpu-time   # on a loaded machine

For each GPT-2-124M layer shape (in -> out: 768->2304 attention qkv, 768->768 attention out,
768->3072 MLP up, 3072->768 MLP down, 768->50257 the tied lm_head) and each number of rows of
x, it times y = x W^T + b by:

- `fp32`: `F.linear` on the float32 weight (what Haven's fp32 decode runs);
- `int8`, `int4`: `QuantizedLinear`'s compiled kernel (`torch.ops.haven.qlinear`), the layer's own
  codes and group scales;
- `int8-old`, `int4-old` (with --old REV): the kernel source of that commit, built beside it;
- `torch-int8`: `aten._weight_int8pack_mm` (int8, one scale per output row: fewer scales than
  Haven's groups, so a lower bound on its bytes);
- `torch-int4`: `aten._weight_int4pack_mm_for_cpu` where its layout applies (out a multiple of 16).

By default each call reads a different copy of the weight from a pool several times the size
of the L3 cache, as a decode step does (the whole model's weights stream from memory once per
token); --hot reuses one copy, which then sits in cache (a compute-bound upper figure).
Engines are interleaved: every round runs each engine once, in turn; a round's figure is the
mean of a burst of calls. Prints the weight bytes read per second (median over rounds, and the
min-max spread), its fraction of the machine's copy bandwidth (read + write bytes of a 1 GiB
copy, the ceiling benchmarks/generate.py uses), and the time ratio against fp32.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from generate import copy_bandwidth  # noqa: E402  (this folder is on sys.path when run as a script)

from haven.linear import kernels  # noqa: E402
from haven.linear.quantized import QuantizedLinear  # noqa: E402

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50257)]  # (in, out)
POOL_BYTES = 256 << 20  # weight copies cycled through per engine: several times the L3 cache


def load_old(rev: str):
    """The kernel built from haven/linear/kernels/qgemv.cpp at commit `rev`, its op renamed
    `torch.ops.haven_old.*` so that it loads beside the current one."""
    from torch.utils.cpp_extension import load

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    text = subprocess.run(["git", "show", f"{rev}:src/haven/linear/kernels/qgemv.cpp"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    text = re.sub(r"TORCH_LIBRARY_(FRAGMENT|IMPL)\(haven,", r"TORCH_LIBRARY_\1(haven_old,", text)
    folder = tempfile.mkdtemp(prefix="haven-old-qgemv-")
    source = os.path.join(folder, "qgemv_old.cpp")
    with open(source, "w") as f:
        f.write(text)
    load(name="haven_qgemv_old", sources=[source], extra_cflags=["-O3", "-march=native", "-fopenmp-simd"],
         build_directory=folder, is_python_module=False, verbose=False)
    return torch.ops.haven_old


def pool(make, nbytes: int, hot: bool) -> list:
    """Callables `make()` builds, each on its own copy of the weight, adding up to POOL_BYTES (one
    when hot)."""
    count = 1 if hot else max(2, -(-POOL_BYTES // nbytes))
    return [make() for _ in range(count)]


def haven_call(layer: QuantizedLinear, kernel):
    """y = kernel(x, codes, scales, zeros, bias, bits, group) on fresh copies of the layer's tensors."""
    q, s = layer.qweight.clone(), layer.scales.clone()
    z = None if layer.zeros is None else layer.zeros.clone()
    return lambda x: kernel(x, q, s, z, layer.bias, layer.bits, layer.group_size)


def engines(in_f: int, out_f: int, args, old) -> dict:
    """name -> (weight bytes read per call, list of callables y = f(x), one per weight copy)."""
    weight = torch.randn(out_f, in_f) * 0.02
    bias = torch.randn(out_f) * 0.02
    found = {}

    def fp32():
        w = weight.clone()
        return lambda x: F.linear(x, w, bias)

    found["fp32"] = (weight.numel() * 4, pool(fp32, weight.numel() * 4, args.hot))
    for bits in (8, 4):
        layer = QuantizedLinear(in_f, out_f, bias=True, bits=bits, group_size=args.group, symmetric=not args.asymmetric)
        layer.set_float_weight(weight)
        layer.bias.data = bias
        nbytes = layer.qweight.numel() + 4 * layer.scales.numel() * (1 if layer.zeros is None else 2)
        found[f"int{bits}"] = (nbytes, pool(lambda layer=layer: haven_call(layer, torch.ops.haven.qlinear), nbytes, args.hot))
        if old is not None:
            found[f"int{bits}-old"] = (nbytes, pool(lambda layer=layer: haven_call(layer, getattr(old, "qlinear", None) or old.qgemv), nbytes, args.hot))

    codes = torch.randint(-127, 128, (out_f, in_f), dtype=torch.int8)
    per_row = torch.rand(out_f) * 0.01

    def torch_int8():
        c = codes.clone()
        return lambda x: torch.ops.aten._weight_int8pack_mm(x, c, per_row) + bias

    found["torch-int8"] = (codes.numel() + 4 * out_f, pool(torch_int8, codes.numel() + 4 * out_f, args.hot))
    if out_f % 16 == 0:
        try:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                torch.randint(0, 16, (out_f, in_f), dtype=torch.int32), 2)
            sz = torch.rand(in_f // args.group, out_f, 2) * 0.01
            torch.ops.aten._weight_int4pack_mm_for_cpu(torch.randn(1, in_f), packed, args.group, sz)
        except RuntimeError as err:
            print(f"  (torch-int4 not measured: {str(err).splitlines()[0]})")
        else:
            def torch_int4():
                p, s = packed.clone(), sz.clone()
                return lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(x, p, args.group, s) + bias

            nbytes = packed.numel() * packed.element_size() + sz.numel() * 4
            found["torch-int4"] = (nbytes, pool(torch_int4, nbytes, args.hot))
    return found


def time_engine(calls: list, x: torch.Tensor, start: int, seconds: float, clock=time.perf_counter) -> float:
    """Mean seconds per call over a burst of about `seconds` of `clock`, cycling through the copies."""
    n, i, t0 = 0, start, clock()
    while True:
        for _ in range(8):
            calls[i % len(calls)](x)
            i += 1
        n += 8
        elapsed = clock() - t0
        if elapsed >= seconds:
            return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--asymmetric", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=float, default=0.05, help="seconds per engine per round")
    parser.add_argument("--hot", action="store_true", help="reuse one weight copy (cache-resident)")
    parser.add_argument("--old", metavar="REV", help="also time the kernel source of this git commit")
    parser.add_argument("--shapes", type=int, nargs="*", help="indices into the shape list (default all)")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by the process's CPU seconds, not the wall clock: with --threads 1, a "
                             "figure that other processes on a loaded machine disturb less")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter

    if kernels.load() is None:
        sys.exit("Haven's kernels could not be built here")
    old = load_old(args.old) if args.old else None
    ceiling = copy_bandwidth()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, copy bandwidth {ceiling / 1e9:.1f} GB/s, "
          f"load average {os.getloadavg()[0]:.2f}; group {args.group}, "
          f"{'asymmetric' if args.asymmetric else 'symmetric'}, {'hot' if args.hot else 'cold (pool of copies)'}, "
          f"{args.rounds} rounds, {'CPU' if args.cpu_time else 'wall'} time")
    head = f"{'in->out':>11}{'rows':>5}  {'engine':<11}{'GB/s':>7}{'spread':>14}{'% ceil':>8}{'us/call':>9}{'vs fp32':>9}"
    print(head)
    print("-" * len(head))
    shapes = [SHAPES[i] for i in args.shapes] if args.shapes else SHAPES
    with torch.inference_mode():
        for in_f, out_f in shapes:
            found = engines(in_f, out_f, args, old)
            for rows in args.rows:
                x = torch.randn(rows, in_f)
                times = {name: [] for name in found}
                for _, calls in found.values():  # warm up
                    time_engine(calls, x, 0, 0.01)
                for r in range(args.rounds):
                    for name, (_, calls) in found.items():
                        times[name].append(time_engine(calls, x, r * 7, args.burst, clock))
                fp32 = statistics.median(times["fp32"])
                for name, (nbytes, _) in found.items():
                    med = statistics.median(times[name])
                    rates = [nbytes / t / 1e9 for t in times[name]]
                    print(f"{f'{in_f}->{out_f}':>11}{rows:>5}  {name:<11}{nbytes / med / 1e9:>7.1f}"
                          f"{f'{min(rates):.1f}-{max(rates):.1f}':>14}{100 * nbytes / med / ceiling:>7.0f}%"
                          f"{med * 1e6:>9.1f}{fp32 / med:>8.2f}x")
                print()
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
