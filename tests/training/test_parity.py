"""The Trainer against the reference library's Trainer: same tiny BERT, same data in the same order
(train_sampling_strategy="sequential"), dropout off, AdamW with weight decay, linear warmup, gradient
accumulation 2 (with a short last group each epoch) and clipping. The logged losses, gradient norms and
learning rates agree for 20 steps, and so do the final weights."""

from __future__ import annotations

import time

import pytest

from training.pairs import make_pairs, pad_collate

ARGS = dict(
    per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=20, learning_rate=2e-3,
    warmup_steps=5, weight_decay=0.1, max_grad_norm=0.03, logging_steps=1, save_strategy="no", report_to="none",
    train_sampling_strategy="sequential", disable_tqdm=True, seed=7,
)


def test_losses_and_weights_match_the_reference(tiny_pair_bert, tmp_path):
    import transformers

    import haven

    data = make_pairs(44, seed=1)  # 11 batches of 4: per epoch 5 groups of 2 and one of 1
    ref_model = transformers.BertForSequenceClassification.from_pretrained(tiny_pair_bert)
    ref = transformers.Trainer(ref_model, transformers.TrainingArguments(str(tmp_path / "ref"), use_cpu=True, **ARGS),
                               data_collator=pad_collate, train_dataset=data)
    # BERT's forward takes **kwargs there, so the reference assumes the model scales the loss for accumulation
    # (it does not: its loss is a per-batch mean). Its documented switch says so, and it then averages.
    ref.loss_is_scaled_for_ga = False
    t0 = time.perf_counter()
    ref.train()
    t1 = time.perf_counter()
    ours_model = haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert)
    ours = haven.Trainer(ours_model, haven.TrainingArguments(str(tmp_path / "ours"), **ARGS),
                         data_collator=pad_collate, train_dataset=data)
    ours.train()
    print(f"reference {t1 - t0:.2f}s, haven {time.perf_counter() - t1:.2f}s")

    ref_logs = [e for e in ref.state.log_history if "loss" in e]
    our_logs = [e for e in ours.state.log_history if "loss" in e]
    assert len(ref_logs) == len(our_logs) == 20
    for r, o in zip(ref_logs, our_logs):
        assert set(o) == {"loss", "grad_norm", "learning_rate", "epoch", "step"} == set(r)
        assert o["step"] == r["step"] and o["epoch"] == pytest.approx(r["epoch"], abs=1e-9)
        assert o["learning_rate"] == pytest.approx(r["learning_rate"], rel=1e-9, abs=1e-12)
        assert abs(o["loss"] - r["loss"]) < 1e-4, (o, r)
        assert abs(o["grad_norm"] - r["grad_norm"]) < 1e-4, (o, r)
    assert any(r["grad_norm"] > ARGS["max_grad_norm"] for r in ref_logs)  # clipping did engage
    assert our_logs[-1]["loss"] < our_logs[0]["loss"]
    final_ref = [e for e in ref.state.log_history if "train_loss" in e][0]["train_loss"]
    final_ours = [e for e in ours.state.log_history if "train_loss" in e][0]["train_loss"]
    assert abs(final_ref - final_ours) < 1e-4

    ref_state = ref_model.state_dict()
    ours_state = ours_model.state_dict()
    assert set(ours_state) <= set(ref_state)
    worst = max((ours_state[k] - ref_state[k]).abs().max().item() for k in ours_state)
    assert worst < 1e-4
    moved = max((ours_state[k] - v).abs().max().item() for k, v in
                transformers.BertForSequenceClassification.from_pretrained(tiny_pair_bert).state_dict().items()
                if k in ours_state)
    assert moved > 1e-2  # the weights did train
