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

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .batching import Job
from .registry import InferenceError, Served, unsupported_task

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


# Tasks whose requests are tokenized once, when checked (on the request's thread, not the batch's):
# the batch pads those features and runs the model (`Pipeline.run_features`).
PRETOKENIZED = frozenset({"fill-mask", "text-classification", "token-classification", "feature-extraction"})


@dataclass
class Request:
    """A checked request: its inputs, the pipeline's keyword arguments, its rows and longest row,
    and for PRETOKENIZED tasks its features (one per input) and the pipeline's call parameters."""

    inputs: Any
    kwargs: dict
    rows: int
    tokens: int
    features: list | None = None
    params: tuple[dict, dict, dict] | None = None

    @property
    def listed(self) -> bool:
        return isinstance(self.inputs, list)

    @property
    def items(self) -> list:
        return self.inputs if self.listed else [self.inputs]


def _texts(task: str, inputs: Any) -> list[str]:
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and inputs and all(isinstance(x, str) for x in inputs):
        return list(inputs)
    raise InferenceError(400, f'{task} takes "inputs" as a string or a non-empty list of strings')


def prepare(served: Served, inputs: Any, parameters: Any, max_input_tokens: int) -> Request:
    """Check a request for an encoder task (400 with the reason), counting its tokens; a PRETOKENIZED
    task's inputs are tokenized here by the pipeline (an input longer than the model takes is a 400,
    unless the pipeline truncates it: token-classification does, feature-extraction with truncation)."""
    task, pipe = served.task, served.pipe
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
    features = params = None
    if task in PRETOKENIZED and not served.sentence_transformers:
        params = pipe.call_parameters(dict(kwargs))
        features = pipe.preprocess_batch(texts, **params[0])
        lengths = [len(f["input_ids"]) for f in features]
    else:
        lengths = [len(ids) for ids in pipe.tokenizer(texts)["input_ids"]]
    longest = max(lengths)
    if longest > max_input_tokens and not kwargs.get("truncation"):
        raise InferenceError(
            400, f"an input has {longest} tokens; this model takes at most {max_input_tokens}: send shorter text"
        )
    rows = len(texts)
    if task == "zero-shot-classification":
        rows *= max(1, len(kwargs["candidate_labels"]) if isinstance(kwargs["candidate_labels"], list) else 1)
    return Request(inputs, kwargs, rows, min(longest, max_input_tokens), features, params)


def embedding_request(texts: list[str], tokens: int) -> Request:
    """A batch job for the OpenAI embeddings route: the sentence embeddings of `texts`."""
    return Request(texts, {EMBED: True}, len(texts), tokens)


def run_batch(served: Served, jobs: list[Job]) -> list[Any]:
    """One pipeline call for the jobs (equal parameters; each job's inputs is a `Request`), split
    back into one answer per job. Each job's timing gets the batch's stage seconds."""
    pipe, task, kwargs = served.pipe, served.task, jobs[0].params
    requests: list[Request] = [job.inputs for job in jobs]
    timing: dict[str, float] = {}
    if requests[0].features is not None:
        features = [f for r in requests for f in r.features]
        results = pipe.run_features(features, batch_size=len(features), params=requests[0].params, timing=timing)
        if task == "text-classification":  # each input's labels as a list, for a single string too (the Hub's shape)
            answers = _split(requests, results, lambda r, part: [x if isinstance(x, list) else [x] for x in part])
        else:
            answers = _split(requests, results, lambda r, part: pipe.wrap_output(r.inputs, part, r.listed, kwargs))
    else:
        began = time.perf_counter()
        answers = _whole_calls(served, requests, kwargs)
        timing["forward"] = time.perf_counter() - began
    for job in jobs:
        job.timing.update(timing)
    return answers


def _whole_calls(served: Served, requests: list[Request], kwargs: dict) -> list[Any]:
    """Tasks run by one pipeline call of their own (sentence embeddings, similarity, zero-shot)."""
    pipe, task = served.pipe, served.task
    flat = [x for r in requests for x in r.items]
    rows = max(1, len(flat))
    if kwargs.get(EMBED) or (task == "feature-extraction" and served.sentence_transformers):
        kwargs = {k: v for k, v in kwargs.items() if k != EMBED}
        vectors = pipe.encode(flat, batch_size=rows, **kwargs).tolist()
        return _split(requests, vectors, lambda r, part: part if r.listed else part[0])
    if task == "sentence-similarity":
        return [plain(x) for x in pipe([r.inputs for r in requests], batch_size=len(requests) * 8, **kwargs)]
    if task == "zero-shot-classification":
        results = [
            [{"label": label, "score": score} for label, score in zip(r["labels"], r["scores"])]
            for r in pipe(flat, batch_size=rows * 4, **kwargs)
        ]
        return _split(requests, results, lambda r, part: part if r.listed else part[0])
    raise InferenceError(400, unsupported_task(served.repo_id, task))


def _split(requests: list[Request], results: list[Any], finish) -> list[Any]:
    """Hand each request its rows of `results`; `finish(request, rows)` shapes its answer."""
    answers, at = [], 0
    for r in requests:
        n = len(r.items)
        answers.append(plain(finish(r, results[at : at + n])))
        at += n
    return answers


def server_timing(timing: dict) -> str:
    """A `Server-Timing` header value (milliseconds) of a request's stages; its batch's rows as a
    description."""
    parts = [f"{name};dur={timing[name] * 1e3:.2f}" for name in ("tokenize", "queue", "pad", "forward", "postprocess")
             if name in timing]
    if "rows" in timing:
        parts.append(f'batch;desc="{timing["rows"]} rows"')
    return ", ".join(parts)
