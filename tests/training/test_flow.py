"""The loop's flow against the reference Trainer on the same short runs: the callback events in order,
evaluation/saving by steps with save_total_limit and load_best_model_at_end (same checkpoints kept, same
best one), and EarlyStoppingCallback stopping at the same step."""

from __future__ import annotations

import os

import pytest

import haven
from haven.training.callbacks import EVENTS
from training.pairs import make_pairs, pad_collate

DATA, EVAL = make_pairs(24, seed=21), make_pairs(8, seed=22)
COMMON = dict(per_device_train_batch_size=4, gradient_accumulation_steps=2, learning_rate=2e-3, logging_steps=1,
              train_sampling_strategy="sequential", disable_tqdm=True, report_to="none", seed=5)


def recorder(base):
    """A callback class (on `base`) that records every event it receives."""
    import transformers

    events = EVENTS
    assert set(events) == {n for n in dir(transformers.TrainerCallback) if n.startswith("on_")}

    def make(name):
        def handler(self, args, state, control, **kwargs):
            self.seen.append((name, state.global_step))
        return handler

    cls = type("Recorder", (base,), {name: make(name) for name in events})
    cls.__init__ = lambda self: setattr(self, "seen", [])
    return cls()


def both(tiny_pair_bert, tmp_path, callbacks=lambda lib: [], **kwargs):
    import transformers

    ref_cbs, our_cbs = callbacks(transformers), callbacks(haven)
    ref = transformers.Trainer(
        transformers.BertForSequenceClassification.from_pretrained(tiny_pair_bert),
        transformers.TrainingArguments(str(tmp_path / "ref"), use_cpu=True, **COMMON, **kwargs),
        data_collator=pad_collate, train_dataset=DATA, eval_dataset=EVAL, callbacks=ref_cbs)
    ref.loss_is_scaled_for_ga = False  # see test_parity
    ref.train()
    ours = haven.Trainer(
        haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert),
        haven.TrainingArguments(str(tmp_path / "ours"), **COMMON, **kwargs),
        data_collator=pad_collate, train_dataset=DATA, eval_dataset=EVAL, callbacks=our_cbs)
    ours.train()
    return ref, ours, ref_cbs, our_cbs


def test_callback_events_arrive_in_the_reference_order(tiny_pair_bert, tmp_path):
    ref, ours, (ref_rec,), (our_rec,) = both(
        tiny_pair_bert, tmp_path, lambda lib: [recorder(lib.TrainerCallback)],
        max_steps=4, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=3)
    assert our_rec.seen == ref_rec.seen
    assert ("on_save", 3) in our_rec.seen and ("on_evaluate", 4) in our_rec.seen


def test_strategies_checkpoints_and_best_model_match_the_reference(tiny_pair_bert, tmp_path):
    ref, ours, _, _ = both(tiny_pair_bert, tmp_path, num_train_epochs=3, eval_strategy="steps", eval_steps=2,
                           save_strategy="steps", save_steps=2, save_total_limit=2, load_best_model_at_end=True,
                           metric_for_best_model="loss", greater_is_better=True)  # "best" = highest loss: early
    assert sorted(os.listdir(tmp_path / "ours")) == sorted(n for n in os.listdir(tmp_path / "ref")
                                                            if n.startswith("checkpoint-"))
    assert os.path.basename(ours.state.best_model_checkpoint) == os.path.basename(ref.state.best_model_checkpoint)
    assert ours.state.best_global_step == ref.state.best_global_step < ours.state.global_step
    assert ours.state.best_metric == pytest.approx(ref.state.best_metric, abs=1e-5)
    ours_keys = [sorted(k for k in e if "runtime" not in k and "per_second" not in k) for e in ours.state.log_history]
    ref_keys = [sorted(k for k in e if "runtime" not in k and "per_second" not in k and k != "total_flos")
                for e in ref.state.log_history]
    assert [[k for k in keys if k != "total_flos"] for keys in ours_keys] == ref_keys
    # load_best_model_at_end: the model now holds the best checkpoint's weights, as the reference's does
    ref_w = ref.model.classifier.weight.detach()
    assert (ours.model.classifier.weight.detach() - ref_w).abs().max().item() < 1e-4


def test_early_stopping_stops_where_the_reference_stops(tiny_pair_bert, tmp_path):
    ref, ours, _, _ = both(
        tiny_pair_bert, tmp_path, lambda lib: [lib.EarlyStoppingCallback(early_stopping_patience=2)],
        num_train_epochs=5, eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1,
        metric_for_best_model="loss", greater_is_better=True, load_best_model_at_end=True)
    assert ours.state.global_step == ref.state.global_step < ours.state.max_steps
