"""`haven run`: the pipeline from the command line, as a subprocess, against the reference pipeline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def haven(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "haven.cli", *args], capture_output=True, text=True, input=stdin, timeout=120
    )


def test_fill_mask_json_matches_reference(bert_masked_lm_dir):
    import transformers

    text = "The quick brown [MASK] jumps over the lazy dog."
    out = haven("run", "fill-mask", "--model", bert_masked_lm_dir, text, "--top-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 1  # --json: one compact line
    got = json.loads(out.stdout)
    expected = transformers.pipeline("fill-mask", model=bert_masked_lm_dir)(text, top_k=3)
    assert [r["token_str"] for r in got] == [r["token_str"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-4)


def test_text_classification_several_inputs_from_stdin(roberta_sequence_classification_dir):
    import transformers

    texts = ["I love it", "The weather was cold, so they stayed inside."]
    out = haven(
        "run", "sentiment-analysis", "-m", roberta_sequence_classification_dir, stdin="\n".join(texts) + "\n"
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    expected = transformers.pipeline("text-classification", model=roberta_sequence_classification_dir)(texts)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-4)


def test_errors_say_what_to_do(bert_masked_lm_dir, tmp_path):
    out = haven("run", "summarize-everything", "--model", bert_masked_lm_dir, "hi")
    assert out.returncode == 1 and "fill-mask" in out.stderr
    out = haven("run", "fill-mask", "--model", str(tmp_path), "hi [MASK]")  # no config.json there
    assert out.returncode == 1 and "config.json" in out.stderr and "Traceback" not in out.stderr
    help_text = haven("run", "--help").stdout
    assert "--top-k" in help_text and "--json" in help_text


def test_errors_name_the_commands_flags_not_python_arguments(bert_masked_lm_dir):
    """The pipeline says `top_k must be a positive integer`; on the command line that is --top-k."""
    out = haven("run", "fill-mask", "-m", bert_masked_lm_dir, "a [MASK] day", "--top-k", "0")
    assert out.returncode == 1
    assert "--top-k must be a positive integer" in out.stderr, out.stderr
    assert "top_k" not in out.stderr
    assert "Traceback" not in out.stderr


def test_as_flags_rewrites_keyword_arguments_only():
    from haven.pipelines.commands import as_flags

    flags = {"top_k": "--top-k", "dtype": "--dtype", "model": "--model", "max_new_tokens": "--max-new-tokens"}
    assert as_flags("pass dtype=float16 or `top_k=5`", flags) == "pass --dtype float16 or --top-k 5"
    assert as_flags("lower max_new_tokens.", flags) == "lower --max-new-tokens."
    # plain English words stay words; flags already written as flags stay as they are
    assert as_flags("the model and its dtype; --top-k 3", flags) == "the model and its dtype; --top-k 3"
