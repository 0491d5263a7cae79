"""It learns: a tiny BERT fine-tuned on the synthetic pair task (same words reordered, or not?) goes from
chance to well above it in a few seconds, through the public API (tokenizer as processing_class, so
DataCollatorWithPadding pads; the `text` column is dropped as unused; `label` becomes `labels`)."""

from __future__ import annotations

import numpy as np

import haven
from training.pairs import make_pairs


def accuracy(pred: haven.EvalPrediction) -> dict[str, float]:
    logits, labels = pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def test_fine_tuning_raises_accuracy_well_above_chance(tiny_pair_bert, tmp_path):
    model = haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert)
    tokenizer = haven.AutoTokenizer.from_pretrained(tiny_pair_bert)
    args = haven.TrainingArguments(
        str(tmp_path / "out"), learning_rate=3e-3, per_device_train_batch_size=16, num_train_epochs=8,
        warmup_steps=0.1, weight_decay=0.01, eval_strategy="epoch", save_strategy="no", logging_strategy="epoch",
        disable_tqdm=True, seed=3,
    )
    trainer = haven.Trainer(model, args, train_dataset=make_pairs(320, 10, words=8, lengths=(2, 3)),
                            eval_dataset=make_pairs(100, 11, words=8, lengths=(2, 3)), processing_class=tokenizer,
                            compute_metrics=accuracy)
    before = trainer.evaluate()["eval_accuracy"]
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_accuracy"] >= 0.8, (before, after)
    assert after["eval_accuracy"] > before + 0.25
    evals = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    assert [e["epoch"] for e in evals[:8]] == [float(i) for i in range(1, 9)]  # one evaluation per epoch
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    predictions = trainer.predict(make_pairs(20, 12, words=8, lengths=(2, 3)))
    assert predictions.predictions.shape == (20, 2) and predictions.label_ids.shape == (20,)
    assert set(predictions.metrics) >= {"test_loss", "test_accuracy", "test_runtime"}
