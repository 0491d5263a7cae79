"""What each task takes (`inputs`, `parameters`) and how a batch of requests becomes pipeline calls.

The answers are the pipelines' own (`haven.pipeline(task, model=repo)` called with the same inputs
and parameters), made JSON-plain. Two shapes follow the Hub's task specifications where
`huggingface_hub.InferenceClient` parses nothing else: text-classification answers one list of
labels per input, also for a single string and when the pipeline gives the top label alone, and
zero-shot-classification answers the pipeline's labels and scores as a list of
`{"label", "score"}` in the pipeline's order. Feature-extraction on a sentence-transformers repo
answers its pooled (and normalised, when `modules.json` says so) sentence embedding, as the Hub
does; elsewhere the token-level states.

Parameters are the Hub's names; any other is a 400 naming the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .batching import Job
from .registry import InferenceError, Served

EMBED = "__sentence_embeddings__"  # the OpenAI embeddings route's batches (no request parameter can name it)

PARAMETERS: dict[str, frozenset[str]] = {
    "fill-mask": frozenset({"top_k", "targets"}),
    "text-classification": frozenset({"top_k", "function_to_apply"}),
    "token-classification": frozenset({"aggregation_strategy", "ignore_labels"}),
    "zero-shot-classification": frozenset({"candidate_labels", "multi_label", "hypothesis_template"}),
    "feature-extraction": frozenset({"truncation"}),
    "sentence-similarity": frozenset(),
    "text-generation": frozenset({
        "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "do_sample",
        "return_full_text", "seed", "stop", "details",
    }),
}


def plain(value: Any) -> Any:
    """JSON-ready: tensors and numpy values become lists and numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_parameters(task: str, parameters: Any) -> dict:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InferenceError(400, '"parameters" must be a JSON object, e.g. {"top_k": 3}')
    unknown = sorted(set(parameters) - PARAMETERS[task])
    if unknown:
        known = ", ".join(sorted(PARAMETERS[task])) or "none"
        raise InferenceError(
            400, f"{task} does not take the parameter(s) {', '.join(unknown)}; it takes: {known}"
        )
    return {k: v for k, v in parameters.items() if v is not None}


@dataclass
class Request:
    """A checked request: its inputs, the pipeline's keyword arguments, its rows and longest row."""

    inputs: Any
    kwargs: dict
    rows: int
    tokens: int


def _texts(task: str, inputs: Any) -> list[str]:
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and inputs and all(isinstance(x, str) for x in inputs):
        return list(inputs)
    raise InferenceError(400, f'{task} takes "inputs" as a string or a non-empty list of strings')


def prepare(served: Served, inputs: Any, parameters: Any, max_input_tokens: int) -> Request:
    """Check a request for an encoder task (400 with the reason), counting its tokens."""
    task = served.task
    kwargs = check_parameters(task, parameters)
    if task == "sentence-similarity":
        if not isinstance(inputs, dict) or set(inputs) != {"source_sentence", "sentences"}:
            raise InferenceError(
                400, 'sentence-similarity takes "inputs": {"source_sentence": str, "sentences": [str, ...]}'
            )
        texts = [inputs["source_sentence"], *_texts(task, inputs["sentences"])]
        if not isinstance(texts[0], str):
            raise InferenceError(400, '"source_sentence" must be a string')
    else:
        texts = _texts(task, inputs)
    if task == "zero-shot-classification" and not kwargs.get("candidate_labels"):
        raise InferenceError(400, 'zero-shot-classification needs parameters.candidate_labels (a list of labels)')
    lengths = [len(ids) for ids in served.pipe.tokenizer(texts)["input_ids"]]
    longest = max(lengths)
    if longest > max_input_tokens and not kwargs.get("truncation"):
        raise InferenceError(
            400, f"an input has {longest} tokens; this model takes at most {max_input_tokens}: send shorter text"
        )
    rows = len(texts)
    if task == "zero-shot-classification":
        rows *= max(1, len(kwargs["candidate_labels"]) if isinstance(kwargs["candidate_labels"], list) else 1)
    return Request(inputs, kwargs, rows, min(longest, max_input_tokens))


def run_batch(served: Served, jobs: list[Job]) -> list[Any]:
    """One pipeline call for the jobs (equal parameters), split back into one answer per job."""
    pipe, task, kwargs = served.pipe, served.task, jobs[0].params
    flat = [x for job in jobs for x in (job.inputs if isinstance(job.inputs, list) else [job.inputs])]
    rows = max(1, len(flat))
    if kwargs.get(EMBED) or (task == "feature-extraction" and served.sentence_transformers):
        kwargs = {k: v for k, v in kwargs.items() if k != EMBED}
        vectors = pipe.encode(flat, batch_size=rows, **kwargs).tolist()
        return _split(jobs, vectors, lambda job, part, listed: part if listed else part[0])
    if task == "sentence-similarity":
        results = pipe([job.inputs for job in jobs], batch_size=len(jobs) * 8, **kwargs)
        return [plain(r) for r in results]
    if task == "zero-shot-classification":
        results = [
            [{"label": label, "score": score} for label, score in zip(r["labels"], r["scores"])]
            for r in pipe(flat, batch_size=rows * 4, **kwargs)
        ]
        return _split(jobs, results, lambda job, part, listed: part if listed else part[0])
    results = pipe.run(flat, batch_size=rows, params=pipe._params_for_call(dict(kwargs)))
    if task == "text-classification":  # each input's labels as a list, for a single string too (the Hub's shape)
        return _split(jobs, results, lambda job, part, listed: [r if isinstance(r, list) else [r] for r in part])
    return _split(jobs, results, lambda job, part, listed: pipe._wrap_output(job.inputs, part, listed, kwargs))


def _split(jobs: list[Job], results: list[Any], finish) -> list[Any]:
    """Hand each job its rows of `results`; `finish(job, rows, sent_a_list)` shapes its answer."""
    answers, at = [], 0
    for job in jobs:
        listed = isinstance(job.inputs, list)
        n = len(job.inputs) if listed else 1
        answers.append(plain(finish(job, results[at : at + n], listed)))
        at += n
    return answers
