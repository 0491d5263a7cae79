"""Resuming: a run stopped at a checkpoint and resumed (resume_from_checkpoint=True, or a path) ends with
the same weights and the same logged losses as the run that was never interrupted. Dropout is on and
the sampler shuffles, so the RNG states and the epoch's data order must come back too."""

from __future__ import annotations

import json
import os

import pytest

import haven
from training.pairs import make_pairs

DATA = make_pairs(44, seed=5)  # 11 batches of 4, accumulation 2: 6 optimizer steps per epoch


class StopAt(haven.TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def run(path: str, out, resume=None, callbacks=()) -> haven.Trainer:
    model = haven.AutoModelForSequenceClassification.from_pretrained(path, hidden_dropout_prob=0.1)
    args = haven.TrainingArguments(
        str(out), per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=12, save_steps=4,
        logging_steps=1, learning_rate=1e-3, warmup_steps=2, disable_tqdm=True, seed=11)
    trainer = haven.Trainer(model, args, train_dataset=DATA, processing_class=haven.AutoTokenizer.from_pretrained(path),
                            callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def losses(trainer: haven.Trainer) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}


@pytest.mark.parametrize("how", ["latest", "path"])
def test_resumed_run_equals_uninterrupted_run(tiny_pair_bert, tmp_path, how):
    full = run(tiny_pair_bert, tmp_path / "full")
    stop = 4 if how == "latest" else 8  # mid-epoch 1, and mid-epoch 2
    run(tiny_pair_bert, tmp_path / "cut", callbacks=[StopAt(stop)])
    folder = tmp_path / "cut" / f"checkpoint-{stop}"
    assert sorted(os.listdir(tmp_path / "cut")) == [f"checkpoint-{s}" for s in range(4, stop + 1, 4)]
    assert {"model.safetensors", "config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth",
            "trainer_state.json", "training_args.json", "tokenizer.json"} <= set(os.listdir(folder))
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["global_step"] == stop and state["max_steps"] == 12
    assert [e["step"] for e in state["log_history"] if "loss" in e] == list(range(1, stop + 1))

    resumed = run(tiny_pair_bert, tmp_path / "cut", resume=True if how == "latest" else str(folder))
    assert resumed.state.global_step == 12
    assert losses(resumed) == pytest.approx(losses(full), abs=1e-6)
    ours, theirs = resumed.model.state_dict(), full.model.state_dict()
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) < 1e-6
    assert resumed.model.config.hidden_dropout_prob == 0.1


def test_resume_without_checkpoint_says_what_to_do(tiny_pair_bert, tmp_path):
    with pytest.raises(ValueError, match="no checkpoint-<step> folder"):
        run(tiny_pair_bert, tmp_path / "empty", resume=True)
