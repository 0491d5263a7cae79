"""`haven run TASK --model ID_OR_PATH "input" ...`: run a pipeline once and print its result as JSON."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ..errors import HavenError


class _IntermixedParser(argparse.ArgumentParser):
    """Lets input texts and options come in any order (`run TASK --model M "text" --top-k 3`)."""

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inner:
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def register(subparsers: Any) -> None:
    default_class = subparsers._parser_class
    subparsers._parser_class = _IntermixedParser
    try:
        _add_run(subparsers)
    finally:
        subparsers._parser_class = default_class


def _add_run(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a pipeline (fill-mask, text-classification, ner, ...) on some text",
        description="Run a pipeline on one or more inputs and print the result as JSON.",
    )
    parser.add_argument(
        "task",
        help="fill-mask, text-classification (sentiment-analysis), token-classification (ner), "
        "feature-extraction, sentence-similarity, text-generation, zero-shot-classification",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="input texts; read from stdin (one per line) when none are given. "
        "sentence-similarity: the source sentence first, then the sentences to compare",
    )
    parser.add_argument("--model", "-m", required=True, help="a model directory or hub repository id")
    parser.add_argument("--revision", help="branch, tag or commit of a hub repository")
    parser.add_argument(
        "--top-k", type=int, dest="top_k", help="number of results (fill-mask, text-classification)"
    )
    parser.add_argument(
        "--aggregation-strategy",
        dest="aggregation_strategy",
        choices=["none", "simple", "first", "max", "average"],
        help="token-classification grouping",
    )
    parser.add_argument(
        "--candidate-labels",
        dest="candidate_labels",
        help='zero-shot-classification labels, comma-separated ("sports, politics")',
    )
    parser.add_argument(
        "--hypothesis-template",
        dest="hypothesis_template",
        help='zero-shot-classification hypothesis, {} for the label (default "This example is {}.")',
    )
    parser.add_argument(
        "--multi-label",
        dest="multi_label",
        action="store_true",
        default=None,
        help="zero-shot-classification: score each label on its own",
    )
    parser.add_argument("--max-new-tokens", type=int, dest="max_new_tokens", help="text-generation length")
    parser.add_argument("--device", help="cpu (default), cuda, cuda:0 ...")
    parser.add_argument("--dtype", help="float32, float16, bfloat16, auto (the checkpoint's)")
    parser.add_argument("--device-map", dest="device_map", help="auto (cuda if available, else cpu), cpu, cuda:0 ...")
    quantize = parser.add_mutually_exclusive_group()
    quantize.add_argument("--load-in-8bit", action="store_true", dest="load_in_8bit", default=None,
                          help="int8 weights, quantized at load")
    quantize.add_argument("--load-in-4bit", action="store_true", dest="load_in_4bit", default=None,
                          help="int4 weights, quantized at load")
    parser.add_argument("--compile", action="store_true", default=None, dest="compile_decoding",
                        help="text-generation: run the one-token decoding steps compiled (torch.compile; the "
                        "first step compiles for 10-50 s and needs a C++ compiler, later ones are faster: worth it "
                        "for long generations, above all with --load-in-8bit / --load-in-4bit)")
    parser.add_argument("--batch-size", type=int, default=1, dest="batch_size")
    parser.add_argument("--json", action="store_true", help="compact JSON on one line (default: indented)")
    flags = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings and a.dest != "help"}
    parser.set_defaults(func=run_command, flags=flags)


def as_flags(message: str, flags: dict[str, str]) -> str:
    """Runtime errors name Python keyword arguments (`lower max_new_tokens`, `pass dtype=...`);
    say them as this command's flags. A bare word is rewritten only when it cannot be English
    (it has an underscore); `name=value` always is."""
    names = "|".join(map(re.escape, sorted(flags, key=len, reverse=True)))

    def flag(m: re.Match) -> str:
        if m[2] is None and "_" not in m[1]:
            return m[0]
        return flags[m[1]] + (f" {m[2]}" if m[2] else "")

    return re.sub(rf"`?(?<![-\w])({names})(?:=([^\s,;`)]*))?(?!\w)`?", flag, message)


def run_command(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except HavenError as err:
        print(f"haven run: {as_flags(str(err), args.flags)}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from . import normalize_task, pipeline

    task = normalize_task(args.task)
    inputs = list(args.inputs) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not inputs:
        print("haven run: no input text given (pass it as an argument or on stdin)", file=sys.stderr)
        return 2
    options: dict[str, Any] = {}
    if args.top_k is not None:
        options["top_k"] = args.top_k
    if args.aggregation_strategy is not None:
        options["aggregation_strategy"] = args.aggregation_strategy
    for name in ("max_new_tokens", "candidate_labels", "hypothesis_template", "multi_label"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if task == "zero-shot-classification" and "candidate_labels" not in options:
        print("haven run: zero-shot-classification needs --candidate-labels", file=sys.stderr)
        return 2
    if args.compile_decoding and task != "text-generation":
        print(f"haven run: --compile compiles text-generation's decoding steps; {task} has none", file=sys.stderr)
        return 2
    pipe = pipeline(
        task,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        revision=args.revision,
        batch_size=args.batch_size,
        **{k: getattr(args, k) for k in ("device_map", "load_in_8bit", "load_in_4bit") if getattr(args, k)},
    )
    if args.compile_decoding:
        pipe.model.compile_decoding()
    if task == "sentence-similarity":
        if len(inputs) < 2:
            print(
                "haven run: sentence-similarity needs a source sentence and at least one sentence",
                file=sys.stderr,
            )
            return 2
        result = pipe(inputs[0], inputs[1:])
    else:
        result = pipe(inputs[0] if len(inputs) == 1 else inputs, **options)
    print(json.dumps(_plain(result), ensure_ascii=False, indent=None if args.json else 2))
    return 0


def _plain(value: Any) -> Any:
    """JSON-ready copy: tensors and numpy values become lists and numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
