"""token-classification (alias ner): a label per token, or entities grouped from them.

    ner = pipeline("ner", model=path)
    ner("Ada Lovelace lived in London")
    # [{"entity": "B-PER", "score": 0.99, "index": 1, "word": "ada", "start": 0, "end": 3}, ...]
    ner("Ada Lovelace lived in London", aggregation_strategy="simple")
    # [{"entity_group": "PER", "score": 0.99, "word": "ada lovelace", "start": 0, "end": 12}, ...]

aggregation_strategy:
- "none": one entry per token (special tokens dropped, `ignore_labels` (default ["O"]) filtered);
- "simple": adjacent tokens with the same tag (B-X then I-X ...) merge into one entity group;
- "first" / "max" / "average": first make every word agree on one label (the first sub-token's,
  the most confident sub-token's, or the average of their scores), then group as "simple".
A word is rebuilt from its sub-tokens with the tokenizer's decoder; offsets give start/end.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import PipelineError
from .base import Pipeline

STRATEGIES = ("none", "simple", "first", "max", "average")


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"

    def _sanitize_parameters(
        self,
        ignore_labels: list[str] | None = None,
        aggregation_strategy: str | None = None,
        is_split_into_words: bool | None = None,
        delimiter: str | None = None,
        **tokenizer_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        if is_split_into_words is not None:
            tokenizer_kwargs["is_split_into_words"] = bool(is_split_into_words)
        if delimiter is not None:
            tokenizer_kwargs["delimiter"] = delimiter
        post: dict[str, Any] = {}
        if aggregation_strategy is not None:
            name = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if name not in STRATEGIES:
                raise PipelineError(
                    f"aggregation_strategy must be one of {', '.join(STRATEGIES)}, got {aggregation_strategy!r}"
                )
            post["aggregation_strategy"] = name
        if ignore_labels is not None:
            post["ignore_labels"] = list(ignore_labels)
        return tokenizer_kwargs, {}, post

    # -- steps ------------------------------------------------------------------------------------

    def preprocess(self, inputs: str, **tokenizer_kwargs: Any) -> dict[str, Any]:
        return self.preprocess_batch([inputs], **tokenizer_kwargs)[0]

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        split = kwargs.get("is_split_into_words", self._preprocess_params.get("is_split_into_words", False))
        if (
            split
            and isinstance(inputs, (list, tuple))
            and not all(isinstance(x, (list, tuple)) for x in inputs)
        ):
            inputs = [inputs]  # one pre-split text; the answer is a list of one, as the reference's
        return super().__call__(inputs, *args, **kwargs)

    def preprocess_batch(
        self,
        inputs: list[Any],
        is_split_into_words: bool = False,
        delimiter: str = " ",
        **tokenizer_kwargs: Any,
    ) -> list[dict[str, Any]]:
        kind = (list, tuple) if is_split_into_words else str
        for text in inputs:
            if not isinstance(text, kind) or (
                is_split_into_words and not all(isinstance(w, str) for w in text)
            ):
                raise PipelineError(
                    "token-classification takes a string or a list of strings"
                    + (
                        "; with is_split_into_words=True each text is a list of words"
                        if is_split_into_words
                        else ""
                    )
                    + f", got {text!r}"
                )
        if is_split_into_words:
            tokenizer_kwargs["is_split_into_words"] = True
            inputs = [list(words) for words in inputs]
        max_len = getattr(self.tokenizer, "model_max_length", None)
        options = {"truncation": bool(max_len and max_len > 0), **tokenizer_kwargs}
        enc = self.tokenizer(
            list(inputs), return_special_tokens_mask=True, return_offsets_mapping=True, **options
        )
        features = []
        for i, text in enumerate(inputs):
            f = {k: v[i] for k, v in enc.items()}
            if is_split_into_words:  # offsets are inside each word: keep where each word starts
                f["sentence"] = delimiter.join(text)
                starts, pos = [], 0
                for word in text:
                    starts.append(pos)
                    pos += len(word) + len(delimiter)
                f["word_starts"] = [None if w is None else starts[w] for w in enc.word_ids(i)]
            else:
                f["sentence"] = text
            features.append(f)
        return features

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
        lengths = self.row_lengths(model_inputs)
        logits_at = getattr(self.model, "logits_at", None)
        mask = model_inputs.get("attention_mask")
        if logits_at is not None and mask is not None and self.tokenizer.padding_side == "right":
            # Haven's heads skip padding entirely: (real tokens, L) rows, split back per input.
            inputs = {k: v for k, v in model_inputs.items() if k in inspect.signature(logits_at).parameters}
            scores = logits_at(mask.bool(), **inputs).float().softmax(dim=-1).numpy(force=True)
            return np.split(scores, np.cumsum(lengths)[:-1])
        logits = self.model_forward(model_inputs).logits.float()  # (B, T, L)
        scores = logits.softmax(dim=-1).numpy(force=True)
        return [scores[row, :n] for row, n in enumerate(lengths)]

    def postprocess(
        self,
        features: dict[str, Any],
        scores: np.ndarray,
        aggregation_strategy: str = "none",
        ignore_labels: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        if ignore_labels is None:
            ignore_labels = ["O"]
        tokens = self.gather_tokens(features, scores, aggregation_strategy)
        entities = self.aggregate(tokens, aggregation_strategy)
        return [
            e
            for e in entities
            if e.get("entity") not in ignore_labels and e.get("entity_group") not in ignore_labels
        ]

    # -- aggregation ------------------------------------------------------------------------------

    def gather_tokens(
        self, features: dict[str, Any], scores: np.ndarray, strategy: str
    ) -> list[dict[str, Any]]:
        """One record per non-special token: word piece, scores, offsets, index, is_subword."""
        sentence = features["sentence"]
        input_ids = list(features["input_ids"])
        special = features["special_tokens_mask"]
        offsets = features.get("offset_mapping")
        word_starts = features.get("word_starts")
        pieces = self.tokenizer.convert_ids_to_tokens(input_ids)
        has_prefix = bool(_continuing_subword_prefix(self.tokenizer))
        unk = getattr(self.tokenizer, "unk_token_id", None)
        warned = False
        tokens = []
        for idx, token_scores in enumerate(scores):
            if special[idx]:
                continue
            word = pieces[idx]
            if offsets is not None:
                start, end = (int(x) for x in offsets[idx])
                if word_starts is not None and word_starts[idx] is not None:
                    start, end = start + word_starts[idx], end + word_starts[idx]
                word_ref = sentence[start:end]
                if has_prefix:
                    is_subword = len(word) != len(word_ref)
                else:
                    if strategy in ("first", "max", "average") and not warned:
                        warnings.warn(
                            "Tokenizer does not support real words, using fallback heuristic",
                            UserWarning,
                            stacklevel=2,
                        )
                        warned = True
                    is_subword = start > 0 and " " not in sentence[start - 1 : start + 1]
                if input_ids[idx] == unk:
                    word = word_ref
                    is_subword = False
            else:
                start = end = None
                is_subword = False
            tokens.append(
                {
                    "word": word,
                    "scores": token_scores,
                    "start": start,
                    "end": end,
                    "index": idx,
                    "is_subword": is_subword,
                }
            )
        return tokens

    def aggregate(self, tokens: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for t in tokens:
                best = int(t["scores"].argmax())
                entities.append(
                    {
                        "entity": id2label[best],
                        "score": float(t["scores"][best]),
                        "index": t["index"],
                        "word": t["word"],
                        "start": t["start"],
                        "end": t["end"],
                    }
                )
            if strategy == "none":
                return entities
        else:
            entities = self.aggregate_words(tokens, strategy)
        return self.group_entities(entities)

    def aggregate_words(self, tokens: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
        """Merge the sub-tokens of each word into one entity whose label all of them share."""
        words: list[list[dict[str, Any]]] = []
        for t in tokens:
            if words and t["is_subword"]:
                words[-1].append(t)
            else:
                words.append([t])
        return [self._word_entity(group, strategy) for group in words]

    def _word_entity(self, group: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
        if strategy == "first":
            scores = group[0]["scores"]
        elif strategy == "max":
            scores = max(group, key=lambda t: t["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([t["scores"] for t in group]), axis=0)
        best = int(scores.argmax())
        return {
            "entity": self.model.config.id2label[best],
            "score": float(scores[best]),
            "word": self.tokens_to_string([t["word"] for t in group]),
            "start": group[0]["start"],
            "end": group[-1]["end"],
        }

    def group_entities(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge neighbours with the same tag into entity groups (a B- tag starts a new group)."""
        groups: list[list[dict[str, Any]]] = []
        for entity in entities:
            bi, tag = _split_tag(entity["entity"])
            if groups and bi != "B" and tag == _split_tag(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [
            {
                "entity_group": group[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([e["score"] for e in group])),
                "word": self.tokens_to_string([e["word"] for e in group]),
                "start": group[0]["start"],
                "end": group[-1]["end"],
            }
            for group in groups
        ]

    def tokens_to_string(self, pieces: list[str]) -> str:
        convert = getattr(self.tokenizer, "convert_tokens_to_string", None)
        if convert is not None:
            return convert(pieces)
        backend = _backend(self.tokenizer)
        decoder = getattr(backend, "decoder", None)
        return decoder.decode(pieces) if decoder is not None else " ".join(pieces)


def _split_tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def _backend(tokenizer: Any) -> Any:
    return getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)


def _continuing_subword_prefix(tokenizer: Any) -> str | None:
    backend = _backend(tokenizer)
    model = getattr(backend, "model", None)
    return getattr(model, "continuing_subword_prefix", None)
