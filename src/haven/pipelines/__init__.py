"""`pipeline(task, model=...)`: a ready-to-call model for a task, as users know it.

    from haven import pipeline
    fill = pipeline("fill-mask", model="path/or/owner-name")
    fill("Paris is the [MASK] of France.", top_k=3)

Each task lives in its own module and is imported only when asked for (see TASKS).
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Any

from ..errors import PipelineError
from ..loading import HUB_OPTIONS, OPTIONS

__all__ = ["Pipeline", "PipelineError", "TASKS", "TASK_ALIASES", "pipeline", "supported_tasks"]


def __getattr__(name: str) -> Any:  # `Pipeline` imports torch: load it only when asked for
    if name == "Pipeline":
        from .base import Pipeline

        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# task -> (module:class in haven.pipelines, Auto class that loads its model)
TASKS: dict[str, tuple[str, str]] = {
    "fill-mask": ("fill_mask:FillMaskPipeline", "AutoModelForMaskedLM"),
    "text-classification": (
        "text_classification:TextClassificationPipeline",
        "AutoModelForSequenceClassification",
    ),
    "token-classification": (
        "token_classification:TokenClassificationPipeline",
        "AutoModelForTokenClassification",
    ),
    "feature-extraction": ("feature_extraction:FeatureExtractionPipeline", "AutoModel"),
    "sentence-similarity": ("sentence_similarity:SentenceSimilarityPipeline", "AutoModel"),
    "text-generation": ("text_generation:TextGenerationPipeline", "AutoModelForCausalLM"),
    "zero-shot-classification": (
        "zero_shot_classification:ZeroShotClassificationPipeline",
        "AutoModelForSequenceClassification",
    ),
}

TASK_ALIASES = {
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
}

# architecture name suffix -> task, for pipeline(model=...) without a task
_ARCHITECTURE_TASKS = (
    ("ForMaskedLM", "fill-mask"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("Model", "feature-extraction"),
)


def supported_tasks() -> list[str]:
    return sorted([*TASKS, *TASK_ALIASES])


def normalize_task(task: str) -> str:
    name = TASK_ALIASES.get(task, task)
    if name not in TASKS:
        raise PipelineError(f"unknown task {task!r}; Haven's pipelines are: {', '.join(supported_tasks())}")
    return name


def pipeline_class(task: str) -> type:
    spec = TASKS[normalize_task(task)][0]
    module_name, _, class_name = spec.partition(":")
    module = importlib.import_module(f".{module_name}", __name__)
    return getattr(module, class_name)


def infer_task(model: Any) -> str:
    """The task of a model directory / id / model object, from its files and config.architectures."""
    from ..config import PretrainedConfig

    if isinstance(model, (str, os.PathLike)):
        if os.path.isdir(model) and os.path.isfile(os.path.join(model, "modules.json")):
            return "sentence-similarity"  # a sentence-transformers checkpoint
        from ..auto import AutoConfig

        config = AutoConfig.from_pretrained(model)
    else:
        config = getattr(model, "config", None)
    architectures = (
        list(getattr(config, "architectures", None) or []) if isinstance(config, PretrainedConfig) else []
    )
    if not architectures and not isinstance(model, (str, os.PathLike)):
        architectures = [type(model).__name__]
    for arch in architectures:
        for suffix, task in _ARCHITECTURE_TASKS:
            if arch.endswith(suffix):
                return task
    raise PipelineError(
        f"cannot infer the task of {model!r} (architectures: {architectures or 'none listed'}); "
        f"pass it explicitly, one of: {', '.join(supported_tasks())}"
    )


# Arguments of pipeline() that are for from_pretrained, not for the task: every loading option
# `haven.loading` knows (from_pretrained honours or refuses each), but `device`, which is the
# pipeline's own, and `output_loading_info`, which would change what from_pretrained returns.
LOADING_ARGS = tuple(k for k in OPTIONS if k not in ("device", "output_loading_info"))


def pipeline(
    task: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
    device: Any = None,
    batch_size: int = 1,
    dtype: Any = None,
    revision: str | None = None,
    **kwargs: Any,
) -> Any:
    """Build the pipeline of `task` around `model` (a directory, a hub id or a loaded model).

    `tokenizer` defaults to the one stored with the model. `device`: None/"cpu"/-1, a GPU index
    or "cuda:0". Loading arguments go to the model's `from_pretrained`: `dtype` (or its old name
    `torch_dtype`), `device_map`, `revision`, `token`, `cache_dir`, `local_files_only`,
    `trust_remote_code` and anything in `model_kwargs={...}`; what it refuses is raised as is.
    Other keyword arguments are the task's defaults (`top_k=3`, `aggregation_strategy="simple"` ...).
    """
    if model is None:
        raise PipelineError(
            "pipeline() needs model=: a local directory, a hub repository id, or a loaded model. "
            "Haven ships no default models"
        )
    if task is None:
        task = infer_task(model)
    task = normalize_task(task)
    if "torch_dtype" in kwargs:
        if dtype is not None:
            raise PipelineError("pass dtype= or its old name torch_dtype=, not both")
        dtype = kwargs.pop("torch_dtype")
    given = {"dtype": dtype, "revision": revision, **{k: kwargs.pop(k) for k in LOADING_ARGS if k in kwargs}}
    loading = {k: v for k, v in given.items() if v is not None}
    model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
    if "torch_dtype" in model_kwargs:
        model_kwargs["dtype"] = model_kwargs.pop("torch_dtype")
    twice = sorted(set(loading) & set(model_kwargs))
    if twice:
        raise PipelineError(
            f"{', '.join(twice)} given both to pipeline() and in model_kwargs; pass each once"
        )
    if device is not None and "device_map" in loading | model_kwargs:
        raise PipelineError(
            "device= and device_map= both place the model; pass one (device='cuda:0', or device_map='auto')"
        )
    cls = pipeline_class(task)

    source = None
    if isinstance(model, (str, os.PathLike)):
        source = model
        model = _load_model(task, model, {**loading, **model_kwargs})
    elif loading.keys() - set(HUB_OPTIONS) or model_kwargs:
        named = sorted((loading.keys() - set(HUB_OPTIONS)) | set(model_kwargs))
        raise PipelineError(
            f"{', '.join(named)} are loading arguments, but model= is an already loaded model: load it with "
            "them (AutoModel...from_pretrained(path, ...)) or pass model= as a directory or hub id"
        )
    if tokenizer is None:
        tokenizer = source if source is not None else getattr(model, "name_or_path", None)
        if tokenizer is None:
            raise PipelineError("the model object does not say where it came from; pass tokenizer= as well")
    if isinstance(tokenizer, (str, os.PathLike)):
        from ..tokenization.named import AutoTokenizer

        tok_kwargs = {k: loading[k] for k in HUB_OPTIONS if k in loading and k != "revision"}
        if "revision" in loading and isinstance(source, str):
            tok_kwargs["revision"] = loading["revision"]
        tokenizer = AutoTokenizer.from_pretrained(tokenizer, **tok_kwargs)
    return cls(model, tokenizer, task=task, device=device, batch_size=batch_size, **kwargs)


def _load_model(task: str, path_or_id: Any, loading: dict[str, Any]) -> Any:
    from .. import auto

    auto_class = getattr(auto, TASKS[task][1])
    model, info = auto_class.from_pretrained(path_or_id, output_loading_info=True, **loading)
    missing = info.get("missing_keys") or []
    if missing and task != "feature-extraction" and task != "sentence-similarity":
        warnings.warn(
            f"{path_or_id} has no trained weights for {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}: the {type(model).__name__} head for {task!r} is newly "
            "initialised, so its predictions are random. Use a checkpoint fine-tuned for this task, or train it first",
            UserWarning,
            stacklevel=3,
        )
    return model
