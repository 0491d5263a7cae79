"""TrainingArguments: the reference's names and defaults; what Haven does not implement raises, with
the reason; the optimizer's weight-decay groups and the learning-rate schedules equal the reference's."""

from __future__ import annotations

import pytest
import torch

import haven
from haven.training.optim import create_scheduler, decay_parameter_names


def _plain(value):
    return getattr(value, "value", value)


def test_defaults_are_the_reference_defaults(tmp_path):
    import dataclasses

    import transformers

    ours = haven.TrainingArguments(str(tmp_path))
    ref = transformers.TrainingArguments(str(tmp_path), use_cpu=True)
    shared = [f.name for f in dataclasses.fields(ours) if hasattr(ref, f.name)]
    assert len(shared) >= 45
    for name in shared:
        if name in ("use_cpu", "disable_tqdm"):  # set above for the reference; tqdm depends on its logger level
            continue
        assert _plain(getattr(ours, name)) == _plain(getattr(ref, name)), name
    for name in ("output_dir", "seed", "report_to", "learning_rate", "per_device_train_batch_size",
                 "per_device_eval_batch_size", "num_train_epochs", "max_steps", "gradient_accumulation_steps",
                 "weight_decay", "warmup_steps", "lr_scheduler_type", "max_grad_norm", "eval_strategy",
                 "save_strategy", "logging_strategy", "eval_steps", "save_steps", "logging_steps", "save_total_limit",
                 "load_best_model_at_end", "metric_for_best_model", "push_to_hub", "hub_model_id", "hub_strategy",
                 "hub_private_repo", "hub_token"):
        assert name in shared, name
    assert haven.TrainingArguments(str(tmp_path), load_best_model_at_end=True, eval_strategy="epoch",
                                   save_strategy="epoch").metric_for_best_model == "loss"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"deepspeed": "ds.json"}, NotImplementedError, "deepspeed"),
    ({"gradient_checkpointing": True}, NotImplementedError, "not supported"),
    ({"learning_rat": 1e-3}, TypeError, "unknown argument"),
    ({"optim": "adafactor"}, ValueError, "optim='adafactor' is not supported"),
    ({"lr_scheduler_type": "polynomial"}, ValueError, "lr_scheduler_type"),
    ({"report_to": "wandb"}, NotImplementedError, "tensorboard"),
    ({"hub_strategy": "all_checkpoints"}, NotImplementedError, "last-checkpoint"),
    ({"eval_strategy": "sometimes"}, ValueError, "eval_strategy"),
    ({"train_sampling_strategy": "group_by_length"}, ValueError, "train_sampling_strategy"),
    ({"fp16": True}, ValueError, "bf16=True"),
    ({"load_best_model_at_end": True, "eval_strategy": "epoch"}, ValueError, "save_strategy equal to eval_strategy"),
    ({"logging_steps": 2.5}, ValueError, "integer"),
    ({"warmup_ratio": 0.1, "warmup_steps": 3}, ValueError, "not both"),
])
def test_unknown_or_unsupported_arguments_raise(tmp_path, kwargs, error, match):
    if kwargs.get("fp16") and torch.cuda.is_available():
        pytest.skip("fp16 is supported on CUDA")
    with pytest.raises(error, match=match):
        haven.TrainingArguments(str(tmp_path), **kwargs)


def test_weight_decay_groups_equal_the_reference(tiny_pair_bert):
    import transformers

    ref_model = transformers.BertForSequenceClassification.from_pretrained(tiny_pair_bert)
    ref = transformers.Trainer(ref_model, transformers.TrainingArguments("unused", use_cpu=True, report_to="none"))
    ours = haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert)
    assert sorted(decay_parameter_names(ours)) == sorted(ref.get_decay_parameter_names(ref_model))


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
@pytest.mark.parametrize("warmup", [0, 4, 0.25])
def test_schedules_equal_the_reference(kind, warmup):
    import transformers

    def optimizer():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)

    args = haven.TrainingArguments("unused", lr_scheduler_type=kind, warmup_steps=warmup)
    ref_args = transformers.TrainingArguments("unused", lr_scheduler_type=kind, warmup_steps=warmup, use_cpu=True)
    ours = create_scheduler(optimizer(), args, 20)
    theirs = transformers.get_scheduler(kind, optimizer(), num_warmup_steps=ref_args.get_warmup_steps(20),
                                        num_training_steps=20)
    for _ in range(22):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), abs=1e-12)
        ours.optimizer.step(), theirs.optimizer.step()
        ours.step(), theirs.step()
