"""Greedy decoding speed: Haven (fp32, bf16, int8, int4) vs the reference library and the peers
users pick for CPU decoding (llama.cpp, CTranslate2), and the machine's bandwidth ceiling for
each weight size.

    .venv/bin/python benchmarks/generate.py [--new-tokens 128] [--batches 1 8] [--models gpt2 llama]
    .venv/bin/python benchmarks/generate.py --engines reference haven haven-int8 haven-int4 --batches 1
    .venv/bin/python benchmarks/generate.py --models gpt2-narrow llama-narrow --batches 1   # overhead
    .venv/bin/python benchmarks/generate.py --memory   # peak RSS of loading GPT-2-124M fp32 vs 4-bit

Engines (--engines; default all):
- `reference` (transformers, fp32) and `reference-bf16` (the same with dtype=torch.bfloat16);
  `haven` (fp32, optimize_for_inference()); `haven-bf16` (dtype=torch.bfloat16; its `same
  tokens` column counts against `reference-bf16` when that runs: bfloat16 logits tie exactly
  more often, and two bfloat16 runs that sum in another order part at such ties); `haven-int8`
  (load_in_8bit) and `haven-int4` (load_in_4bit): the output layer stays float, as in the
  reference; `haven-int8-head` / `haven-int4-head`: the
  same with `QuantizationConfig(quantize_lm_head=True)`, the output layer quantized too, as
  llama.cpp's files have it (the rows to hold against llama.cpp's). `haven-compiled`,
  `haven-int8-head-compiled`, `haven-int4-head-compiled`: the same models with
  `compile_decoding()` (the one-token steps through torch.compile; the compile happens in the
  warm-up, and the `ready` time printed per engine includes it).
- `llama.cpp-f32`, `llama.cpp-q8_0` (GGUF written by llama.cpp's `convert_hf_to_gguf.py`,
  --outtype f32 / q8_0) and `llama.cpp-q4_0` (the f32 GGUF through `llama_cpp.llama_model_quantize`
  with its default parameters, as `llama-quantize model.gguf out.gguf Q4_0` does: llama.cpp's
  rules give the output layer Q6_K), run by `llama-cpp-python`. The benchmark prints each GGUF
  file's tensor types; GPT-2's, checked: f32 every matrix F32; q8_0 every matrix Q8_0 (the tied
  token table included), the position table F32; q4_0 the 48 block matrices Q4_0, the tied token
  table Q6_K, the position table F32. Batch 1 only (this benchmark drives one llama.cpp
  sequence; the batch-8 rows say so). The prompt is evaluated one token at a time (n_batch 1:
  the quantized multi-token evaluation crashed on this CPU before), greedy = argmax of the last
  logits, no EOS.
- `ctranslate2-int8`: `ctranslate2.converters.TransformersConverter(..., quantization="int8")`,
  `Generator.generate_batch(sampling_topk=1, end_token=[])`, batch 1 and 8.
A peer whose package is not installed, or whose conversion fails, is skipped with a line saying why.
Peers run with as many threads as torch uses here (intra_threads / n_threads).

Tokenizer for the peers: the converters read the checkpoint's tokenizer, and random checkpoints
have none, so each gets one built here with the `tokenizers` library (nothing downloaded): a
byte-level BPE whose vocabulary is exactly the model's vocab_size (256 byte tokens, then merges
of byte pairs in a fixed order, then <|endoftext|> as bos/eos/unk). The prompt and the generated
ids never go through it. llama.cpp's converter identifies a BPE pre-tokenizer by the hash of a
test string's ids and refuses unknown ones, so it runs with the pre-tokenizer named explicitly:
imported as a module, its `TextModel.get_vocab_base_pre` replaced by one returning "gpt-2" (the
tokenizer's pre-tokenizer is GPT-2's byte-level one). The converter is not copied here: it runs
from llama-cpp-python's source distribution, which the benchmark downloads with pip (the version
installed, `pip download llama-cpp-python==X --no-deps --no-binary llama-cpp-python`) into its work dir, or
takes from `--llama-cpp-src DIR` (the sdist's vendor/llama.cpp, or a llama.cpp checkout).

Builds a GPT-2-124M-shaped and a ~120M Llama-shaped random checkpoint with the reference
library (fp32, in a temp dir), then for each model and batch size runs an 8-token prompt + 128
new tokens greedy (no EOS, so every run has the full length) in fresh subprocesses (Haven's
model prepared with `optimize_for_inference()`, as its pipelines do), the engines alternated
(so load from other processes hits all alike), each one's peak RSS its own. Prints tokens/s,
the ratio to the reference, and the fraction of the memory-bandwidth ceiling: decode steps/s
cannot exceed (copy bandwidth of a large tensor) / (weight bytes read per step), counted per
engine (GGUF: the file's own tensor sizes; CTranslate2 int8: a quarter of fp32, approximately),
and `ready s`: load plus the warm-up generate (for -compiled engines, the compile).
Also prints the matmul-only rate: the step's weight matmuls run back to back with nothing else,
an upper bound for any implementation using the same GEMM kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import generate_peers as peers  # this folder is on sys.path when run as a script

LLAMA_CPP = peers.LLAMA_CPP

PROMPT = 8

SHAPES = {
    # GPT-2 small: 124M parameters (n_ctx as GPT-2's own config.json has it: llama.cpp's converter reads it)
    "gpt2": dict(kind="gpt2", n_embd=768, n_layer=12, n_head=12, n_positions=1024, n_ctx=1024, vocab_size=50257),
    # Llama-shaped, ~125M: GQA 12 heads / 4 kv heads, SwiGLU 2048, untied 32k head
    "llama": dict(
        kind="llama", hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False,
    ),
    # the same depth at width 96: the matmuls are negligible, so tokens/s measures the per-step
    # overhead around them (run with --models gpt2-narrow llama-narrow)
    "gpt2-narrow": dict(kind="gpt2", n_embd=96, n_layer=12, n_head=12, n_positions=1024, n_ctx=1024, vocab_size=1000),
    "llama-narrow": dict(
        kind="llama", hidden_size=96, intermediate_size=256, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=4, vocab_size=1000, max_position_embeddings=2048, tie_word_embeddings=False,
    ),
}
DEFAULT_MODELS = ["gpt2", "llama"]


def build(name: str, root: str) -> str:
    import torch
    import transformers

    spec = dict(SHAPES[name])
    kind = spec.pop("kind")
    path = os.path.join(root, name)
    if os.path.exists(os.path.join(path, "config.json")):
        if not os.path.exists(os.path.join(path, "tokenizer.json")):  # a work dir from before the peers
            peers.save_tokenizer(path, spec["vocab_size"])
        return path
    config_cls, model_cls = {
        "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel),
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    }[kind]
    torch.manual_seed(0)
    config = config_cls(**spec, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = model_cls(config).eval()
    model.generation_config = transformers.GenerationConfig(pad_token_id=0)  # no EOS: full length always
    model.save_pretrained(path)
    peers.save_tokenizer(path, spec["vocab_size"])
    return path


def copy_bandwidth(size_mb: int = 1024, repeats: int = 5) -> float:
    """Bytes per second moved (read + written) copying a large fp32 tensor: the best of `repeats`."""
    import torch

    src = torch.ones(size_mb * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def weight_bytes_per_step(path: str) -> tuple[int, int]:
    """fp32 bytes of weights a decode step reads, as (everything but the LM head, the LM head):
    every matrix, norms; one embedding row (negligible) rather than the input embedding table,
    unless it is also the (tied) LM head."""
    from safetensors import safe_open

    body = head = 0
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        tied = not any(k.startswith("lm_head") for k in keys)
        for key in keys:
            is_embedding = key.endswith(("wte.weight", "embed_tokens.weight", "wpe.weight"))
            is_head = key.startswith("lm_head") or (tied and key.endswith(("wte.weight", "embed_tokens.weight")))
            if is_embedding and not is_head:
                continue
            n = 1
            for d in f.get_slice(key).get_shape():
                n *= d
            if is_head:
                head += n * 4
            else:
                body += n * 4
    return body, head


def matmul_floor(path: str, batch: int, repeats: int = 5) -> float:
    """Decode steps/s of the weight matmuls alone: every matrix a step reads (the LM head
    included), multiplied by a (batch, in) activation, nothing else. Each matrix is stored
    (in, out), the layout MKL streams fastest at batch 1 and the one Haven decodes with (GPT-2's
    files hold it; Llama's are re-laid that way), one call per matrix of the file."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(os.path.join(path, "model.safetensors"))
    tied = not any(k.startswith("lm_head") for k in tensors)
    conv1d = any(k.endswith("c_attn.weight") for k in tensors)  # GPT-2 stores (in, out)
    calls = []
    for key, w in tensors.items():
        is_embedding = key.endswith(("wte.weight", "embed_tokens.weight", "wpe.weight"))
        if w.dim() != 2 or (is_embedding and not (tied and key.endswith(("wte.weight", "embed_tokens.weight")))):
            continue
        in_out = w if conv1d and not is_embedding else w.t().contiguous()
        calls.append((torch.randn(batch, in_out.shape[0]), in_out))
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t = time.perf_counter()
            for x, w in calls:
                torch.mm(x, w)
            best = min(best, time.perf_counter() - t)
    return 1 / best


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM restarts at exec (ru_maxrss would carry the parent's
    peak over into a child started with fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- worker: one engine, one model, one batch size, in its own process -----------------------------------


HAVEN_LOADING = {
    "haven": {},
    "haven-as-loaded": {},
    "haven-bf16": {"dtype": "bfloat16"},
    "haven-int8": {"load_in_8bit": True},
    "haven-int4": {"load_in_4bit": True},
    "haven-int8-head": {"quantization_config": {"bits": 8, "quantize_lm_head": True}},
    "haven-int4-head": {"quantization_config": {"bits": 4, "quantize_lm_head": True}},
}
COMPILED = "-compiled"  # an engine name's suffix: its decode steps compiled (compile_decoding())
HAVEN_LOADING.update({f"{lib}{COMPILED}": HAVEN_LOADING[lib] for lib in ("haven", "haven-int8-head", "haven-int4-head")})
REFERENCE_LOADING = {"reference": {}, "reference-bf16": {"dtype": "bfloat16"}}
ENGINES = [*REFERENCE_LOADING, *HAVEN_LOADING, *peers.PEERS]
DEFAULT_ENGINES = [e for e in ENGINES if e != "haven-as-loaded"]
# bytes a decode step reads per weight, relative to fp32 (int8/int4 in groups of 32 with a float16 scale,
# int4 asymmetric with a float16 zero too; CTranslate2 int8: one scale per row); embeddings and norms
# stay float, and so does the LM head unless the engine's name ends in -head (bf16, CTranslate2: all)
WEIGHT_FRACTION = {"haven-bf16": 0.5, "reference-bf16": 0.5, "haven-int8": (1 + 2 / 32) / 4, "haven-int4": (0.5 + 4 / 32) / 4,
                   "ctranslate2-int8": 0.25}


def loaded_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def load_torch_engine(lib: str, path: str, prompt: list[list[int]], threads: int):
    """The reference or Haven: `generate(n)` -> the n new tokens of each prompt."""
    import torch

    torch.set_num_threads(threads)
    if lib.startswith("haven"):
        from haven import AutoModelForCausalLM
    else:
        import transformers
        from transformers import AutoModelForCausalLM

        transformers.logging.set_verbosity_error()
    model = AutoModelForCausalLM.from_pretrained(path, **loading_kwargs(lib)).eval()
    if lib in ("haven", "haven-bf16", f"haven{COMPILED}"):
        model.optimize_for_inference()  # as pipelines do
    if lib.endswith(COMPILED):
        model.compile_decoding()
    ids = torch.tensor(prompt)
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0)

    def generate(n: int) -> list[list[int]]:
        with torch.inference_mode():
            return model.generate(ids, max_new_tokens=n, **kw)[:, ids.shape[1]:].tolist()

    return generate, loaded_bytes(model)


def loading_kwargs(lib: str) -> dict:
    kwargs = dict(HAVEN_LOADING.get(lib) or REFERENCE_LOADING.get(lib, {}))
    if isinstance(kwargs.get("quantization_config"), dict):
        from haven import QuantizationConfig

        kwargs["quantization_config"] = QuantizationConfig(**kwargs["quantization_config"])
    return kwargs


def worker(lib: str, path: str, prompt: list[list[int]], new_tokens: int, repeats: int, threads: int) -> dict:
    start = time.perf_counter()
    if lib in LLAMA_CPP:
        generate, model_bytes = peers.load_llama_cpp(path, prompt, threads, new_tokens)
    elif lib == "ctranslate2-int8":
        generate, model_bytes = peers.load_ctranslate2(path, prompt, threads)
    else:
        generate, model_bytes = load_torch_engine(lib, path, prompt, threads)
    generate(8)  # warm up
    ready = time.perf_counter() - start
    prefill, totals = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        generate(1)
        prefill.append(time.perf_counter() - t)
    for _ in range(repeats):
        t = time.perf_counter()
        out = generate(new_tokens)
        totals.append(time.perf_counter() - t)
    assert [len(s) for s in out] == [new_tokens] * len(prompt), [len(s) for s in out]
    total, first = min(totals), min(prefill)
    return {
        "tokens_per_s": len(prompt) * new_tokens / total,
        "decode_steps_per_s": (new_tokens - 1) / max(total - first, 1e-9),
        "seconds": total,
        "ready_s": ready,  # load + the first (8-token) generate
        "peak_rss_mb": peak_rss_mb(),
        "sequences": out if len(prompt) == 1 else None,
        "model_mb": model_bytes / 2**20,
    }


def memory_worker(lib: str, path: str) -> dict:
    """Peak RSS of importing torch + Haven, loading `path` and running one forward pass (so the
    memory-mapped weights a step reads are resident: a load alone touches none of an fp32
    checkpoint's pages), and the float embedding bytes of the loaded model."""
    import torch

    from haven import AutoModelForCausalLM

    before = peak_rss_mb()
    if lib == "none":
        return {"peak_rss_mb": before, "embeddings_mb": 0.0}
    model = AutoModelForCausalLM.from_pretrained(path, **loading_kwargs(lib))
    with torch.inference_mode():
        model(torch.tensor([[10, 11, 12, 13]]))
    embeddings = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    emb = sum(w.numel() * w.element_size() for w in embeddings.values()) / 2**20
    return {"peak_rss_mb": peak_rss_mb(), "embeddings_mb": emb, "imports_rss_mb": before}


def memory_report(path: str) -> None:
    """The issue's bar: loading GPT-2-124M in 4 bits, the memory beyond the float embeddings is
    below 40% of what the fp32 load takes; and what loading it as bfloat16 takes. Each load in
    its own process; the import cost (a process that imports torch and Haven and loads nothing)
    is subtracted from each."""
    res = {}
    for lib in ("none", "haven", "haven-bf16", "haven-int4"):
        cmd = [sys.executable, __file__, "--memory-worker", lib, "--path", path]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res[lib] = json.loads(out.stdout.strip().splitlines()[-1])
    base = res["none"]["peak_rss_mb"]
    fp32 = res["haven"]["peak_rss_mb"] - base
    print(f"peak RSS beyond imports ({base:.0f} MB), load + one forward: fp32 {fp32:.0f} MB")
    half = res["haven-bf16"]["peak_rss_mb"] - base
    print(f"  haven-bf16 (dtype=bfloat16 from the fp32 checkpoint): {half:.0f} MB = {100 * half / fp32:.0f}% of the fp32 load")
    for lib in ("haven-int4",):
        q = res[lib]["peak_rss_mb"] - base
        emb = res[lib]["embeddings_mb"]
        print(f"  {lib}: {q:.0f} MB, of which float embeddings {emb:.0f} MB; beyond them {q - emb:.0f} MB = "
              f"{100 * (q - emb) / fp32:.0f}% of the fp32 load (bar: < 40%)")


def run_worker(lib: str, path: str, prompt: list[list[int]], new_tokens: int, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", lib, "--path", path, "--prompt", json.dumps(prompt),
           "--new-tokens", str(new_tokens), "--repeats", str(repeats), "--threads", str(threads)]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{lib} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def best_of_rounds(
    paths: dict[str, str], prompt: list[list[int]], new_tokens: int, repeats: int, rounds: int, threads: int
) -> dict[str, dict]:
    """Alternate the engines (ABBA...) so load from other processes hits all alike; keep each
    one's best run (peak RSS: the largest seen)."""
    best: dict[str, dict] = {}
    libs = list(paths)
    for r in range(rounds):
        for lib in libs if r % 2 == 0 else libs[::-1]:
            res = run_worker(lib, paths[lib], prompt, new_tokens, repeats, threads)
            old = best.get(lib)
            if old is None or res["tokens_per_s"] > old["tokens_per_s"]:
                res["peak_rss_mb"] = max(res["peak_rss_mb"], old["peak_rss_mb"] if old else 0)
                best[lib] = res
            else:
                old["peak_rss_mb"] = max(old["peak_rss_mb"], res["peak_rss_mb"])
    return best


def step_bytes(lib: str, body: int, head: int, peer_step: dict[str, int]) -> float:
    """Weight bytes engine `lib` reads per decode step (`body`, `head`: the fp32 checkpoint's)."""
    if lib in peer_step:
        return peer_step[lib]
    base = lib.removesuffix(COMPILED)
    fraction = WEIGHT_FRACTION.get(base.removesuffix("-head"), 1.0)
    head_too = base.endswith("-head") or base in ("haven-bf16", "reference-bf16", "ctranslate2-int8")
    return body * fraction + head * (fraction if head_too else 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(SHAPES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs inside each worker process")
    parser.add_argument("--rounds", type=int, default=2, help="worker processes per engine, alternated")
    parser.add_argument("--dir", default=None, help="where to build (and reuse) the checkpoints and the peers' files")
    parser.add_argument("--as-loaded", action="store_true",
                        help="also run Haven without optimize_for_inference() (the weights as loaded)")
    parser.add_argument("--engines", nargs="+", default=DEFAULT_ENGINES, choices=ENGINES)
    parser.add_argument("--llama-cpp-src", default=None,
                        help="llama.cpp source dir with convert_hf_to_gguf.py (default: pip download the sdist)")
    parser.add_argument("--memory", action="store_true", help="only the peak-RSS comparison of fp32 / 4-bit loading")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", choices=["none", *HAVEN_LOADING], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--prompt", type=json.loads, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.prompt, args.new_tokens, args.repeats, args.threads)))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.path)))
        return

    import torch

    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured, also into a file
    root = args.dir or tempfile.mkdtemp(prefix="haven-bench-")
    if args.memory:
        memory_report(build("gpt2", root))
        return
    engines = args.engines + (["haven-as-loaded"] if args.as_loaded and "haven-as-loaded" not in args.engines else [])
    threads = torch.get_num_threads()
    bandwidth = copy_bandwidth()
    print(f"torch {torch.__version__}, {threads} threads (the peers too), "
          f"copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + write, 1 GiB fp32 tensor)")
    print(f"prompt {PROMPT} tokens, {args.new_tokens} new tokens, greedy, "
          f"best of {args.rounds} alternated processes x {args.repeats} runs\n")
    for name in args.models:
        path = build(name, root)
        body, head = weight_bytes_per_step(path)
        files, skipped, peer_step, holds = peers.prepare_peers(engines, path, root, args.llama_cpp_src)
        print(f"{name}: fp32 weights read per step {(body + head) / 2**20:.0f} MiB (LM head {head / 2**20:.0f})")
        for lib, why in skipped.items():
            print(f"  {lib}: skipped ({why})")
        for lib, what in holds.items():
            print(f"  {lib}: {os.path.basename(files[lib])}: {what}")
        header = (f"{'engine':<25}{'batch':>6}{'tok/s':>9}{'vs ref':>8}{'ceiling steps/s':>17}{'% ceil':>8}"
                  f"{'RSS MB':>8}{'weights MB':>12}{'same tokens':>13}{'ready s':>9}")
        print(header)
        print("-" * len(header))
        for batch in args.batches:
            g = torch.Generator().manual_seed(0)
            prompt = torch.randint(10, 1000, (batch, PROMPT), generator=g).tolist()
            runnable = [e for e in engines if e not in skipped and not (batch > 1 and e in LLAMA_CPP)]
            paths = {e: files.get(e, path) for e in runnable}
            best = best_of_rounds(paths, prompt, args.new_tokens, args.repeats, args.rounds, threads)
            ref = best.get("reference")
            for lib in engines:
                if lib not in best:
                    why = "batch 1 only: this benchmark drives one llama.cpp sequence" if lib in LLAMA_CPP else "skipped"
                    print(f"{lib:<25}{batch:>6}  {why if lib not in skipped else 'skipped'}")
                    continue
                res = best[lib]
                ceiling = bandwidth / step_bytes(lib, body, head, peer_step)
                ratio = f"{res['tokens_per_s'] / ref['tokens_per_s']:.2f}x" if ref else "-"
                same = "-"
                base = best.get("reference-bf16") if lib == "haven-bf16" and "reference-bf16" in best else ref
                if batch == 1 and base and res["sequences"] is not None:
                    a, b = base["sequences"][0], res["sequences"][0]
                    same = f"{sum(x == y for x, y in zip(a, b))}/{len(a)}"
                print(f"{lib:<25}{batch:>6}{res['tokens_per_s']:>9.1f}{ratio:>8}{ceiling:>17.1f}"
                      f"{100 * res['decode_steps_per_s'] / ceiling:>7.0f}%{res['peak_rss_mb']:>8.0f}"
                      f"{res['model_mb']:>12.0f}{same:>13}{res['ready_s']:>9.1f}")
            if batch == 1:
                floor = matmul_floor(path, batch)
                print(f"{'':<25}fp32 weight matmuls alone: {floor:.1f} steps/s")
        print()


if __name__ == "__main__":
    main()
