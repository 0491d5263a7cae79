"""zero-shot-classification: score labels never trained on with an NLI (sequence-classification) model.

    clf = pipeline("zero-shot-classification", model=path)      # an NLI model
    clf("The team won the final.", candidate_labels=["sports", "politics"])
    # {"sequence": "The team won the final.", "labels": ["sports", "politics"], "scores": [0.93, 0.07]}
    clf(["text 1", "text 2"], "sports, politics", multi_label=True)   # a list of those dicts

Each (sequence, label) becomes a premise/hypothesis pair, the hypothesis being
`hypothesis_template.format(label)` ("This example is {}." by default), truncated on the premise
side only. Single label: a softmax of the entailment logits over the candidate labels. Multi-label
(`multi_label=True`, old name `multi_class`, or just one label): for each label on its own, a
softmax over (contradiction, entailment). The entailment logit is the label of
`config.label2id` starting with "entail" (any case); contradiction is the first label, or the last
when entailment is the first, as the reference does. Labels come back best first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..errors import PipelineError
from .base import Pipeline

DEFAULT_TEMPLATE = "This example is {}."


class ZeroShotClassificationPipeline(Pipeline):
    task = "zero-shot-classification"

    def __init__(self, model: Any, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        label2id = getattr(self.model.config, "label2id", None) or {}
        entail = [i for label, i in label2id.items() if str(label).lower().startswith("entail")]
        if not entail:
            raise PipelineError(
                f"zero-shot-classification needs an NLI model whose config.label2id has an entailment label; "
                f"this one has {sorted(label2id)}. Use a model fine-tuned on NLI (MNLI, XNLI ...), or set "
                "label2id/id2label on its config to name the entailment class"
            )
        self.entailment_id = int(entail[0])

    def _sanitize_parameters(
        self,
        candidate_labels: Any = None,
        hypothesis_template: str | None = None,
        multi_label: bool | None = None,
        multi_class: bool | None = None,
        **unknown: Any,
    ) -> tuple[dict, dict, dict]:
        if unknown:
            raise PipelineError(
                f"zero-shot-classification got unknown arguments: {', '.join(sorted(unknown))}; it takes "
                "candidate_labels, hypothesis_template and multi_label"
            )
        pre: dict[str, Any] = {}
        if candidate_labels is not None:
            pre["candidate_labels"] = _parse_labels(candidate_labels)
        if hypothesis_template is not None:
            pre["hypothesis_template"] = hypothesis_template
        if multi_label is not None and multi_class is not None and multi_label != multi_class:
            raise PipelineError("multi_class is the old name of multi_label; pass only multi_label")
        post = {}
        if multi_label is not None or multi_class is not None:
            post["multi_label"] = bool(multi_label if multi_label is not None else multi_class)
        return pre, {}, post

    def __call__(self, sequences: Any, *args: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise PipelineError(
                "zero-shot-classification takes the sequence(s), then candidate_labels (positionally or "
                "by name), then keyword options"
            )
        pre, _, post = self.call_parameters(kwargs)
        labels = pre.get("candidate_labels")
        template = pre.get("hypothesis_template", DEFAULT_TEMPLATE)
        if not labels:
            raise PipelineError(
                "zero-shot-classification needs candidate_labels: a list of labels or a comma-separated string"
            )
        if template.format(labels[0]) == template:
            raise PipelineError(
                f"hypothesis_template {template!r} has no {{}} where the label goes, e.g. 'This example is {{}}.'"
            )
        multi_label = bool(post.get("multi_label", False)) or len(labels) == 1

        def classify(batch: list[str]) -> list[dict[str, Any]]:
            pairs = [(s, template.format(label)) for s in batch for label in labels]
            logits = self.run(pairs, batch_size=batch_size, params=({}, {}, {}))
            return [
                self._scores(
                    seq, labels, torch.stack(logits[i * len(labels) : (i + 1) * len(labels)]), multi_label
                )
                for i, seq in enumerate(batch)
            ]

        if isinstance(sequences, Iterator):
            return (classify([s])[0] for s in sequences)
        if isinstance(sequences, str):
            return classify([sequences])[0]
        if isinstance(sequences, (list, tuple)) and sequences and all(isinstance(s, str) for s in sequences):
            return classify(list(sequences))
        raise PipelineError(
            f"zero-shot-classification takes a string or a non-empty list of strings, got {type(sequences).__name__}"
        )

    # -- steps --------------------------------------------------------------------------------------

    def preprocess(self, pair: tuple[str, str]) -> dict[str, Any]:
        return self.preprocess_batch([pair])[0]

    def preprocess_batch(self, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        premises, hypotheses = [p for p, _ in pairs], [h for _, h in pairs]
        try:
            enc = self.tokenizer(premises, hypotheses, truncation="only_first")
        except Exception as e:  # the hypothesis alone is longer than the model's limit
            if "too short" not in str(e) and "only_first" not in str(e):
                raise
            enc = self.tokenizer(premises, hypotheses)
        return [{k: v[row] for k, v in enc.items()} for row in range(len(pairs))]

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return list(self.model_forward(model_inputs).logits.float().unbind(0))

    def postprocess(self, features: dict[str, Any], logits: torch.Tensor) -> torch.Tensor:
        return logits

    def _scores(
        self, sequence: str, labels: list[str], logits: torch.Tensor, multi_label: bool
    ) -> dict[str, Any]:
        """logits: (len(labels), num_model_labels) -> the reference's output dict, best label first."""
        entail = self.entailment_id
        if multi_label:
            contradiction = -1 if entail == 0 else 0
            scores = logits[:, [contradiction, entail]].double().softmax(-1)[:, 1]
        else:
            scores = logits[:, entail].double().softmax(-1)
        order = sorted(range(len(labels)), key=lambda i: float(scores[i]), reverse=True)
        return {
            "sequence": sequence,
            "labels": [labels[i] for i in order],
            "scores": [float(scores[i]) for i in order],
        }


def _parse_labels(labels: Any) -> list[str]:
    if isinstance(labels, str):
        return [label.strip() for label in labels.split(",") if label.strip()]
    if isinstance(labels, (list, tuple)) and all(isinstance(label, str) for label in labels):
        return list(labels)
    raise PipelineError(
        f"candidate_labels must be a list of strings or a comma-separated string, got {labels!r}"
    )
