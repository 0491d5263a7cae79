"""`TrainingArguments`: the reference library's names and defaults, and nothing Haven would ignore.

    args = TrainingArguments("out", learning_rate=2e-5, num_train_epochs=3, eval_strategy="epoch",
                             push_to_hub=True, report_to="tensorboard")

A name the reference library knows but Haven does not implement (`deepspeed`, `fsdp`, `optim="adafactor"`
...) raises `NotImplementedError`; a name nobody knows raises `TypeError`. Values are checked here, so a
mistake surfaces before training starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import torch

STRATEGIES = ("no", "steps", "epoch")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
HUB_STRATEGIES = ("end", "every_save", "checkpoint")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused")
SAMPLING = ("random", "sequential")
REPORTERS = ("tensorboard",)

# Reference arguments Haven does not implement: passing one (with a non-default value) raises.
UNSUPPORTED = (
    "deepspeed fsdp fsdp_config accelerator_config torch_compile torch_compile_backend torch_compile_mode "
    "gradient_checkpointing activation_checkpointing auto_find_batch_size label_smoothing_factor "
    "neftune_noise_alpha use_liger_kernel tf32 jit_mode_eval ddp_backend local_rank half_precision_backend "
    "fp16_full_eval bf16_full_eval eval_accumulation_steps prediction_loss_only lr_scheduler_kwargs optim_args "
    "dataloader_num_workers dataloader_pin_memory dataloader_persistent_workers include_num_input_tokens_seen "
    "hub_always_push hub_revision resume_from_checkpoint ignore_data_skip restore_callback_states_from_checkpoint "
    "group_by_length length_column_name full_determinism average_tokens_across_devices torch_empty_cache_steps "
    "eval_do_concat_batches batch_eval_metrics logging_nan_inf_filter skip_memory_metrics debug"
).split()


@dataclass
class TrainingArguments:
    """What to train for how long, how to log, evaluate, save and publish. Defaults are the reference's."""

    output_dir: str | None = None
    overwrite_output_dir: bool | None = None  # accepted for old scripts: Haven never deletes output_dir
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    seed: int = 42
    data_seed: int | None = None
    run_name: str | None = None
    report_to: str | list[str] | None = "none"
    logging_dir: str | None = None
    # optimisation
    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    num_train_epochs: float = 3.0
    max_steps: int = -1
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    optim: str = "adamw_torch_fused"
    warmup_steps: float = 0
    warmup_ratio: float | None = None  # the older name: a fraction of the total steps
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    bf16: bool = False
    fp16: bool = False
    use_cpu: bool = False
    # data
    train_sampling_strategy: str = "random"
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    dataloader_drop_last: bool = False
    # evaluation, saving, logging
    eval_strategy: str = "no"
    eval_steps: float | None = None
    eval_delay: float = 0
    eval_on_start: bool = False
    save_strategy: str = "steps"
    save_steps: float = 500
    save_total_limit: int | None = None
    save_only_model: bool = False
    logging_strategy: str = "steps"
    logging_steps: float = 500
    logging_first_step: bool = False
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    disable_tqdm: bool | None = None
    # hub
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_strategy: str = "every_save"
    hub_private_repo: bool | None = None
    hub_token: str | None = None

    def __post_init__(self) -> None:
        self.output_dir = os.path.expanduser(self.output_dir or "trainer_output")
        if self.disable_tqdm is None:
            self.disable_tqdm = False
        self.report_to = _reporters(self.report_to)
        if self.logging_dir is None and self.report_to:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            self.logging_dir = os.path.join(self.output_dir, "runs", f"{stamp}_{socket.gethostname()}")
        _choose("eval_strategy", self.eval_strategy, STRATEGIES)
        _choose("logging_strategy", self.logging_strategy, STRATEGIES)
        _choose("save_strategy", self.save_strategy, (*STRATEGIES, "best"))
        _choose("lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        _choose("optim", self.optim, OPTIMIZERS)
        _choose("train_sampling_strategy", self.train_sampling_strategy, SAMPLING)
        if self.hub_strategy == "all_checkpoints":
            raise NotImplementedError("hub_strategy='all_checkpoints' is not supported; use 'checkpoint' (the latest "
                                      "checkpoint as last-checkpoint/), 'every_save' or 'end'")
        _choose("hub_strategy", self.hub_strategy, HUB_STRATEGIES)
        if self.eval_strategy == "steps" and not self.eval_steps:
            self.eval_steps = self.logging_steps
        for name in ("logging_steps", "eval_steps", "save_steps"):
            value = getattr(self, name)
            if value is not None and value > 1:
                if value != int(value):
                    raise ValueError(f"{name} must be an integer when above 1 (a number of steps), got {value}")
                setattr(self, name, int(value))
        if self.logging_strategy == "steps" and not self.logging_steps:
            raise ValueError("logging_strategy='steps' needs logging_steps > 0")
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio <= 1:
                raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
            if self.warmup_steps:
                raise ValueError("pass warmup_steps or warmup_ratio, not both")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0 (a count, or a fraction below 1), got {self.warmup_steps}")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be at least 1")
        if self.bf16 and self.fp16:
            raise ValueError("pass bf16=True or fp16=True, not both")
        if self.fp16 and self.device.type != "cuda":
            raise ValueError("fp16 mixed precision needs a CUDA device (it scales the loss with a GradScaler); "
                             "on CPU use bf16=True")
        if self.bf16 and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16; use fp16=True")
        if (self.load_best_model_at_end or self.save_strategy == "best") and self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.load_best_model_at_end and self.save_strategy != "best":
            if self.eval_strategy != self.save_strategy:
                raise ValueError("load_best_model_at_end needs save_strategy equal to eval_strategy (or 'best'), got "
                                 f"eval_strategy={self.eval_strategy!r}, save_strategy={self.save_strategy!r}")
            if self.eval_strategy == "steps" and self.save_steps % self.eval_steps != 0:
                raise ValueError(f"load_best_model_at_end needs save_steps ({self.save_steps}) to be a multiple of "
                                 f"eval_steps ({self.eval_steps})")
        if self.save_strategy == "best" and self.eval_strategy == "no":
            raise ValueError("save_strategy='best' saves when an evaluation improves: set eval_strategy too")

    # -- derived values (the reference's names) ------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() and not self.use_cpu else "cpu")

    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """Warmup length in optimizer steps: a count, or (below 1, or warmup_ratio) a share of the run."""
        if self.warmup_ratio is not None:
            return math.ceil(num_training_steps * self.warmup_ratio)
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        return math.ceil(num_training_steps * self.warmup_steps)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hub_token"] = "<HUB_TOKEN>" if self.hub_token else None
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _choose(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; use one of {', '.join(map(repr, allowed))}")


def _reporters(value: str | list[str] | None) -> list[str]:
    names = [value] if isinstance(value, str) else list(value or [])
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return list(REPORTERS)
    unknown = [n for n in names if n not in REPORTERS]
    if unknown:
        raise NotImplementedError(f"report_to {unknown} is not supported; Haven reports to 'tensorboard' "
                                  "(torch's SummaryWriter, under output_dir/runs) or 'none'")
    return names


def _checked_init(self: TrainingArguments, *args: Any, **kwargs: Any) -> None:
    unsupported = sorted(set(kwargs) & set(UNSUPPORTED))
    if unsupported:
        raise NotImplementedError(
            f"TrainingArguments {unsupported} {'is' if len(unsupported) == 1 else 'are'} not supported by Haven's "
            "Trainer (single device, AdamW, plain autocast); remove them"
        )
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"TrainingArguments got unknown argument(s) {unknown}; see help(haven.TrainingArguments)")
    _dataclass_init(self, *args, **kwargs)


_dataclass_init = TrainingArguments.__init__
TrainingArguments.__init__ = _checked_init  # type: ignore[method-assign]
