"""Decode speed of two Haven source trees side by side, in one run (before/after a change).

    .venv/bin/python benchmarks/decode_ab.py --before /tmp/before/src --after src \
        [--models gpt2 llama] [--batches 1 2 4 8] [--beams 4] [--rounds 5] [--new-tokens 64]

Builds the GPT-2-124M and ~120M Llama shapes of `benchmarks/generate.py` (random weights, the
reference's config), then for each case runs greedy decoding (8-token prompt, no EOS) in fresh
processes, alternating before/after `--rounds` times, 2 threads, each model prepared with
`optimize_for_inference()` as pipelines do (`--as-loaded`: without). Prints tokens/s per side
(median and min-max over the rounds) and the after/before ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import PROMPT, build  # noqa: E402


def worker(path: str, batch: int, beams: int, new_tokens: int, prepare: bool) -> float:
    import torch

    torch.set_num_threads(2)
    from haven import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    if prepare:
        model.optimize_for_inference()
    ids = torch.randint(10, 1000, (batch, PROMPT), generator=torch.Generator().manual_seed(0))
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0, num_beams=beams)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=8, **kw)  # warm up
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=new_tokens, **kw)
            best = min(best, time.perf_counter() - t)
    return batch * new_tokens / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="the `src` folder of the tree to compare against")
    ap.add_argument("--after", default="src")
    ap.add_argument("--models", nargs="+", default=["gpt2", "llama"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--beams", nargs="*", type=int, default=[])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--as-loaded", action="store_true", help="no optimize_for_inference()")
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "haven-bench-generate"))
    ap.add_argument("--worker", nargs=4, metavar=("PATH", "BATCH", "BEAMS", "PREPARE"))
    args = ap.parse_args()
    if args.worker:
        path, batch, beams, prepare = args.worker
        print(json.dumps(worker(path, int(batch), int(beams), args.new_tokens, prepare == "1")))
        return
    if not args.before:
        ap.error("--before: the `src` folder of the tree to compare against is required")
    os.makedirs(args.root, exist_ok=True)
    cases = [(b, 1) for b in args.batches] + [(1, n) for n in args.beams]
    sides = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    for name in args.models:
        path = build(name, args.root)
        for batch, beams in cases:
            rates: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side, src in sides.items():
                    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "2"}
                    cmd = [sys.executable, __file__, "--new-tokens", str(args.new_tokens),
                           "--worker", path, str(batch), str(beams), "0" if args.as_loaded else "1"]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                    if out.returncode:
                        raise SystemExit(f"{side} worker failed:\n{out.stderr[-3000:]}")
                    rates[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = {s: statistics.median(r) for s, r in rates.items()}
            label = f"{name} batch {batch}" + (f" beams {beams}" if beams > 1 else "")
            spread = "  ".join(f"{s} {med[s]:.1f} ({min(r):.1f}-{max(r):.1f})" for s, r in rates.items())
            print(f"{label:<22} tok/s {spread}  after/before {med['after'] / med['before']:.3f}", flush=True)


if __name__ == "__main__":
    main()
