"""The training loop's state, its switches, and the callbacks that watch or steer it.

Event names are the reference library's (`on_train_begin`, `on_step_end`, `on_evaluate`, `on_log` ...),
so a callback written for it runs here. `trainer_state.json` has the reference's keys.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

EVENTS = (
    "on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_step_begin",
    "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end", "on_step_end", "on_evaluate", "on_predict",
    "on_save", "on_log", "on_prediction_step", "on_push_begin",
)


_CLEARS = {"on_evaluate": "should_evaluate", "on_save": "should_save", "on_log": "should_log"}


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint as trainer_state.json."""

    epoch: float = 0
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None
    stateful_callbacks: dict[str, Any] = field(default_factory=dict)

    def save_to_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_from_json(cls, path: str) -> TrainerState:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def compute_steps(self, args: Any, max_steps: int) -> None:
        """logging/eval/save steps as counts (a value below 1 is a share of max_steps)."""
        for kind in ("logging", "eval", "save"):
            n = getattr(args, f"{kind}_steps")
            if n is not None:
                setattr(self, f"{kind}_steps", math.ceil(max_steps * n) if n < 1 else n)


@dataclass
class TrainerControl:
    """Switches callbacks flip to make the loop log, evaluate, save or stop."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False

    def _new_training(self) -> None:
        self.should_training_stop = False

    def _new_epoch(self) -> None:
        self.should_epoch_stop = False

    def _new_step(self) -> None:
        self.should_save = self.should_evaluate = self.should_log = False

    def state(self) -> dict[str, Any]:
        return {"args": dataclasses.asdict(self), "attributes": {}}


class TrainerCallback:
    """Override the events you need; each gets (args, state, control, **kwargs) and may return control.

    kwargs hold `model`, `processing_class`, `optimizer`, `lr_scheduler`, `train_dataloader`,
    `eval_dataloader`, and `logs` (on_log) or `metrics` (on_evaluate / on_predict).
    """


for _event in EVENTS:
    setattr(TrainerCallback, _event, lambda self, args, state, control, **kwargs: None)


class CallbackHandler:
    """Calls every callback's handler for an event, in order; a returned control replaces the current one."""

    def __init__(self, callbacks: list[TrainerCallback], **refs: Any):
        self.callbacks: list[TrainerCallback] = []
        for cb in callbacks:
            self.add_callback(cb)
        self.refs = refs

    def add_callback(self, callback: type[TrainerCallback] | TrainerCallback) -> None:
        cb = callback() if isinstance(callback, type) else callback
        if type(cb) in [type(c) for c in self.callbacks]:
            logger.warning("a %s is already in the callbacks; adding a second one", type(cb).__name__)
        self.callbacks.append(cb)

    def pop_callback(self, callback: type[TrainerCallback] | TrainerCallback) -> TrainerCallback | None:
        for cb in self.callbacks:
            if cb is callback or (isinstance(callback, type) and isinstance(cb, callback)):
                self.callbacks.remove(cb)
                return cb
        return None

    def call(self, event: str, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any
             ) -> TrainerControl:
        if event == "on_train_begin":
            control._new_training()
        elif event == "on_epoch_begin":
            control._new_epoch()
        elif event == "on_step_begin":
            control._new_step()
        elif event in _CLEARS:  # the request was carried out
            setattr(control, _CLEARS[event], False)
        for cb in self.callbacks:
            result = getattr(cb, event)(args, state, control, **self.refs, **kwargs)
            if result is not None:
                control = result
        return control


class DefaultFlowCallback(TrainerCallback):
    """Decides when to log, evaluate and save from the strategies, and stops at max_steps."""

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == "steps" and step % state.logging_steps == 0:
            control.should_log = True
        evaluating = args.eval_strategy == "steps" and args.eval_delay <= step
        if evaluating and step % state.eval_steps == 0:
            control.should_evaluate = True
        if args.save_strategy == "steps" and state.save_steps > 0 and step % state.save_steps == 0:
            control.should_save = True
        if step >= state.max_steps:
            control.should_training_stop = True
            if evaluating and step % state.eval_steps != 0:
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch" and args.eval_delay <= state.epoch:
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control


class ProgressCallback(TrainerCallback):
    """A tqdm bar over optimizer steps (and one per evaluation); `disable_tqdm=True` removes it."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            self.bar.set_postfix({k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()
                                  if k in ("loss", "eval_loss", "learning_rate")}, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoardCallback(TrainerCallback):
    """Writes every logged number as a scalar (train/loss, eval/accuracy ...) with torch's SummaryWriter
    under `args.logging_dir` (default output_dir/runs/<date>_<host>)."""

    def __init__(self) -> None:
        self.writer: Any = None

    def _writer(self, args: Any) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=args.logging_dir)
            self.writer.add_text("args", args.to_json_string())
        return self.writer

    def on_train_begin(self, args, state, control, **kwargs):
        self._writer(args)

    def on_log(self, args, state, control, logs=None, **kwargs):
        writer = self._writer(args)
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                writer.add_scalar(_tag(key), value, state.global_step)
        writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tag(key: str) -> str:
    for prefix in ("eval", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"train/{key}"


class EarlyStoppingCallback(TrainerCallback):
    """Stop when `metric_for_best_model` has not improved (by more than the threshold) for
    `early_stopping_patience` evaluations in a row."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float | None = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold or 0.0
        self.early_stopping_patience_counter = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None:
            raise ValueError("EarlyStoppingCallback needs metric_for_best_model (or load_best_model_at_end=True)")
        if args.eval_strategy == "no":
            raise ValueError("EarlyStoppingCallback needs evaluations: set eval_strategy to 'steps' or 'epoch'")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        name = name if name.startswith("eval_") else f"eval_{name}"
        value = (metrics or {}).get(name)
        if value is None:
            raise KeyError(f"EarlyStoppingCallback watches {name!r}, but the evaluation returned only "
                           f"{sorted(metrics or {})}; set metric_for_best_model to one of them")
        best = state.best_metric
        better = best is None or ((value > best) if args.greater_is_better else (value < best))
        if better and (best is None or abs(value - best) > self.early_stopping_threshold):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def state(self) -> dict[str, Any]:
        return {"args": {"early_stopping_patience": self.early_stopping_patience,
                         "early_stopping_threshold": self.early_stopping_threshold},
                "attributes": {"early_stopping_patience_counter": self.early_stopping_patience_counter}}
