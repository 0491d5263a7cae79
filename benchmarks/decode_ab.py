"""Decode speed of two Haven source trees side by side, in one run (before/after a change).

    .venv/bin/python benchmarks/decode_ab.py --before /tmp/before/src --after src \
        [--models gpt2 llama] [--batches 1 2 4 8] [--beams 4] [--rounds 5] [--new-tokens 64]

Builds the GPT-2-124M and ~120M Llama shapes of `benchmarks/generate.py` (random weights, the
reference's config), then for each case runs greedy decoding (8-token prompt, no EOS) in fresh
processes, alternating before/after `--rounds` times, 2 threads, each model prepared with
`optimize_for_inference()` as pipelines do (`--as-loaded`: without; `--compile-after`: the after
side also with `compile_decoding()`, against a before side that may not have it). Prints tokens/s
per side (median and min-max over the rounds) and the after/before ratio of the medians.

`--split` instead times where a batch-1 greedy decode step goes, per side (medians over the
rounds, process CPU time, so other processes' load inflates it less than wall time):
- `step`: one generate() step, (time of 1 + N new tokens - time of 1) / N;
- `forward`: the model's one-token forward over a KV cache of `PROMPT + N/2` tokens;
- `generate loop`: step - forward (logits processing, choosing, stopping, buffers);
- `matmuls alone`: every projection and the LM head, called back to back on one row (the
  model's own modules, so its layout and kernels; the layers a block projects together through
  `project()`, as the block calls them), nothing else;
- `forward, no matmuls`: the forward with every projection answering a preallocated output
  at once: norms, activations, residuals, rotary, the cache writes, attention, module and op
  dispatch (the overhead a compiled step or fused kernels could remove);
- `attention`: of that, scaled_dot_product_attention alone at each layer's shapes;
- `matmuls in forward`: forward - forward without matmuls; above `matmuls alone` when the
  projections run slower between the other ops than back to back.
`--threads` sets the threads (default 2); with 1 the split is least disturbed by a busy machine.
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


def worker(path: str, batch: int, beams: int, new_tokens: int, prepare: bool, compiled: bool = False) -> float:
    import torch

    from haven import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    if prepare:
        model.optimize_for_inference()
    if compiled:
        model.compile_decoding()  # the warm-up below compiles (inductor's disk cache serves later rounds)
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


def _cpu_ms(fn, repeats: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3


def _rows_in(m) -> int:
    return getattr(m, "in_features", None) or m.weight.shape[0]  # GPT-2's Conv1D stores (in, out)


def _answer_at_once(result):
    def forward(x):
        return result.expand(*x.shape[:-1], result.shape[-1])

    return forward


def split(path: str, new_tokens: int, prepare: bool) -> dict[str, float]:
    """Per-step CPU milliseconds of a batch-1 greedy decode, by part (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    from haven import AutoModelForCausalLM
    from haven.layers import KVCache

    try:
        from haven.linear import project as haven_project
    except ImportError:  # a tree from before linear.project
        haven_project = None
    project = haven_project.project if haven_project else lambda x, *layers: tuple(layer(x) for layer in layers)

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    if prepare:
        model.optimize_for_inference()
    cfg = model.config
    ids = torch.randint(10, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    kw = dict(do_sample=False, pad_token_id=0)
    out: dict[str, float] = {}
    with torch.inference_mode():
        one = _cpu_ms(lambda: model.generate(ids, max_new_tokens=1, **kw), 3)
        full = _cpu_ms(lambda: model.generate(ids, max_new_tokens=new_tokens + 1, **kw), 3)
        out["step"] = (full - one) / new_tokens
        past = PROMPT + new_tokens // 2
        cache = KVCache(max_length=past + 1)
        model(torch.randint(10, 1000, (1, past)), cache=cache, use_cache=True)
        token = ids[:, -1:]

        def forward():
            model(token, cache=cache, use_cache=True, logits_to_keep=1)
            cache.crop(past)

        out["forward"] = _cpu_ms(forward, 3 * new_tokens)
        out["generate loop"] = out["step"] - out["forward"]
        calls = []
        for name, m in model.named_modules():
            w = getattr(m, "weight", None)
            if isinstance(m, (torch.nn.Embedding, torch.nn.LayerNorm)) or not isinstance(w, torch.Tensor):
                continue
            if w.dim() != 2 or (name != "lm_head" and any(True for _ in m.children())):
                continue
            calls.append((m, torch.randn(1, 1, _rows_in(m))))
        # the products as the model makes them: the layers a block projects together in one call
        together = [
            [getattr(m, n) for n in names] for m in model.modules() for names in getattr(m, "projected_together", ())
        ]
        grouped = {id(layer) for layers in together for layer in layers}
        products = [(layers, torch.randn(1, 1, _rows_in(layers[0]))) for layers in together]
        products += [([m], x) for m, x in calls if id(m) not in grouped]
        out["matmuls alone"] = _cpu_ms(lambda: [project(x, *layers) for layers, x in products], 3 * new_tokens // 4)
        for m, _ in calls:  # each projection answers at once with an output of its shape
            m.forward = _answer_at_once(m(torch.zeros(1, 1, _rows_in(m))))
        if haven_project and hasattr(haven_project, "joined"):  # so project() calls the layers
            joined, haven_project.joined = haven_project.joined, lambda layers: None
        out["forward, no matmuls"] = _cpu_ms(forward, 3 * new_tokens)
        if haven_project and hasattr(haven_project, "joined"):
            haven_project.joined = joined
        for m, _ in calls:
            del m.forward
        out["matmuls in forward"] = out["forward"] - out["forward, no matmuls"]
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        hs = cfg.hidden_size // heads
        q = torch.randn(1, heads, 1, hs)
        k, v = torch.randn(1, kv_heads, past + 1, hs), torch.randn(1, kv_heads, past + 1, hs)
        gqa = kv_heads != heads
        attend = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)  # noqa: E731
        out["attention"] = _cpu_ms(lambda: [attend() for _ in range(cfg.num_hidden_layers)], 3 * new_tokens)
    return out


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
    ap.add_argument("--compile-after", action="store_true", help="the after side decodes with compile_decoding()")
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "haven-bench-generate"))
    ap.add_argument("--split", action="store_true", help="where a batch-1 step's time goes, per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", nargs=4, metavar=("PATH", "BATCH", "BEAMS", "PREPARE"))
    args = ap.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        path, batch, beams, prepare = args.worker
        if args.split:
            print(json.dumps(split(path, args.new_tokens, prepare == "1")))
            return
        print(json.dumps(worker(path, int(batch), int(beams), args.new_tokens, prepare in "1c", prepare == "c")))
        return
    if not args.before:
        ap.error("--before: the `src` folder of the tree to compare against is required")
    os.makedirs(args.root, exist_ok=True)
    cases = [(1, 1)] if args.split else [(b, 1) for b in args.batches] + [(1, n) for n in args.beams]
    sides = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    for name in args.models:
        path = build(name, args.root)
        for batch, beams in cases:
            rates: dict[str, list] = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side, src in sides.items():
                    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(args.threads)}
                    cmd = [sys.executable, __file__, "--new-tokens", str(args.new_tokens), "--threads",
                           str(args.threads), *(["--split"] if args.split else []),
                           "--worker", path, str(batch), str(beams), mode(args, side)]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                    if out.returncode:
                        raise SystemExit(f"{side} worker failed:\n{out.stderr[-3000:]}")
                    rates[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            if args.split:
                print_split(name, rates)
                continue
            med = {s: statistics.median(r) for s, r in rates.items()}
            label = f"{name} batch {batch}" + (f" beams {beams}" if beams > 1 else "")
            spread = "  ".join(f"{s} {med[s]:.1f} ({min(r):.1f}-{max(r):.1f})" for s, r in rates.items())
            print(f"{label:<22} tok/s {spread}  after/before {med['after'] / med['before']:.3f}", flush=True)


def mode(args: argparse.Namespace, side: str) -> str:
    """The worker's PREPARE argument: 0 as loaded, 1 optimize_for_inference(), c also compiled."""
    if args.compile_after and side == "after":
        return "c"
    return "0" if args.as_loaded else "1"


def print_split(name: str, parts: dict[str, list[dict[str, float]]]) -> None:
    print(f"{name}: CPU ms per batch-1 decode step, median (min-max) over the rounds", flush=True)
    for part in parts["before"][0]:
        cells = "  ".join(
            f"{side} {statistics.median(r[part] for r in runs):6.2f} "
            f"({min(r[part] for r in runs):.2f}-{max(r[part] for r in runs):.2f})"
            for side, runs in parts.items()
        )
        print(f"  {part:<20} {cells}", flush=True)


if __name__ == "__main__":
    main()
