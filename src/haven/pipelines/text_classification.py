"""text-classification (alias sentiment-analysis): labels and scores for a text or a text pair.

    clf = pipeline("text-classification", model=path)
    clf("I love it")                                   # [{"label": "POSITIVE", "score": 0.98}]
    clf(["good", "bad"])                               # [{...}, {...}]
    clf("I love it", top_k=None)                       # every label, best first
    clf({"text": "A man eats.", "text_pair": "Someone eats."})   # a pair -> {"label", "score"}

Scores: softmax for single-label models, sigmoid for one label or multi-label, none for
regression (`function_to_apply` overrides). Shapes follow the reference: without `top_k` at call
time a string gives a one-element list; with `top_k` (None = all labels) a sorted list per input.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import PipelineError
from .base import Pipeline

FUNCTIONS = ("softmax", "sigmoid", "none")


class TextClassificationPipeline(Pipeline):
    task = "text-classification"

    def _sanitize_parameters(
        self, function_to_apply: str | None = None, top_k: Any = "", **tokenizer_kwargs: Any
    ) -> tuple[dict, dict, dict]:
        post: dict[str, Any] = {}
        if top_k is None or isinstance(top_k, int):
            if isinstance(top_k, int) and top_k < 1:
                raise PipelineError(f"top_k must be a positive integer or None (all labels), got {top_k!r}")
            post["top_k"] = top_k
            post["legacy"] = False
        if function_to_apply is not None:
            name = getattr(function_to_apply, "value", function_to_apply)
            name = str(name).lower()
            if name not in FUNCTIONS:
                raise PipelineError(
                    f"function_to_apply must be one of {', '.join(FUNCTIONS)}, got {function_to_apply!r}"
                )
            post["function_to_apply"] = name
        return tokenizer_kwargs, {}, post

    # -- steps ------------------------------------------------------------------------------------

    def preprocess(self, inputs: Any, **tokenizer_kwargs: Any) -> dict[str, Any]:
        return self.preprocess_batch([inputs], **tokenizer_kwargs)[0]

    def preprocess_batch(self, inputs: list[Any], **tokenizer_kwargs: Any) -> list[dict[str, Any]]:
        features: list[dict[str, Any] | None] = [None] * len(inputs)
        texts = [i for i, x in enumerate(inputs) if isinstance(x, str)]
        if texts:
            enc = self.tokenizer([inputs[i] for i in texts], **tokenizer_kwargs)
            for row, i in enumerate(texts):
                features[i] = {k: v[row] for k, v in enc.items()}
        for i, x in enumerate(inputs):
            if features[i] is not None:
                continue
            if isinstance(x, dict) and "text" in x:
                extra = set(x) - {"text", "text_pair"}
                if extra:
                    raise PipelineError(
                        f"a text-pair input has only 'text' and 'text_pair' keys, got {sorted(extra)}"
                    )
                enc = self.tokenizer(x["text"], x.get("text_pair"), **tokenizer_kwargs)
            elif (
                isinstance(x, list) and len(x) == 1 and isinstance(x[0], list) and len(x[0]) == 2
            ):  # [[text, pair]], the reference's legacy pair form
                enc = self.tokenizer(x[0][0], x[0][1], **tokenizer_kwargs)
            else:
                raise PipelineError(
                    "text-classification takes a string, a {'text': ..., 'text_pair': ...} dict for a text pair, "
                    f"or a list of those; got {type(x).__name__}"
                )
            features[i] = {k: _flat(v) for k, v in enc.items()}
        return features  # type: ignore[return-value]

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        logits = self.model_forward(model_inputs).logits  # (B, num_labels)
        return list(logits.float().unbind(0))

    def default_function(self) -> str:
        config = self.model.config
        problem = getattr(config, "problem_type", None)
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        if problem == "single_label_classification" or config.num_labels > 1:
            return "softmax"
        return str(getattr(config, "function_to_apply", "none")).lower()

    def postprocess(
        self,
        features: dict[str, Any],
        logits: torch.Tensor,
        function_to_apply: str | None = None,
        top_k: int | None = 1,
        legacy: bool = True,
    ) -> Any:
        function_to_apply = function_to_apply or self.default_function()
        if function_to_apply == "softmax":
            scores = logits.softmax(-1)
        elif function_to_apply == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits
        id2label = self.model.config.id2label
        values = scores.tolist()
        if legacy and top_k == 1:
            best = max(range(len(values)), key=values.__getitem__)
            return {"label": id2label[best], "score": values[best]}
        results = [{"label": id2label[i], "score": v} for i, v in enumerate(values)]
        if not legacy:
            results.sort(key=lambda r: r["score"], reverse=True)
            if top_k is not None:
                results = results[:top_k]
        return results

    def _is_batch(self, inputs: Any) -> bool:
        if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], list):
            return False  # [[text, pair]]
        return isinstance(inputs, (list, tuple))

    def wrap_output(
        self, inputs: Any, results: list[Any], batched: bool, call_kwargs: dict[str, Any]
    ) -> Any:
        if batched:
            return results
        if isinstance(inputs, str) and "top_k" not in call_kwargs:
            return [results[0]]
        return results[0]


def _flat(value: Any) -> Any:
    if isinstance(value, list) and value and isinstance(value[0], list):
        return value[0]
    return value
