"""Publishing against a live `haven serve`: `push_to_hub=True` commits each save (hub_strategy every_save /
checkpoint), and `trainer.push_to_hub()` the model, tokenizer, TensorBoard runs/ and a model card that
writes itself. Checked with the real `huggingface_hub` client: the hub validates the card, model_info
shows the model-index results, list_models(filter="dataset:...") finds the model, and the event files
read back (tensorboard's own reader) with the logged losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import haven
from fixtures.server import unique_name
from training.pairs import make_pairs


def accuracy(pred: haven.EvalPrediction) -> dict[str, float]:
    logits, labels = pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


@pytest.fixture()
def hub_user(hub_server, monkeypatch):
    user = unique_name("trainer")
    token = hub_server.create_user(user)
    monkeypatch.setenv("HAVEN_ENDPOINT", hub_server.url)
    monkeypatch.delenv("HAVEN_TOKEN", raising=False)
    return user, token


def test_push_to_hub_publishes_model_card_and_runs(tiny_pair_bert, tmp_path, hub_server, hub_user, monkeypatch):
    from huggingface_hub import HfApi, ModelCard, hf_hub_download
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    user, token = hub_user
    name = unique_name("pair-bert")
    args = haven.TrainingArguments(
        str(tmp_path / name), learning_rate=3e-3, per_device_train_batch_size=16, num_train_epochs=2,
        eval_strategy="epoch", save_strategy="epoch", logging_steps=5, report_to="tensorboard", disable_tqdm=True,
        push_to_hub=True, hub_token=token, hub_strategy="checkpoint", hub_private_repo=False, save_total_limit=1)
    trainer = haven.Trainer(
        haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert), args,
        train_dataset=make_pairs(96, 1, words=8, lengths=(2, 3)), eval_dataset=make_pairs(32, 2, words=8, lengths=(2, 3)),
        processing_class=haven.AutoTokenizer.from_pretrained(tiny_pair_bert), compute_metrics=accuracy)
    repo_id = f"{user}/{name}"
    assert trainer.hub_model_id == repo_id  # created at init, in the token's namespace
    trainer.train()
    api = HfApi(endpoint=hub_server.url, token=token)
    commits = [c.title for c in api.list_repo_commits(repo_id)]
    assert "Training in progress, epoch 1" in commits and "Training in progress, epoch 2" in commits
    files = set(api.list_repo_files(repo_id))
    assert {"last-checkpoint/optimizer.pt", "last-checkpoint/trainer_state.json"} <= files

    dataset = unique_name("synthetic-pairs")
    trainer.push_to_hub(commit_message="Fine-tuned", dataset_tags=dataset, dataset="Synthetic pairs", license="mit")
    files = set(api.list_repo_files(repo_id))
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "training_args.json"} <= files
    assert not any(f.startswith("checkpoint-") for f in files)
    events = [f for f in files if f.startswith("runs/") and "tfevents" in f]
    assert events

    final = trainer.evaluate()
    info = api.model_info(repo_id)
    (result,) = info.card_data.eval_results  # the client's reading of the card's model-index
    assert (result.dataset_type, result.dataset_name) == (dataset, "Synthetic pairs")
    assert (result.task_type, result.metric_type) == ("text-classification", "accuracy")
    assert result.metric_value == pytest.approx(final["eval_accuracy"])
    assert info.card_data["license"] == "mit" and info.card_data["datasets"] == [dataset]
    assert f"dataset:{dataset}" in info.tags and "generated_from_trainer" in info.tags
    assert [m.id for m in api.list_models(filter=f"dataset:{dataset}")] == [repo_id]

    (event_file,) = events
    local = hf_hub_download(repo_id, event_file, cache_dir=str(tmp_path / "cache"), endpoint=hub_server.url,
                            token=token)
    accumulator = EventAccumulator(local)
    accumulator.Reload()
    losses = [(s.step, s.value) for s in accumulator.Scalars("train/loss")]
    logged = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    assert [s for s, _ in losses] == [s for s, _ in logged]
    assert [v for _, v in losses] == pytest.approx([v for _, v in logged], rel=1e-6)
    assert "eval/accuracy" in accumulator.Tags()["scalars"]

    card = ModelCard.load(hf_hub_download(repo_id, "README.md", cache_dir=str(tmp_path / "cache"),
                                          endpoint=hub_server.url, token=token))
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub_server.url)
    card.validate()  # the hub's /api/validate-yaml, through the real client
    text = card.text
    for section in ("## Model description", "## Intended uses & limitations", "## Training and evaluation data",
                    "### Training hyperparameters", "### Training results", "### Framework versions"):
        assert section in text
    assert "- learning_rate: 0.003" in text and "- num_epochs: 2" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Training Loss | Epoch | Step | Validation Loss | Accuracy")
    assert len(table) == 1 + 2  # header + one row per evaluation
    assert f"PyTorch {__import__('torch').__version__}" in text


def test_private_repo_and_end_strategy(tiny_pair_bert, tmp_path, hub_server, hub_user):
    from huggingface_hub import HfApi

    user, token = hub_user
    name = unique_name("private-bert")
    args = haven.TrainingArguments(str(tmp_path / "out"), hub_model_id=name, max_steps=2, save_steps=1,
                                   disable_tqdm=True, push_to_hub=True, hub_token=token, hub_strategy="end",
                                   hub_private_repo=True)
    trainer = haven.Trainer(haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert), args,
                            train_dataset=make_pairs(8, 3),
                            tokenizer=haven.AutoTokenizer.from_pretrained(tiny_pair_bert))  # the older name
    trainer.train()
    api = HfApi(endpoint=hub_server.url, token=token)
    assert api.model_info(f"{user}/{name}").private
    assert [c.title for c in api.list_repo_commits(f"{user}/{name}")] == ["initial commit"]  # "end": nothing yet
    trainer.push_to_hub()
    assert {"model.safetensors", "tokenizer.json"} <= set(api.list_repo_files(f"{user}/{name}"))
    assert not HfApi(endpoint=hub_server.url, token=False).repo_exists(f"{user}/{name}")


def test_every_save_strategy_and_save_model(tiny_pair_bert, tmp_path, hub_server, hub_user):
    from huggingface_hub import HfApi

    user, token = hub_user
    name = unique_name("every-save")
    args = haven.TrainingArguments(str(tmp_path / name), max_steps=2, save_steps=1, disable_tqdm=True,
                                   push_to_hub=True, hub_token=token)  # hub_strategy defaults to every_save
    trainer = haven.Trainer(haven.AutoModelForSequenceClassification.from_pretrained(tiny_pair_bert), args,
                            train_dataset=make_pairs(8, 3), processing_class=haven.AutoTokenizer.from_pretrained(
                                tiny_pair_bert))
    trainer.train()
    with torch.no_grad():
        trainer.model.classifier.bias += 1  # a change to save (an unchanged folder makes no commit)
    trainer.save_model()  # with push_to_hub, a save is a commit too
    api = HfApi(endpoint=hub_server.url, token=token)
    titles = [c.title for c in api.list_repo_commits(f"{user}/{name}")]
    assert titles[:3] == ["Model save", "Training in progress, step 2", "Training in progress, step 1"]
    files = api.list_repo_files(f"{user}/{name}")
    assert "model.safetensors" in files and not any(f.startswith(("last-checkpoint/", "checkpoint-")) for f in files)
