"""`Trainer`: fine-tune a model on a dataset, evaluate it, checkpoint it, publish it.

    args = TrainingArguments("out", num_train_epochs=3, eval_strategy="epoch", push_to_hub=True)
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=dev, processing_class=tokenizer,
                      compute_metrics=accuracy)
    trainer.train()                       # or .train(resume_from_checkpoint=True)
    trainer.evaluate(); trainer.push_to_hub()

The loop follows the reference library's step by step (so its logged losses and final weights match
within float noise): micro-batches accumulate gradients (each loss divided by the accumulation group's
size), then the norm is clipped, AdamW steps, the schedule steps and the callbacks decide whether to
log, evaluate and save.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from ..generation import set_seed
from . import checkpoint as ckpt
from .arguments import TrainingArguments
from .callbacks import (
    CallbackHandler,
    DefaultFlowCallback,
    ProgressCallback,
    TensorBoardCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from .collators import DataCollatorWithPadding, default_data_collator
from .data import DroppingCollator, EpochSampler, has_length, label_names_of, make_loader, model_columns
from .optim import create_optimizer, create_scheduler


class EvalPrediction(NamedTuple):
    """What `compute_metrics` receives: `preds, labels = eval_pred` (NumPy arrays)."""

    predictions: Any
    label_ids: Any


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict[str, float]


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict[str, float]


class Trainer:
    """Training and evaluation loops for a Haven (or any torch) model whose forward returns a loss."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        args: TrainingArguments | None = None,
        data_collator: Callable[..., Any] | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        *,
        compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
        callbacks: list[TrainerCallback | type[TrainerCallback]] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        tokenizer: Any = None,
    ):
        if model is None:
            raise ValueError("Trainer needs a model (model_init is not supported: build the model first)")
        if tokenizer is not None:
            if processing_class is not None and processing_class is not tokenizer:
                raise ValueError("pass processing_class or tokenizer (its older name), not both")
            processing_class = tokenizer
        self.args = args if args is not None else TrainingArguments()
        if self.args.eval_strategy != "no" and eval_dataset is None:
            raise ValueError(f"eval_strategy={self.args.eval_strategy!r} evaluates during training: pass an "
                             "eval_dataset, or set eval_strategy='no'")
        set_seed(self.args.seed)
        self.model = model.to(self.args.device)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.processing_class = processing_class
        if data_collator is None:
            data_collator = DataCollatorWithPadding(processing_class) if hasattr(processing_class, "pad") \
                else default_data_collator
        self.data_collator = data_collator
        self.compute_metrics = compute_metrics
        self.optimizer, self.lr_scheduler = optimizers
        self._own_scheduler = False
        self.label_names = self.args.label_names or label_names_of(model)
        defaults: list[Any] = [DefaultFlowCallback]
        defaults += [ProgressCallback] if not self.args.disable_tqdm else []
        defaults += [TensorBoardCallback] if "tensorboard" in self.args.report_to else []
        self.callback_handler = CallbackHandler(
            [*defaults, *(callbacks or [])], model=self.model, processing_class=processing_class)
        self.state = TrainerState()
        self.control = TrainerControl()
        self.hub_model_id: str | None = None
        self.scaler = torch.amp.GradScaler("cuda") if self.args.fp16 else None
        if self.args.push_to_hub:
            self.init_hf_repo()
        self.control = self._call("on_init_end")

    # -- callbacks --------------------------------------------------------------------------------------
    def add_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> TrainerCallback | None:
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> None:
        self.callback_handler.pop_callback(callback)

    def _call(self, event: str, **kwargs: Any) -> TrainerControl:
        self.callback_handler.refs.update(optimizer=self.optimizer, lr_scheduler=self.lr_scheduler)
        return self.callback_handler.call(event, self.args, self.state, self.control, **kwargs)

    # -- data -------------------------------------------------------------------------------------------
    def _collator(self, description: str) -> Callable[..., Any]:
        if not self.args.remove_unused_columns:
            return self.data_collator
        return DroppingCollator(self.data_collator, model_columns(self.model, self.label_names), description)

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        args, data = self.args, self.train_dataset
        if data is None:
            raise ValueError("Trainer.train needs a train_dataset")
        sampler = None
        if has_length(data) and args.train_sampling_strategy == "random":
            sampler = EpochSampler(len(data), args.data_seed if args.data_seed is not None else args.seed)
        return make_loader(data, args.train_batch_size, self._collator("training"), sampler=sampler,
                           drop_last=args.dataloader_drop_last)

    def get_eval_dataloader(self, eval_dataset: Any = None, description: str = "evaluation"
                            ) -> torch.utils.data.DataLoader:
        data = eval_dataset if eval_dataset is not None else self.eval_dataset
        return make_loader(data, self.args.eval_batch_size, self._collator(description), sampler=None,
                           drop_last=self.args.dataloader_drop_last)

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        return batch.to(self.args.device) if isinstance(batch, torch.Tensor) else batch

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 / fp16 autocast on the training device when asked for, else nothing."""
        if self.args.bf16:
            return torch.autocast(self.args.device.type, dtype=torch.bfloat16)
        if self.args.fp16:
            return torch.autocast(self.args.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    # -- optimisation -----------------------------------------------------------------------------------
    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        if self.optimizer is None:
            self.optimizer = create_optimizer(self.model, self.args)
        if self.lr_scheduler is None or self._own_scheduler:  # a new run gets a new schedule
            self.lr_scheduler = create_scheduler(self.optimizer, self.args, num_training_steps)
            self._own_scheduler = True

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False) -> Any:
        outputs = model(**inputs)
        loss = _fields(outputs).get("loss") if not isinstance(outputs, tuple) else outputs[0]
        if loss is None or loss.dim() != 0:
            raise ValueError(f"the model returned no loss: the batch has {sorted(inputs)}; give the examples a "
                             f"label column ({', '.join(self.label_names) or 'labels'})")
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], group_size: int) -> torch.Tensor:
        """Forward and backward one micro-batch; returns its loss divided by the accumulation group size."""
        model.train()
        with self.autocast():
            loss = self.compute_loss(model, self._to_device(inputs))
        loss = loss / group_size
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss.detach()

    # -- the loop ---------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> TrainOutput:
        if kwargs:
            raise TypeError(f"Trainer.train got unsupported argument(s) {sorted(kwargs)} (trial and "
                            "ignore_keys_for_eval are not supported)")
        args = self.args
        if resume_from_checkpoint is True:
            resume_from_checkpoint = ckpt.last_checkpoint(args.output_dir)
        resume = os.fspath(resume_from_checkpoint) if resume_from_checkpoint else None
        loader = self.get_train_dataloader()
        gas = args.gradient_accumulation_steps
        if not isinstance(loader.dataset, torch.utils.data.IterableDataset):
            batches = len(loader)
            per_epoch = max(math.ceil(batches / gas), 1)
            max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * per_epoch)
            epochs = math.ceil(max_steps / per_epoch) if args.max_steps > 0 else math.ceil(args.num_train_epochs)
        elif args.max_steps > 0:
            per_epoch, max_steps, epochs, batches = args.max_steps, args.max_steps, sys.maxsize, args.max_steps * gas
        else:
            raise ValueError("the training dataset has no length: set max_steps to say how long to train")
        self.state = TrainerState(train_batch_size=args.train_batch_size)
        self.state.compute_steps(args, max_steps)
        epochs_done = skip_batches = 0
        if resume:
            self.state = TrainerState.load_from_json(os.path.join(resume, ckpt.STATE))
            epochs_done = self.state.global_step // per_epoch
            skip_batches = (self.state.global_step % per_epoch) * gas
            ckpt.load_model_weights(self.model, resume)
        self.state.max_steps, self.state.num_train_epochs = max_steps, epochs
        self.create_optimizer_and_scheduler(max_steps)
        if resume:
            ckpt.load_training_state(resume, self.optimizer, self.lr_scheduler, args.device)
        self.callback_handler.refs["train_dataloader"] = loader
        self._tr_loss = torch.tensor(0.0, device=args.device)
        self._total_loss, self._first_step, self._last_logged = 0.0, self.state.global_step, self.state.global_step
        start = time.time()
        self.model.zero_grad()
        self.control = self._call("on_train_begin")
        if args.eval_on_start:
            self._evaluate()
        for epoch in range(epochs_done, epochs):
            self.control = self._call("on_epoch_begin")
            self._run_epoch(loader, epoch, batches, per_epoch, resume if epoch == epochs_done else None, skip_batches)
            if self.control.should_training_stop:
                break
        return self._finish(start)

    def _run_epoch(self, loader: Any, epoch: int, batches: int, per_epoch: int, resume: str | None,
                   skip: int) -> None:
        gas = self.args.gradient_accumulation_steps
        if isinstance(loader.sampler, EpochSampler):
            loader.sampler.set_epoch(epoch)
        remainder = batches % gas or gas
        it = iter(loader)
        step, grad_norm, lr = -1, None, None
        if resume:
            for _ in range(skip):
                next(it)
            step = skip - 1
            ckpt.load_rng_state(resume)
        for inputs in it:
            step += 1
            group = gas if step < (per_epoch - 1) * gas else remainder
            sync = (step + 1) % gas == 0 or step + 1 == batches
            if step % gas == 0:
                self.control = self._call("on_step_begin")
            self._tr_loss += self.training_step(self.model, inputs, group)
            if sync:
                grad_norm, lr = self._optimizer_step()
                self.state.global_step += 1
                self.state.epoch = epoch + (step + 1) / batches
                self.control = self._call("on_step_end")
                self._maybe_log_save_evaluate(grad_norm, lr)
            else:
                self.control = self._call("on_substep_end")
            if self.control.should_epoch_stop or self.control.should_training_stop:
                break
        if step < 0:
            self.control.should_training_stop = True
        self.control = self._call("on_epoch_end")
        self._maybe_log_save_evaluate(grad_norm, lr)

    def _optimizer_step(self) -> tuple[torch.Tensor, float]:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.args.max_grad_norm if self.args.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.control = self._call("on_pre_optimizer_step")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.control = self._call("on_optimizer_step")
        lr = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()
        self.model.zero_grad()
        return grad_norm, float(lr)

    def _maybe_log_save_evaluate(self, grad_norm: torch.Tensor | None, lr: float | None) -> None:
        if self.control.should_log and self.state.global_step > self._last_logged:
            loss = self._tr_loss.item()
            self._tr_loss -= self._tr_loss
            logs: dict[str, float] = {"loss": loss / (self.state.global_step - self._last_logged)}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm.item()
            logs["learning_rate"] = lr if lr is not None else self.lr_scheduler.get_last_lr()[0]
            self._total_loss += loss
            self._last_logged = self.state.global_step
            self.log(logs)
        new_best = False
        if self.control.should_evaluate:
            new_best = self._evaluate()
            if self.args.save_strategy == "best":
                self.control.should_save = new_best
        if self.control.should_save:
            self._save_checkpoint()
            self.control = self._call("on_save")

    def _evaluate(self) -> bool:
        """Evaluate, record the best metric; whether this evaluation is the best so far."""
        metrics = self.evaluate()
        name = self.args.metric_for_best_model
        if name is None:
            return False
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise KeyError(f"metric_for_best_model={name!r} is not among the evaluation's metrics {sorted(metrics)}")
        value, best = metrics[key], self.state.best_metric
        if best is None or (value > best if self.args.greater_is_better else value < best):
            self.state.best_metric, self.state.best_global_step = value, self.state.global_step
            return True
        return False

    def _finish(self, start: float) -> TrainOutput:
        self._total_loss += self._tr_loss.item()
        steps = self.state.global_step - self._first_step
        train_loss = self._total_loss / max(steps, 0.001)
        runtime = time.time() - start
        samples = self.args.train_batch_size * self.args.gradient_accumulation_steps * steps
        metrics = {"train_runtime": round(runtime, 4), "train_samples_per_second": round(samples / runtime, 3),
                   "train_steps_per_second": round(steps / runtime, 3), "total_flos": self.state.total_flos,
                   "train_loss": train_loss}
        self.log(metrics)
        best = self.state.best_model_checkpoint
        if self.args.load_best_model_at_end and best is not None:
            ckpt.load_model_weights(self.model, best)
        if self.args.save_total_limit == 1 and best is not None:
            for path in ckpt.sorted_checkpoints(self.args.output_dir):
                if os.path.abspath(path) != os.path.abspath(best):
                    ckpt.shutil.rmtree(path, ignore_errors=True)
        self.control = self._call("on_train_end")
        return TrainOutput(self.state.global_step, train_loss, metrics)

    def log(self, logs: dict[str, float]) -> None:
        """Add the epoch, record in state.log_history (with the step) and tell the callbacks."""
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self._call("on_log", logs=logs)

    # -- evaluation -------------------------------------------------------------------------------------
    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Loss (and `compute_metrics`) over the evaluation set; logged, and passed to on_evaluate."""
        out = self._prediction_loop(self.get_eval_dataloader(eval_dataset), metric_key_prefix, ignore_keys)
        self.log(dict(out.metrics))
        self.control = self._call("on_evaluate", metrics=out.metrics)
        return out.metrics

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """Predictions (logits as NumPy), labels if the set has them, and metrics."""
        out = self._prediction_loop(self.get_eval_dataloader(test_dataset, "test"), metric_key_prefix, ignore_keys)
        self.control = self._call("on_predict", metrics=out.metrics)
        return out

    def _prediction_loop(self, loader: Any, prefix: str, ignore_keys: list[str] | None) -> PredictionOutput:
        model, start = self.model, time.time()
        model.eval()
        losses, preds, labels, n, batches = [], [], [], 0, 0
        with torch.no_grad(), self.autocast():
            for inputs in loader:
                inputs = self._to_device(inputs)
                outputs = model(**inputs)
                size = len(next(iter(inputs.values())))
                n, batches = n + size, batches + 1
                fields = _fields(outputs)
                if fields.get("loss") is not None:
                    losses.append(fields["loss"].float().repeat(size))
                skip = {"loss", "hidden_states", "attentions", *(ignore_keys or [])}
                logits = [v for k, v in fields.items() if k not in skip and isinstance(v, torch.Tensor)]
                preds.append(logits[0] if len(logits) == 1 else tuple(logits))
                batch_labels = [inputs[k] for k in self.label_names if k in inputs]
                if batch_labels:
                    labels.append(batch_labels[0] if len(batch_labels) == 1 else tuple(batch_labels))
                self._call("on_prediction_step")
        predictions = _concat(preds)
        label_ids = _concat(labels) if labels else None
        metrics: dict[str, float] = {}
        if self.compute_metrics is not None and label_ids is not None:
            metrics = dict(self.compute_metrics(EvalPrediction(predictions, label_ids)))
        if losses:
            metrics["loss"] = torch.cat(losses).mean().item()
        runtime = time.time() - start
        metrics.update(runtime=round(runtime, 4), samples_per_second=round(n / runtime, 3),
                       steps_per_second=round(batches / runtime, 3))
        metrics = {k if k.startswith(f"{prefix}_") else f"{prefix}_{k}": _plain(v) for k, v in metrics.items()}
        return PredictionOutput(predictions, label_ids, metrics)

    # -- saving -----------------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Weights + config (and the tokenizer's files) into `output_dir` (default args.output_dir); with
        push_to_hub, also commits them."""
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.model.save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        with open(os.path.join(output_dir, ckpt.ARGS), "w", encoding="utf-8") as f:
            f.write(self.args.to_json_string() + "\n")
        if self.args.push_to_hub and not _internal_call:
            from .publish import push_folder

            push_folder(self, commit_message="Model save")

    def _save_checkpoint(self) -> None:
        folder = os.path.join(self.args.output_dir, f"{ckpt.PREFIX}-{self.state.global_step}")
        self.save_model(folder, _internal_call=True)
        if not self.args.save_only_model:
            ckpt.save_training_state(folder, self.optimizer, self.lr_scheduler)
            ckpt.save_rng_state(folder)
        if self.state.best_global_step == self.state.global_step:
            self.state.best_model_checkpoint = folder
        self.state.stateful_callbacks = {type(cb).__name__: cb.state() for cb in
                                         [*self.callback_handler.callbacks, self.control] if hasattr(cb, "state")}
        self.state.save_to_json(os.path.join(folder, ckpt.STATE))
        ckpt.rotate(self.args.output_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        if self.args.push_to_hub and self.args.hub_strategy != "end":
            from .publish import push_checkpoint

            push_checkpoint(self, folder)

    # -- publishing (see publish.py) --------------------------------------------------------------------
    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        from .publish import init_repo

        self.hub_model_id = init_repo(self, token=token, private=private)

    def create_model_card(self, **kwargs: Any) -> str:
        """Write output_dir/README.md from the run (see haven.training.card); returns its text."""
        from .card import write_model_card

        return write_model_card(self, **kwargs)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, **card_kwargs: Any) -> Any:
        """Save the model, write the model card, and commit output_dir (runs/ included, checkpoints not).
        `card_kwargs` are `create_model_card`'s: model_name, language, license, tags, finetuned_from,
        tasks, dataset_tags, dataset, dataset_args. Returns the CommitInfo."""
        from .publish import push_to_hub

        if not blocking:
            raise NotImplementedError("push_to_hub(blocking=False) is not supported: Haven commits synchronously")

        return push_to_hub(self, commit_message=commit_message, token=token, revision=revision, **card_kwargs)


def _concat(parts: list[Any]) -> Any:
    """Batches -> one NumPy array (sequences padded with -100 to the longest), or a tuple of them."""
    if not parts:
        return None
    if isinstance(parts[0], tuple):
        return tuple(_concat([p[i] for p in parts]) for i in range(len(parts[0])))
    tensors = [p.detach().float().cpu() if p.is_floating_point() else p.detach().cpu() for p in parts]
    if tensors[0].dim() > 1 and len({t.shape[1] for t in tensors}) > 1:
        width = max(t.shape[1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]), value=-100)
                   for t in tensors]
    return torch.cat(tensors).numpy()


def _fields(outputs: Any) -> dict[str, Any]:
    """A model output (Haven's or the reference's ModelOutput, or a dict) as a dict of its set fields."""
    if hasattr(outputs, "items"):
        return dict(outputs.items())
    raise TypeError(f"the model returned a {type(outputs).__name__}; the Trainer needs a ModelOutput or a dict "
                    "(call it with return_dict=True)")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    return value

