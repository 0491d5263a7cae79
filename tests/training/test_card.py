"""The card a run writes without a server: a run with no evaluation still gets a valid card (no results
table, an empty model-index), the metadata reads back with huggingface_hub's own card parser, and a local
base model path is not written as base_model (only a hub id is)."""

from __future__ import annotations

import pytest

import haven
from haven.hub.card import validate_card_data
from training.pairs import make_pairs, pad_collate


def test_card_of_a_run_without_evaluation(tiny_pair_bert, tmp_path):
    from huggingface_hub import ModelCard

    args = haven.TrainingArguments(str(tmp_path / "no-eval"), max_steps=2, save_strategy="no", disable_tqdm=True)
    trainer = haven.Trainer(haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert), args,
                            train_dataset=make_pairs(8, 1), data_collator=pad_collate)
    trainer.train()
    text = trainer.create_model_card(tags="pairs", language="en")
    assert (tmp_path / "no-eval" / "README.md").read_text() == text
    card = ModelCard(text)
    meta = card.data.to_dict()
    assert validate_card_data(meta) == []
    assert meta["model-index"] == [{"name": "no-eval", "results": []}]
    assert meta["tags"] == ["haven", "generated_from_trainer", "pairs"] and meta["language"] == "en"
    assert "base_model" not in meta  # the model came from a local folder
    assert "### Training results" not in card.text and "- training_steps: 2" in card.text
    assert "More information needed" in card.text
    with pytest.raises(NotImplementedError, match="synchronously"):
        trainer.push_to_hub(blocking=False)
    with pytest.raises(TypeError):
        trainer.create_model_card(licence="mit")  # misspelt: refused, not ignored
