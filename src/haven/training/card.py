"""The model card a training run writes for itself (output_dir/README.md).

YAML metadata the hub indexes (library_name, license, base_model, tags, datasets, metrics, and a
model-index with the final evaluation results), then: what the model is, placeholders for intended
uses and limitations, the training data, the hyperparameters, a results table with one row per
evaluation, and the framework versions. The card is validated (haven.hub.card) before it is written.
"""

from __future__ import annotations

import os
import platform
import re
from typing import Any

from ..hub.card import CardData, ModelCard, _pipeline_tag

_SPEED = ("runtime", "samples_per_second", "steps_per_second")
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_TASK_NAMES = {"text-classification": "Text Classification", "token-classification": "Token Classification",
               "fill-mask": "Masked Language Modeling", "question-answering": "Question Answering",
               "text-generation": "Causal Language Modeling"}
TODO = "More information needed: {what}"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _title(key: str) -> str:
    return " ".join(w.capitalize() for w in key.split("_"))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def final_eval(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last evaluation's metrics, without the eval_ prefix nor timing."""
    evals = [e for e in log_history if "eval_loss" in e or any(k.startswith("eval_") for k in e)]
    if not evals:
        return {}
    return {k.removeprefix("eval_"): v for k, v in evals[-1].items()
            if k.startswith("eval_") and k.removeprefix("eval_") not in _SPEED}


def results_table(log_history: list[dict[str, Any]]) -> str:
    """One row per evaluation: training loss since the last row, epoch, step, validation loss, metrics."""
    evals = [e for e in log_history if any(k.startswith("eval_") for k in e)]
    if not evals:
        return ""
    names = [k for k in evals[-1] if k.startswith("eval_") and k != "eval_loss"
             and k.removeprefix("eval_") not in _SPEED]
    header = ["Training Loss", "Epoch", "Step", "Validation Loss", *(_title(k.removeprefix("eval_")) for k in names)]
    rows, train_loss = [], "No log"
    for entry in log_history:
        if "loss" in entry and "eval_loss" not in entry:
            train_loss = _fmt(entry["loss"])
        elif any(k.startswith("eval_") for k in entry):
            rows.append([train_loss, _fmt(round(entry.get("epoch", 0), 4)), str(entry.get("step", "")),
                         _fmt(entry.get("eval_loss", "N/A")), *(_fmt(entry.get(k, "N/A")) for k in names)])
            train_loss = "No log"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(":---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def hyperparameters(trainer: Any) -> dict[str, Any]:
    args = trainer.args
    out: dict[str, Any] = {
        "learning_rate": args.learning_rate,
        "train_batch_size": args.train_batch_size,
        "eval_batch_size": args.eval_batch_size,
        "seed": args.seed,
    }
    if args.gradient_accumulation_steps > 1:
        out["gradient_accumulation_steps"] = args.gradient_accumulation_steps
        out["total_train_batch_size"] = args.train_batch_size * args.gradient_accumulation_steps
    out["optimizer"] = (f"{args.optim.upper()} with betas=({args.adam_beta1},{args.adam_beta2}), "
                        f"epsilon={args.adam_epsilon}, weight_decay={args.weight_decay}")
    out["lr_scheduler_type"] = args.lr_scheduler_type
    warmup = args.get_warmup_steps(max(trainer.state.max_steps, 1))
    if warmup:
        out["lr_scheduler_warmup_steps"] = warmup
    out["max_grad_norm"] = args.max_grad_norm
    if args.max_steps > 0:
        out["training_steps"] = args.max_steps
    else:
        out["num_epochs"] = args.num_train_epochs
    if args.bf16 or args.fp16:
        out["mixed_precision_training"] = "bf16 autocast" if args.bf16 else "fp16 autocast"
    return out


def framework_versions() -> list[str]:
    import torch

    import haven

    found = [f"Haven {haven.__version__}", f"PyTorch {torch.__version__}", f"Python {platform.python_version()}"]
    for name, label in (("tokenizers", "Tokenizers"), ("datasets", "Datasets")):
        try:
            found.append(f"{label} {__import__(name).__version__}")
        except ImportError:
            pass
    return found


def build_card(
    trainer: Any,
    *,
    model_name: str | None = None,
    language: str | list[str] | None = None,
    license: str | None = None,  # noqa: A002 - the reference's name
    tags: str | list[str] | None = None,
    finetuned_from: str | None = None,
    tasks: str | list[str] | None = None,
    dataset_tags: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    dataset_args: str | list[str] | None = None,
) -> ModelCard:
    """The card as a ModelCard (metadata + Markdown); the keyword names are the reference's
    `Trainer.create_model_card` ones."""
    model, state = trainer.model, trainer.state
    name = model_name or (trainer.hub_model_id or os.path.basename(os.path.abspath(trainer.args.output_dir)))
    name = name.split("/")[-1]
    config = getattr(model, "config", None)
    base = finetuned_from or getattr(config, "_name_or_path", None) or None
    base = base if base and _REPO_ID.match(str(base)) and not os.path.exists(str(base)) else None
    task = (_as_list(tasks) or [_pipeline_tag(type(model).__name__)])[0]
    datasets = _as_list(dataset_tags)
    dataset_names = _as_list(dataset) or datasets
    metrics = final_eval(state.log_history)
    metric_names = [k for k in metrics if k != "loss"]
    data = CardData(library_name="transformers", license=license, language=language, base_model=base,
                    tags=["haven", "generated_from_trainer", *_as_list(tags)], datasets=datasets or None,
                    metrics=metric_names or None, pipeline_tag=task)
    results = []
    if metrics and datasets and task:
        result: dict[str, Any] = {
            "task": {"name": _TASK_NAMES.get(task, task), "type": task},
            "dataset": {"name": dataset_names[0], "type": datasets[0]},
            "metrics": [{"name": _title(k), "type": k, "value": v} for k, v in metrics.items() if k != "loss"]
            or [{"name": "Loss", "type": "loss", "value": metrics["loss"]}],
        }
        if dataset_args:
            result["dataset"]["args"] = _as_list(dataset_args)[0]
        results.append(result)
    data.model_index = [{"name": name, "results": results}]
    intro = "This model"
    intro += f" is a fine-tuned version of [{base}](/{base})" if base else f" is a fine-tuned `{type(model).__name__}`"
    intro += f" on the {', '.join(dataset_names)} dataset." if dataset_names else " on an unknown dataset."
    if metrics:
        intro += "\nIt achieves the following results on the evaluation set:\n" + "\n".join(
            f"- {_title(k)}: {_fmt(v)}" for k, v in metrics.items())
    params = "\n".join(f"- {k}: {v}" for k, v in hyperparameters(trainer).items())
    table = results_table(state.log_history)
    body = [
        "<!-- Written by haven.Trainer from the training run. Fill in the sections that ask for it. -->",
        f"# {name}", intro,
        "## Model description", TODO.format(what="what the model is for, and how it was built."),
        "## Intended uses & limitations",
        TODO.format(what="the uses it is meant for, those it is not fit for, and its known limitations and biases."),
        "## Training and evaluation data",
        (f"Trained and evaluated on {', '.join(dataset_names)}. " if dataset_names else "")
        + TODO.format(what="where the data comes from, its size, and how it was split."),
        "## Training procedure", "### Training hyperparameters",
        "The following hyperparameters were used during training:\n" + params,
    ]
    if table:
        body += ["### Training results", table]
    body += ["### Framework versions", "\n".join(f"- {v}" for v in framework_versions())]
    card = ModelCard("\n\n".join(body) + "\n")
    card.data = data
    card.validate()
    return card


def write_model_card(trainer: Any, **kwargs: Any) -> str:
    card = build_card(trainer, **kwargs)
    os.makedirs(trainer.args.output_dir, exist_ok=True)
    card.save(os.path.join(trainer.args.output_dir, "README.md"))
    return card.content
