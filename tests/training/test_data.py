"""Data in: sequences and iterables of dicts, a `datasets.Dataset` look-alike (duck typed: the library is
not installed), DataCollatorWithPadding equal to the reference's, unused columns dropped as the reference
drops them; bf16 autocast on CPU; the progress bar and disable_tqdm; bad input that says what to do."""

from __future__ import annotations

import pytest
import torch

import haven
from haven.training.collators import default_data_collator
from training.pairs import make_pairs, pad_collate


class KeyRecorder:
    """A collator that notes the keys it is given, then pads."""

    def __init__(self):
        self.keys: set[str] = set()

    def __call__(self, features):
        self.keys |= {k for f in features for k in f}
        return pad_collate(features)


def tiny_trainer(path, tmp_path, data, **kwargs):
    collator = kwargs.pop("data_collator", pad_collate)
    args = haven.TrainingArguments(str(tmp_path / "out"), per_device_train_batch_size=4, save_strategy="no",
                                   disable_tqdm=kwargs.pop("disable_tqdm", True), **kwargs)
    return haven.Trainer(haven.AutoModelForSequenceClassification.from_pretrained(path), args, train_dataset=data,
                         data_collator=collator)


def test_collator_with_padding_equals_the_reference(tiny_pair_bert):
    import transformers

    features = [{k: v for k, v in f.items() if k != "text"} for f in make_pairs(5, seed=3)]
    ours = haven.DataCollatorWithPadding(haven.AutoTokenizer.from_pretrained(tiny_pair_bert), pad_to_multiple_of=8)
    ref = transformers.DataCollatorWithPadding(transformers.AutoTokenizer.from_pretrained(tiny_pair_bert),
                                               pad_to_multiple_of=8)
    a, b = ours(features), ref(features)
    assert set(a) == set(b) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_unused_columns_are_dropped_as_the_reference_drops_them(tiny_pair_bert, tmp_path):
    import transformers

    data = [{**f, "source": "synthetic", "idx": i} for i, f in enumerate(make_pairs(8, seed=4))]
    ours, theirs = KeyRecorder(), KeyRecorder()
    tiny_trainer(tiny_pair_bert, tmp_path, data, data_collator=ours, max_steps=1).train()
    transformers.Trainer(
        transformers.BertForSequenceClassification.from_pretrained(tiny_pair_bert),
        transformers.TrainingArguments(str(tmp_path / "ref"), max_steps=1, per_device_train_batch_size=4,
                                       report_to="none", save_strategy="no", use_cpu=True),
        train_dataset=data, data_collator=theirs).train()
    assert ours.keys == theirs.keys == {"input_ids", "token_type_ids", "attention_mask", "label"}


class LookAlikeDataset:
    """What the Trainer uses of a 🤗 datasets.Dataset: len, integer indexing to a dict, column_names."""

    def __init__(self, rows):
        self.rows = rows
        self.column_names = list(rows[0])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return dict(self.rows[i])


class Stream:
    """A re-iterable stream of examples with no length."""

    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return iter(self.rows)


def test_datasets_look_alike_and_iterables_train(tiny_pair_bert, tmp_path):
    rows = make_pairs(12, seed=6)
    trainer = tiny_trainer(tiny_pair_bert, tmp_path, LookAlikeDataset(rows), num_train_epochs=1)
    assert trainer.train().global_step == 3
    streamed = tiny_trainer(tiny_pair_bert, tmp_path, Stream(rows), max_steps=5)  # wraps around the stream
    assert streamed.train().global_step == 5
    with pytest.raises(ValueError, match="set max_steps"):
        tiny_trainer(tiny_pair_bert, tmp_path, Stream(rows)).train()


def test_bf16_autocast_on_cpu(tiny_pair_bert, tmp_path):
    trainer = tiny_trainer(tiny_pair_bert, tmp_path, make_pairs(8, seed=7), max_steps=2, bf16=True, logging_steps=1)
    dtypes = []
    trainer.model.classifier.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    trainer.train()
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert trainer.model.classifier.weight.dtype == torch.float32  # weights stay fp32
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)


def test_progress_bar_and_disable_tqdm(tiny_pair_bert, tmp_path, capfd):
    tiny_trainer(tiny_pair_bert, tmp_path, make_pairs(8, seed=8), max_steps=2, disable_tqdm=False).train()
    assert "2/2" in capfd.readouterr().err
    tiny_trainer(tiny_pair_bert, tmp_path, make_pairs(8, seed=8), max_steps=2, disable_tqdm=True).train()
    assert "2/2" not in capfd.readouterr().err


def test_bad_input_says_what_to_do(tiny_pair_bert, tmp_path):
    no_labels = [{k: v for k, v in f.items() if k != "label"} for f in make_pairs(4, seed=9)]
    trainer = tiny_trainer(tiny_pair_bert, tmp_path, no_labels, max_steps=1,
                           data_collator=lambda fs: {"input_ids": pad_collate([{**f, "label": 0} for f in fs])["input_ids"]})
    with pytest.raises(ValueError, match="returned no loss"):
        trainer.train()
    with pytest.raises(TypeError, match="must hold dicts"):
        tiny_trainer(tiny_pair_bert, tmp_path, [[1, 2, 3]] * 4, max_steps=1).train()
    with pytest.raises(ValueError, match="different lengths; pad them"):
        default_data_collator([{"input_ids": [1, 2]}, {"input_ids": [1]}])
    with pytest.raises(TypeError, match="unsupported argument"):
        trainer.train(trial={"lr": 1})
    with pytest.raises(ValueError, match="pass an eval_dataset"):
        tiny_trainer(tiny_pair_bert, tmp_path, make_pairs(4, seed=9), eval_strategy="epoch")


def test_a_second_train_call_gets_a_new_schedule(tiny_pair_bert, tmp_path):
    trainer = tiny_trainer(tiny_pair_bert, tmp_path, make_pairs(8, seed=10), max_steps=2, logging_steps=1,
                           warmup_steps=1, learning_rate=1e-3)
    first = [e["learning_rate"] for e in (trainer.train(), trainer.state.log_history)[1] if "loss" in e]
    second = [e["learning_rate"] for e in (trainer.train(), trainer.state.log_history)[1] if "loss" in e]
    assert first == second == [0.0, 1e-3]  # warmup from 0, then the peak: the schedule starts over
