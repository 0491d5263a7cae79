"""sentence-similarity: cosine similarity between a source sentence and other sentences.

    sim = pipeline("sentence-similarity", model=path)
    sim("A man is eating.", ["A man eats food.", "A plane takes off."])      # [0.83, 0.12]
    sim({"source_sentence": "A man is eating.", "sentences": ["..."]})      # same
    sim.encode(["one", "two"])                                              # (2, H) embeddings

Sentence embeddings follow the sentence-transformers convention: token vectors of the base
model pooled over the attention mask — mean pooling unless `1_Pooling/config.json` (found through
`modules.json`) asks for the CLS token or max pooling — then L2-normalised when `modules.json`
lists a Normalize module. `sentence_bert_config.json`'s `max_seq_length` truncates inputs.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from ..errors import PipelineError
from .base import Pipeline

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")


def read_sentence_transformers_config(path_or_id: Any) -> dict[str, Any]:
    """{"pooling": mode, "normalize": bool, "max_seq_length": int | None} from a model's files."""
    from ..hub import resolve_file

    settings: dict[str, Any] = {"pooling": "mean", "normalize": False, "max_seq_length": None}
    if path_or_id is None:
        return settings

    def read(name: str) -> Any:
        try:
            path = resolve_file(path_or_id, name, optional=True)
        except OSError:
            return None
        if path is None:
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    for module in read("modules.json") or []:
        kind = str(module.get("type", ""))
        folder = str(module.get("path", "")).strip("/")
        if kind.endswith("Pooling"):
            pooling = read(f"{folder}/config.json" if folder else "config.json") or {}
            if pooling.get("pooling_mode_cls_token"):
                settings["pooling"] = "cls"
            elif pooling.get("pooling_mode_max_tokens"):
                settings["pooling"] = "max"
            elif pooling.get("pooling_mode_mean_sqrt_len_tokens"):
                settings["pooling"] = "mean_sqrt_len"
        elif kind.endswith("Normalize"):
            settings["normalize"] = True
    st_config = read("sentence_bert_config.json") or {}
    if st_config.get("max_seq_length"):
        settings["max_seq_length"] = int(st_config["max_seq_length"])
    return settings


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, H) token vectors and a (B, T) attention mask -> (B, H) sentence vectors."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    summed = (hidden * weights).sum(dim=1)  # (B, H)
    counts = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    if mode == "mean_sqrt_len":
        return summed / counts.sqrt()
    return summed / counts


class SentenceSimilarityPipeline(Pipeline):
    task = "sentence-similarity"

    def __init__(self, model: Any, tokenizer: Any = None, **kwargs: Any) -> None:
        st = read_sentence_transformers_config(getattr(model, "name_or_path", None))
        self.pooling = kwargs.pop("pooling", None) or st["pooling"]
        if self.pooling not in POOLING_MODES:
            raise PipelineError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {self.pooling!r}")
        normalize = kwargs.pop("normalize", None)
        self.normalize = st["normalize"] if normalize is None else bool(normalize)
        self.max_seq_length = st["max_seq_length"]
        super().__init__(model, tokenizer, **kwargs)

    def _sanitize_parameters(self, **tokenizer_kwargs: Any) -> tuple[dict, dict, dict]:
        return tokenizer_kwargs, {}, {}

    def preprocess(self, inputs: str, **tokenizer_kwargs: Any) -> dict[str, Any]:
        return self.preprocess_batch([inputs], **tokenizer_kwargs)[0]

    def preprocess_batch(self, inputs: list[str], **tokenizer_kwargs: Any) -> list[dict[str, Any]]:
        for text in inputs:
            if not isinstance(text, str):
                raise PipelineError(f"sentence-similarity compares strings, got {type(text).__name__}")
        if self.max_seq_length and "truncation" not in tokenizer_kwargs:
            tokenizer_kwargs = {**tokenizer_kwargs, "truncation": True, "max_length": self.max_seq_length}
        enc = self.tokenizer(list(inputs), **tokenizer_kwargs)
        return [{k: v[i] for k, v in enc.items()} for i in range(len(inputs))]

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        hidden = self.model_forward(model_inputs)[0]  # (B, T, H)
        mask = model_inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        vectors = pool(hidden.float(), mask, self.pooling)  # (B, H)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return list(vectors.cpu().unbind(0))

    def postprocess(self, features: dict[str, Any], vector: torch.Tensor) -> torch.Tensor:
        return vector

    def encode(
        self, sentences: str | list[str], batch_size: int | None = None, **tokenizer_kwargs: Any
    ) -> torch.Tensor:
        """Sentence embeddings: (H,) for one string, (N, H) for a list."""
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        pre = {**self._preprocess_params, **tokenizer_kwargs}
        vectors = torch.stack(self.run(items, batch_size=batch_size, params=(pre, {}, {})))
        return vectors[0] if single else vectors

    def __call__(self, inputs: Any, *args: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        if args:
            if len(args) > 1:
                raise PipelineError("call sentence-similarity as pipe(source_sentence, sentences)")
            inputs = {"source_sentence": inputs, "sentences": args[0]}
        elif "sentences" in kwargs:
            inputs = {"source_sentence": inputs, "sentences": kwargs.pop("sentences")}
        batched = isinstance(inputs, (list, tuple))
        queries = list(inputs) if batched else [inputs]
        flat: list[str] = []
        spans = []
        for q in queries:
            if not isinstance(q, dict) or "source_sentence" not in q or "sentences" not in q:
                raise PipelineError(
                    "sentence-similarity takes pipe(source_sentence, sentences) or "
                    "{'source_sentence': str, 'sentences': [str, ...]} (or a list of such dicts)"
                )
            others = [q["sentences"]] if isinstance(q["sentences"], str) else list(q["sentences"])
            spans.append((len(flat), len(others)))
            flat += [q["source_sentence"], *others]
        vectors = self.encode(flat, batch_size=batch_size, **kwargs)  # (N, H)
        results = []
        for start, n in spans:
            source = vectors[start].unsqueeze(0)  # (1, H)
            others = vectors[start + 1 : start + 1 + n]  # (n, H)
            results.append(torch.nn.functional.cosine_similarity(source, others, dim=-1).tolist())
        return results if batched else results[0]
