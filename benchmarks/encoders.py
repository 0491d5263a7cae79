"""Haven vs the reference library on a BERT-base–shaped encoder (110M parameters), in one run.

    .venv/bin/python benchmarks/encoders.py [--threads N] [--quick]

Builds random BERT-base checkpoints (masked-LM and sequence-classification heads) with the
reference library in a temporary directory, with a WordPiece tokenizer built by the reference
(`BertTokenizer` over a generated 30522-entry vocabulary), then measures on the same CPU threads:

- `from_pretrained` time (median of several interleaved runs, page cache warm for both);
- fill-mask and text-classification pipeline throughput (sentences/s) at batch 1 (one call per
  sentence) and batch 32 (one call over a list, `batch_size=32`), on sentences of 15-40 words,
  each call unit timed alternately on both libraries over 3 passes, keeping each unit's fastest
  pass, so that other load on a shared machine affects both alike;

and prints a table with the ratio Haven / reference (higher is better for Haven).
Targets: load >= 3x, pipelines >= 1.2x.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

WORDS = (
    "the a of to and in is was for on that with as by at from it this be are an or which his her "
    "their model data time people year city world music government system language history school "
    "river music team season league war film series album song book game company station party "
    "university church village county family country state group number area part place name "
    "work life day way point house power water market research study result process network "
    "first new other many more most some only well also when after before during between under "
    "made used known called played became released written built founded produced named took "
    "large small early late major local national public general second high long old great good"
).split()


def make_vocab(size: int = 30522) -> list[str]:
    """Special tokens, characters, the benchmark words and their pieces, then filler to `size`."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127)] + list("éèàçôûü")
    vocab += chars + [f"##{c}" for c in chars]
    seen = set(vocab)
    for word in WORDS:
        for piece in (word, f"##{word[2:]}", word[:3], f"##{word[3:]}"):
            if piece not in seen and piece not in ("##",):
                vocab.append(piece)
                seen.add(piece)
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(vocab) < size:
        piece = "".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
        piece = piece if rng.random() < 0.7 else "##" + piece
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    return vocab


def make_sentences(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 40))) + "." for _ in range(n)]


def build_checkpoints(root: Path) -> dict[str, str]:
    import transformers

    vocab = make_vocab()
    vocab_file = root / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer(vocab_file=str(vocab_file))
    config = transformers.BertConfig()  # bert-base-uncased shapes: 12 x 768, 30522 tokens
    dirs = {}
    for name, cls, extra in (
        ("masked-lm", transformers.BertForMaskedLM, {}),
        (
            "classifier",
            transformers.BertForSequenceClassification,
            {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}},
        ),
    ):
        torch.manual_seed(0)
        model = cls(transformers.BertConfig(**{**config.to_dict(), **extra}))
        out = root / name
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        dirs[name] = str(out)
        del model
    return dirs


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def compare_load(ours, ref, runs: int) -> tuple[float, float]:
    """Median seconds of each loader, runs interleaved so both see the same machine load."""
    a, b = [], []
    for _ in range(runs):
        a.append(timed(ours))
        b.append(timed(ref))
    return statistics.median(a), statistics.median(b)


def call_time(pipe, unit: list[str], batch_size: int) -> float:
    """Seconds for one call: a single sentence at batch 1, else one list call with `batch_size`."""
    start = time.perf_counter()
    if batch_size == 1:
        pipe(unit[0])
    else:
        pipe(unit, batch_size=batch_size)
    return time.perf_counter() - start


def compare_throughput(ours, ref, sentences: list[str], batch_size: int, passes: int) -> tuple[float, float]:
    """Sentences/s of each pipeline, robust to other load on a shared machine.

    The sentences are cut into call units (one sentence at batch 1; 4 x batch_size sentences,
    one call, otherwise); each unit runs on Haven then on the reference, `passes` times, and a
    unit's time is its fastest pass. Throughput = sentences / sum of unit times.
    """
    size = 1 if batch_size == 1 else 4 * batch_size
    units = [sentences[i : i + size] for i in range(0, len(sentences), size)]
    for pipe in (ours, ref):  # warm-up
        call_time(pipe, units[0], batch_size)
    best = {"ours": [float("inf")] * len(units), "ref": [float("inf")] * len(units)}
    for _ in range(passes):
        for i, unit in enumerate(units):
            best["ours"][i] = min(best["ours"][i], call_time(ours, unit, batch_size))
            best["ref"][i] = min(best["ref"][i], call_time(ref, unit, batch_size))
    return len(sentences) / sum(best["ours"]), len(sentences) / sum(best["ref"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="fewer sentences and load runs (a smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HAVEN_DISABLE_PROGRESS_BARS"] = "1"

    import transformers

    import haven
    from haven import AutoModelForMaskedLM, AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    load_runs = 3 if args.quick else 7
    n1, n32 = (8, 128) if args.quick else (32, 256)

    rows: list[tuple[str, str, float, float]] = []  # (what, unit, haven, reference)
    with tempfile.TemporaryDirectory(prefix="haven-bench-") as tmp:
        print(f"building BERT-base checkpoints in {tmp} ...", file=sys.stderr)
        dirs = build_checkpoints(Path(tmp))
        mlm = dirs["masked-lm"]
        for _ in range(2):  # warm the page cache and both libraries' imports
            AutoModelForMaskedLM.from_pretrained(mlm)
            transformers.AutoModelForMaskedLM.from_pretrained(mlm)
        ours, ref = compare_load(
            lambda: AutoModelForMaskedLM.from_pretrained(mlm),
            lambda: transformers.AutoModelForMaskedLM.from_pretrained(mlm),
            load_runs,
        )
        rows.append(("from_pretrained (BertForMaskedLM)", "s", ours, ref))
        cls_dir = dirs["classifier"]
        ours, ref = compare_load(
            lambda: AutoModelForSequenceClassification.from_pretrained(cls_dir),
            lambda: transformers.AutoModelForSequenceClassification.from_pretrained(cls_dir),
            load_runs,
        )
        rows.append(("from_pretrained (BertForSequenceClassification)", "s", ours, ref))

        sentences = make_sentences(max(n1, n32))
        masked = [s.replace(" the ", " [MASK] ", 1) if " the " in s else "[MASK] " + s for s in sentences]
        for task, path, inputs in (
            ("fill-mask", mlm, masked),
            ("text-classification", dirs["classifier"], sentences),
        ):
            ours_pipe = haven.pipeline(task, model=path)
            ref_pipe = transformers.pipeline(task, model=path, device="cpu")
            for batch_size, n in ((1, n1), (32, n32)):
                ours, ref = compare_throughput(ours_pipe, ref_pipe, inputs[:n], batch_size, passes=3)
                rows.append((f"{task} batch {batch_size}", "sent/s", ours, ref))
            del ours_pipe, ref_pipe
            gc.collect()

    print(
        f"\nBERT-base (110M), fp32, torch {torch.__version__}, {args.threads} threads, transformers {transformers.__version__}"
    )
    print(f"{'measure':<50} {'unit':>6} {'Haven':>9} {'reference':>10} {'Haven speed-up':>15}")
    for what, unit, ours, ref in rows:
        ratio = ref / ours if unit == "s" else ours / ref
        print(f"{what:<50} {unit:>6} {ours:>9.3f} {ref:>10.3f} {ratio:>14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
