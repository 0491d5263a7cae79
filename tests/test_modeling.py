"""PreTrainedModel loading and saving, exercised with the encoder families.

Everything is checked against the reference library: checkpoints it saved load in Haven with
identical outputs, and checkpoints Haven saves load in the reference with identical outputs.
"""

from __future__ import annotations

import json
import logging
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures.encoders import TEXTS, assert_close, build_reference_model, load_both, run_both
from haven import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification
from haven.auto import class_for_architecture
from haven.errors import CheckpointError, ConfigError, UnknownArchitectureError
from haven.models.bert import BertForMaskedLM, BertForSequenceClassification, BertModel, BertPreTrainedModel
from haven.models.distilbert import DistilBertForTokenClassification
from haven.models.roberta import CamembertForSequenceClassification


def _reference(path, arch="bert", head="masked_lm"):
    import transformers

    from fixtures.encoders import reference_class

    return reference_class(arch, head).from_pretrained(
        path
    ).eval(), transformers.AutoTokenizer.from_pretrained(path)


def _batch(tok):
    return dict(tok(TEXTS, padding=True, return_tensors="pt"))


def _copy_tokenizer_free(src, dst, state_dict=None, config_edit=None):
    """A checkpoint directory with src's config.json (optionally edited) and the given tensors."""
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    if config_edit:
        config_edit(config)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f)
    if state_dict is not None:
        save_file({k: v.contiguous() for k, v in state_dict.items()}, os.path.join(dst, "model.safetensors"))
    return str(dst)


# -- Auto classes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "auto", "expected"),
    [
        ("bert_masked_lm_dir", AutoModelForMaskedLM, "BertForMaskedLM"),
        (
            "bert_sequence_classification_dir",
            AutoModelForSequenceClassification,
            "BertForSequenceClassification",
        ),
        ("distilbert_token_classification_dir", AutoModel, "DistilBertModel"),
        ("roberta_masked_lm_dir", AutoModelForMaskedLM, "RobertaForMaskedLM"),
        (
            "camembert_sequence_classification_dir",
            AutoModelForSequenceClassification,
            "CamembertForSequenceClassification",
        ),
    ],
)
def test_auto_classes_pick_the_class_by_model_type(fixture, auto, expected, request):
    path = request.getfixturevalue(fixture)
    model = auto.from_pretrained(path)
    assert type(model).__name__ == expected
    assert not model.training


def test_architectures_name_haven_classes(bert_masked_lm_dir, camembert_sequence_classification_dir):
    for path, cls in (
        (bert_masked_lm_dir, BertForMaskedLM),
        (camembert_sequence_classification_dir, CamembertForSequenceClassification),
    ):
        config = AutoConfig.from_pretrained(path)
        assert class_for_architecture(config.architectures[0]) is cls
    assert class_for_architecture("DistilBertForTokenClassification") is DistilBertForTokenClassification


def test_unknown_model_type_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "funnel", "hidden_size": 8}))
    with pytest.raises(
        UnknownArchitectureError, match=r"'funnel' is not supported.*bert, camembert, distilbert"
    ):
        AutoModel.from_pretrained(tmp_path)


def test_config_without_model_type_is_a_clear_error(tmp_path, bert_masked_lm_dir):
    _copy_tokenizer_free(bert_masked_lm_dir, tmp_path, config_edit=lambda c: c.pop("model_type"))
    with pytest.raises(ConfigError, match=r"no 'model_type'.*bert"):
        AutoConfig.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="no 'model_type'"):
        AutoModelForMaskedLM.from_pretrained(tmp_path)


# -- weights: loading without init or copies ---------------------------------------------------------


def test_loading_maps_the_file_and_runs_no_init(bert_masked_lm_dir, monkeypatch):
    calls = []
    real_init = BertPreTrainedModel._init_weights
    monkeypatch.setattr(
        BertPreTrainedModel, "_init_weights", lambda self, m: calls.append(m) or real_init(self, m)
    )
    real_normal = torch.nn.init.normal_

    def normal_(tensor, *args, **kwargs):  # module constructors run it on meta tensors: that costs nothing
        if not tensor.is_meta:
            calls.append(tensor.shape)
        return real_normal(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "normal_", normal_)
    model = BertForMaskedLM.from_pretrained(bert_masked_lm_dir)
    assert calls == []
    # every parameter is a view of one storage: the memory map of model.safetensors
    size = os.path.getsize(os.path.join(bert_masked_lm_dir, "model.safetensors"))
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == 1
    assert next(model.parameters()).untyped_storage().nbytes() == size
    assert not any(p.is_meta for p in model.parameters())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    assert list(model.buffers()) == []


def test_head_on_a_base_checkpoint_warns_and_reports_missing_keys(bert_masked_lm_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="haven.modeling"):
        model, info = BertForSequenceClassification.from_pretrained(
            bert_masked_lm_dir, output_loading_info=True
        )
    assert sorted(info["missing_keys"]) == [
        "bert.pooler.dense.bias",
        "bert.pooler.dense.weight",
        "classifier.bias",
        "classifier.weight",
    ]
    assert "cls.predictions.bias" in info["unexpected_keys"]
    assert "newly initialized" in caplog.text and "TRAIN this model" in caplog.text
    assert not any(p.is_meta for p in model.parameters())
    w = model.classifier.weight
    assert 0.01 < w.std().item() < 0.03 and torch.count_nonzero(model.classifier.bias) == 0
    # the encoder weights did load: same hidden states as the reference base model
    ours, ref, tok = load_both("bert", "model", bert_masked_lm_dir)
    torch.testing.assert_close(
        model.bert(**_batch(tok)).last_hidden_state, ref(**_batch(tok)).last_hidden_state, atol=1e-4, rtol=0
    )


def test_base_checkpoint_without_prefix_loads_into_a_head(tmp_path, bert_masked_lm_dir):
    ref, tok = _reference(bert_masked_lm_dir)
    # a checkpoint of the bare encoder: keys without "bert."
    state = {k.removeprefix("bert."): v for k, v in ref.state_dict().items() if k.startswith("bert.")}
    path = _copy_tokenizer_free(bert_masked_lm_dir, tmp_path / "base", state)
    model, info = BertForMaskedLM.from_pretrained(path, output_loading_info=True)
    assert info["unexpected_keys"] == []
    assert sorted(info["missing_keys"]) == sorted(
        k
        for k in ref.state_dict()
        if k.startswith("cls.")
        and k != "cls.predictions.decoder.weight"
        and k != "cls.predictions.decoder.bias"
    )
    expected = ref.bert(**_batch(tok)).last_hidden_state
    torch.testing.assert_close(model.bert(**_batch(tok)).last_hidden_state, expected, atol=1e-4, rtol=0)
    # and the other way: a checkpoint with the prefix into the bare model
    base = BertModel.from_pretrained(bert_masked_lm_dir, output_loading_info=True)[1]
    assert base["unexpected_keys"] and all(k.startswith("cls.predictions.") for k in base["unexpected_keys"])
    assert sorted(base["missing_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]


def test_legacy_gamma_beta_names(tmp_path, bert_sequence_classification_dir):
    ref, tok = _reference(bert_sequence_classification_dir, head="sequence_classification")
    state = {}
    for key, value in ref.state_dict().items():
        if "LayerNorm" in key:
            key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
        state[key] = value
    assert any(k.endswith("gamma") for k in state)
    path = _copy_tokenizer_free(bert_sequence_classification_dir, tmp_path, state)
    model, info = BertForSequenceClassification.from_pretrained(path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}
    assert_close(*run_both(model, ref, _batch(tok)))


def test_untied_output_embeddings(tmp_path, bert_tokenizer_dir):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    ref = build_reference_model("bert", "masked_lm", tok, 51, tie_word_embeddings=False)
    assert ref.cls.predictions.decoder.weight is not ref.bert.embeddings.word_embeddings.weight
    ref.save_pretrained(tmp_path)
    model = BertForMaskedLM.from_pretrained(tmp_path)
    assert model.cls.predictions.decoder.weight is not model.bert.embeddings.word_embeddings.weight
    assert_close(*run_both(model, ref, _batch(tok)))


def test_checkpoint_with_only_decoder_bias(tmp_path, roberta_masked_lm_dir):
    """Some exports store lm_head.decoder.bias instead of lm_head.bias."""
    ref, tok = _reference(roberta_masked_lm_dir, arch="roberta")
    state = load_file(os.path.join(roberta_masked_lm_dir, "model.safetensors"))
    state["lm_head.decoder.bias"] = state.pop("lm_head.bias")
    path = _copy_tokenizer_free(roberta_masked_lm_dir, tmp_path, state)
    model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert_close(*run_both(model, ref, _batch(tok)))


# -- formats: shards, .bin, dtypes ---------------------------------------------------------------------


def test_sharded_save_loads_in_both_libraries(tmp_path, bert_masked_lm_dir):
    ours, ref, tok = load_both("bert", "masked_lm", bert_masked_lm_dir)
    files = ours.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and set(shards) <= set(files)
    assert "cls.predictions.decoder.weight" not in index["weight_map"]  # tied: stored once
    again = BertForMaskedLM.from_pretrained(tmp_path)
    import transformers

    ref_again = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    batch = _batch(tok)
    assert_close(*run_both(again, ref, batch))
    assert_close(*run_both(again, ref_again, batch))


def test_reference_sharded_checkpoint_loads(tmp_path, roberta_sequence_classification_dir):
    ref, tok = _reference(roberta_sequence_classification_dir, arch="roberta", head="sequence_classification")
    ref.save_pretrained(tmp_path, max_shard_size="30KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert_close(*run_both(model, ref, _batch(tok)))


def test_pytorch_model_bin_loads_with_weights_only(tmp_path, distilbert_masked_lm_dir):
    ref, tok = _reference(distilbert_masked_lm_dir, arch="distilbert")
    path = _copy_tokenizer_free(distilbert_masked_lm_dir, tmp_path / "bin")
    torch.save(ref.state_dict(), os.path.join(path, "pytorch_model.bin"))
    model = AutoModelForMaskedLM.from_pretrained(path)
    assert_close(*run_both(model, ref, _batch(tok)))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_runs_code_is_refused(tmp_path, distilbert_masked_lm_dir):
    path = _copy_tokenizer_free(distilbert_masked_lm_dir, tmp_path)
    with open(os.path.join(path, "pytorch_model.bin"), "wb") as f:
        pickle.dump({"weight": _Exploit()}, f)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        AutoModelForMaskedLM.from_pretrained(path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_argument_casts(dtype, bert_sequence_classification_dir):
    import transformers

    ours = BertForSequenceClassification.from_pretrained(bert_sequence_classification_dir, dtype=dtype)
    assert ours.dtype == dtype and all(p.dtype == dtype for p in ours.parameters())
    ref = transformers.BertForSequenceClassification.from_pretrained(
        bert_sequence_classification_dir, dtype=dtype
    )
    tok = transformers.AutoTokenizer.from_pretrained(bert_sequence_classification_dir)
    out, expected = run_both(ours, ref.eval(), _batch(tok))
    assert out.logits.dtype == dtype
    torch.testing.assert_close(out.logits.float(), expected.logits.float(), atol=5e-2, rtol=0)
    by_name = BertForSequenceClassification.from_pretrained(
        bert_sequence_classification_dir, dtype=str(dtype)[6:]
    )
    assert by_name.dtype == dtype


def test_half_checkpoint_keeps_its_dtype(tmp_path, bert_masked_lm_dir):
    ours = BertForMaskedLM.from_pretrained(bert_masked_lm_dir, dtype=torch.bfloat16)
    ours.save_pretrained(tmp_path)
    assert BertForMaskedLM.from_pretrained(tmp_path).dtype == torch.bfloat16
    assert BertForMaskedLM.from_pretrained(tmp_path, dtype="auto").dtype == torch.bfloat16
    assert BertForMaskedLM.from_pretrained(tmp_path, dtype=torch.float32).dtype == torch.float32


# -- round trips ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "head"),
    [
        ("bert", "masked_lm"),
        ("bert", "sequence_classification"),
        ("distilbert", "token_classification"),
        ("roberta", "masked_lm"),
        ("camembert", "sequence_classification"),
    ],
)
def test_haven_saves_reference_loads(tmp_path, arch, head, request):
    from fixtures.encoders import reference_class

    path = request.getfixturevalue(f"{arch}_{head}_dir")
    ours, ref, tok = load_both(arch, head, path)
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == arch and saved["architectures"] == [type(ours).__name__]
    reloaded, info = reference_class(arch, head).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    batch = _batch(tok)
    assert_close(*run_both(ours, reloaded.eval(), batch))
    assert_close(*run_both(ours, ref, batch))
    assert reloaded.config.id2label == ref.config.id2label


def test_modified_weights_survive_the_round_trip(tmp_path, bert_sequence_classification_dir):
    """Not just a copy of the input file: changed weights are what the reference reads back."""
    import transformers

    ours = BertForSequenceClassification.from_pretrained(bert_sequence_classification_dir)
    with torch.no_grad():
        ours.classifier.weight.copy_(torch.randn_like(ours.classifier.weight))
    ours.save_pretrained(tmp_path)
    ref = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert_sequence_classification_dir)
    assert_close(*run_both(ours, ref, _batch(tok)))


# -- bad input ---------------------------------------------------------------------------------------------


def test_missing_weights_file(tmp_path, bert_masked_lm_dir):
    path = _copy_tokenizer_free(bert_masked_lm_dir, tmp_path)
    with pytest.raises(CheckpointError, match=r"no weights found.*model\.safetensors"):
        BertForMaskedLM.from_pretrained(path)


def test_truncated_safetensors(tmp_path, bert_masked_lm_dir):
    path = _copy_tokenizer_free(bert_masked_lm_dir, tmp_path)
    data = open(os.path.join(bert_masked_lm_dir, "model.safetensors"), "rb").read()
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        AutoModelForMaskedLM.from_pretrained(path)


def test_missing_shard(tmp_path, bert_masked_lm_dir):
    ours = BertForMaskedLM.from_pretrained(bert_masked_lm_dir)
    ours.save_pretrained(tmp_path, max_shard_size="20KB")
    os.remove(tmp_path / "model-00002-of-{:05d}.safetensors".format(len(list(tmp_path.glob("model-*")))))
    with pytest.raises(CheckpointError, match="lists model-00002"):
        BertForMaskedLM.from_pretrained(tmp_path)


def test_shape_mismatch(tmp_path, bert_sequence_classification_dir):
    state = load_file(os.path.join(bert_sequence_classification_dir, "model.safetensors"))

    def three_labels(config):
        config["id2label"] = {"0": "A", "1": "B", "2": "C"}
        config["label2id"] = {"A": 0, "B": 1, "C": 2}

    path = _copy_tokenizer_free(bert_sequence_classification_dir, tmp_path, state, config_edit=three_labels)
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch for classifier\.(weight|bias).*\(2,.*\(3,.*ignore_mismatched_sizes",
    ):
        BertForSequenceClassification.from_pretrained(path)
    model, info = BertForSequenceClassification.from_pretrained(
        path, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert sorted(info["mismatched_keys"]) == ["classifier.bias", "classifier.weight"]
    assert model.classifier.weight.shape == (3, 32) and not model.classifier.weight.is_meta


def test_model_needs_a_config_object():
    with pytest.raises(ConfigError, match="from_pretrained"):
        BertModel({"hidden_size": 32})


def test_initialising_a_missing_weight_keeps_loaded_siblings(tmp_path, bert_sequence_classification_dir):
    """classifier.weight missing, classifier.bias present: only the weight is initialised."""
    state = load_file(os.path.join(bert_sequence_classification_dir, "model.safetensors"))
    bias = state["classifier.bias"].clone()
    assert torch.count_nonzero(bias) == 2
    del state["classifier.weight"]
    path = _copy_tokenizer_free(bert_sequence_classification_dir, tmp_path, state)
    model, info = BertForSequenceClassification.from_pretrained(path, output_loading_info=True)
    assert info["missing_keys"] == ["classifier.weight"]
    assert torch.equal(model.classifier.bias, bias)
    assert 0.01 < model.classifier.weight.std().item() < 0.03


def test_loading_leaves_torch_layer_init_intact(bert_masked_lm_dir):
    """from_pretrained skips the layers' own init while building on meta, and restores it."""
    originals = {
        cls: cls.__dict__["reset_parameters"]
        for cls in (torch.nn.Linear, torch.nn.Embedding, torch.nn.LayerNorm)
    }
    BertForMaskedLM.from_pretrained(bert_masked_lm_dir)
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):  # fails while building
        BertForMaskedLM.from_pretrained(bert_masked_lm_dir, num_attention_heads=5)
    assert {cls: cls.__dict__["reset_parameters"] for cls in originals} == originals
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64)
    assert 0.5 < layer.weight.abs().max().item() * 8 < 1.01  # kaiming-uniform bound 1/sqrt(64)


def test_old_checkpoint_extras_load_silently(tmp_path, bert_masked_lm_dir, caplog):
    """Older exports also store position_ids buffers and the pretraining NSP head."""
    ref, tok = _reference(bert_masked_lm_dir)
    state = dict(load_file(os.path.join(bert_masked_lm_dir, "model.safetensors")))
    state["bert.embeddings.position_ids"] = torch.arange(128)[None]
    state["cls.seq_relationship.weight"] = torch.zeros(2, 32)
    state["cls.seq_relationship.bias"] = torch.zeros(2)
    path = _copy_tokenizer_free(bert_masked_lm_dir, tmp_path, state)
    with caplog.at_level(logging.WARNING, logger="haven.modeling"):
        model, info = BertForMaskedLM.from_pretrained(path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}
    assert caplog.text == ""
    assert list(model.buffers()) == []
    assert_close(*run_both(model, ref, _batch(tok)))


def test_real_layers_built_while_loading_are_still_initialised():
    """from_pretrained's init skip is class-wide while a model builds on meta; a real layer built
    meanwhile (say on another thread) must still get torch's init: kaiming-uniform within
    +-1/sqrt(fan_in), not whatever torch.empty left in memory."""
    import torch
    from torch import nn

    from haven.loading import skip_reset_parameters

    with skip_reset_parameters(), torch.device("cpu"):
        layer = nn.Linear(64, 64)
    w = layer.weight.detach()
    assert torch.isfinite(w).all() and w.abs().max() <= 1 / 64**0.5
    assert w.std() > 0.03  # uniform(-1/8, 1/8) has std ~0.072; untouched memory is 0 or garbage
