"""from_pretrained's keyword arguments: honoured, refused with the reason, or a TypeError; never ignored.

Checked against the reference library (transformers) on the tiny checkpoints it saved
(tests/fixtures/encoders.py, decoders.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch
import transformers

from haven.auto import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
from haven.checkpoint import _mapped_storages
from haven.config import PretrainedConfig
from haven.errors import CheckpointError, ConfigError
from haven.loading import OPTIONS
from haven.models.bert import BertConfig, BertForSequenceClassification, BertModel

IDS = torch.tensor([[2, 7, 9, 11, 5, 3], [2, 4, 8, 3, 0, 0]])
MASK = (IDS != 0).long()


def _logits(model) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=IDS, attention_mask=MASK).logits


def _reference_logits(path: str, **kwargs) -> torch.Tensor:
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(path, **kwargs).eval()
    return _logits(ref)


# -- unknown keyword arguments -------------------------------------------------------------------


def test_unknown_kwargs_are_a_type_error_naming_them(bert_sequence_classification_dir):
    path = bert_sequence_classification_dir
    with pytest.raises(TypeError, match="foo"):  # the reference: TypeError too
        transformers.AutoModelForSequenceClassification.from_pretrained(path, foo=1)
    for load in (AutoModelForSequenceClassification.from_pretrained, BertForSequenceClassification.from_pretrained):
        with pytest.raises(TypeError, match=r"'foo', 'bar_baz'"):
            load(path, foo=1, bar_baz=2)


def test_config_loaders_refuse_unknown_kwargs_or_return_them(bert_sequence_classification_dir):
    path = bert_sequence_classification_dir
    for load in (AutoConfig.from_pretrained, BertConfig.from_pretrained, PretrainedConfig.from_pretrained):
        with pytest.raises(TypeError, match="'foo'"):
            load(path, foo=1)
    ours, unused = AutoConfig.from_pretrained(path, foo=1, hidden_dropout_prob=0.3, return_unused_kwargs=True)
    ref, ref_unused = transformers.AutoConfig.from_pretrained(
        path, foo=1, hidden_dropout_prob=0.3, return_unused_kwargs=True
    )
    assert unused == ref_unused == {"foo": 1}
    assert ours.hidden_dropout_prob == ref.hidden_dropout_prob == 0.3


def test_config_attributes_are_overrides(bert_sequence_classification_dir):
    path = bert_sequence_classification_dir
    kwargs = dict(hidden_dropout_prob=0.3, output_hidden_states=True, problem_type="regression")
    ours = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    for key, value in kwargs.items():
        assert getattr(ours.config, key) == getattr(ref.config, key) == value


def test_a_key_only_the_config_file_holds_is_an_override(tmp_path, bert_sequence_classification_dir):
    path = shutil.copytree(bert_sequence_classification_dir, tmp_path / "m")
    data = json.loads((path / "config.json").read_text())
    data["custom_threshold"] = 0.5
    (path / "config.json").write_text(json.dumps(data))
    model = AutoModelForSequenceClassification.from_pretrained(path, custom_threshold=0.9)
    assert model.config.custom_threshold == 0.9


def test_model_arguments_go_to_the_model(bert_sequence_classification_dir):
    path = bert_sequence_classification_dir
    ours = BertModel.from_pretrained(path, add_pooling_layer=False)
    ref = transformers.BertModel.from_pretrained(path, add_pooling_layer=False)
    assert ours.pooler is None and ref.pooler is None
    assert "add_pooling_layer" not in ours.config.to_dict()


def test_explicit_config_is_copied_not_changed(bert_sequence_classification_dir):
    config = BertConfig.from_pretrained(bert_sequence_classification_dir)
    model = BertForSequenceClassification.from_pretrained(
        bert_sequence_classification_dir, config=config, output_attentions=True
    )
    assert model.config.output_attentions is True
    assert config.output_attentions is False


# -- labels ---------------------------------------------------------------------------------------


def test_num_labels_beats_the_files_labels_with_ignore_mismatched_sizes(bert_sequence_classification_dir, caplog):
    path = bert_sequence_classification_dir
    with caplog.at_level(logging.WARNING, logger="haven"):
        ours, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
        )
    ref, ref_info = transformers.AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert ours.config.id2label == ref.config.id2label == {i: f"LABEL_{i}" for i in range(5)}
    assert ours.config.label2id == ref.config.label2id
    assert ours.classifier.weight.shape == ref.classifier.weight.shape == (5, 32)
    assert sorted(info["mismatched_keys"]) == sorted(key for key, _, _ in ref_info["mismatched_keys"])
    assert info["missing_keys"] == [] and not ref_info["missing_keys"]
    assert "classifier.weight" in caplog.text and "re-initialized" in caplog.text
    assert _logits(ours).shape == (2, 5)
    # the rest of the model is the checkpoint's: same hidden states as the reference
    with torch.inference_mode():
        a = ours.bert(input_ids=IDS, attention_mask=MASK).last_hidden_state
        b = ref.bert(input_ids=IDS, attention_mask=MASK).last_hidden_state
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_num_labels_without_ignore_mismatched_sizes_is_refused(bert_sequence_classification_dir):
    with pytest.raises(CheckpointError, match="ignore_mismatched_sizes=True"):
        AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, num_labels=5)


def test_same_num_labels_keeps_the_files_names(bert_sequence_classification_dir):
    ours = AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, num_labels=2)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, num_labels=2)
    assert ours.config.id2label == ref.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}


def test_explicit_id2label_beats_the_files(bert_sequence_classification_dir):
    id2label = {0: "a", 1: "b", 2: "c"}
    ours = AutoModelForSequenceClassification.from_pretrained(
        bert_sequence_classification_dir, id2label=id2label, ignore_mismatched_sizes=True
    )
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(
        bert_sequence_classification_dir, id2label=id2label, ignore_mismatched_sizes=True
    )
    assert ours.config.id2label == ref.config.id2label == id2label
    assert ours.config.label2id == {"a": 0, "b": 1, "c": 2}  # follows the new labels
    assert ours.classifier.weight.shape == ref.classifier.weight.shape
    with pytest.raises(ConfigError, match="num_labels=5 disagrees"):
        AutoConfig.from_pretrained(bert_sequence_classification_dir, num_labels=5, id2label=id2label)


def test_config_num_labels_override_matches_the_reference(bert_sequence_classification_dir):
    ours = AutoConfig.from_pretrained(bert_sequence_classification_dir, num_labels=3)
    ref = transformers.AutoConfig.from_pretrained(bert_sequence_classification_dir, num_labels=3)
    assert ours.id2label == ref.id2label and ours.label2id == ref.label2id


# -- options Haven honours or accepts ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low_cpu_mem_usage": True},
        {"trust_remote_code": False},
        {"trust_remote_code": None},
        {"weights_only": True},
        {"attn_implementation": "sdpa"},
        {"attn_implementation": "eager"},
        {"device_map": None},
        {"device_map": "cpu"},
        {"device_map": "auto"},
        {"device_map": {"": "cpu"}},
        {"device_map": torch.device("cpu")},
        {"disable_mmap": True},
        {"use_safetensors": True},
        {"force_download": False},
    ],
    ids=repr,
)
def test_accepted_options_load_the_same_model(kwargs, bert_sequence_classification_dir):
    path = bert_sequence_classification_dir
    ours = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    expected = _reference_logits(path)
    torch.testing.assert_close(_logits(ours), expected, atol=1e-4, rtol=0)
    device = "cuda" if kwargs.get("device_map") == "auto" and torch.cuda.is_available() else "cpu"
    assert ours.device.type == device


def test_disable_mmap_copies_the_weights(bert_sequence_classification_dir):
    def mapped(model):
        return [p for p in model.parameters() if p.untyped_storage() in _mapped_storages]

    assert mapped(AutoModel.from_pretrained(bert_sequence_classification_dir))
    assert not mapped(AutoModel.from_pretrained(bert_sequence_classification_dir, disable_mmap=True))


def test_use_safetensors_picks_the_format(tmp_path, bert_sequence_classification_dir):
    from safetensors.torch import load_file

    path = shutil.copytree(bert_sequence_classification_dir, tmp_path / "m")
    state = load_file(path / "model.safetensors")
    bin_state = {k: v * 2 if k == "classifier.bias" else v for k, v in state.items()}
    torch.save(bin_state, path / "pytorch_model.bin")
    ours = BertForSequenceClassification.from_pretrained(path, use_safetensors=False)
    ref = transformers.BertForSequenceClassification.from_pretrained(path, use_safetensors=False)
    torch.testing.assert_close(ours.classifier.bias, bin_state["classifier.bias"])
    torch.testing.assert_close(ref.classifier.bias, bin_state["classifier.bias"])
    assert torch.equal(BertForSequenceClassification.from_pretrained(path).classifier.bias, state["classifier.bias"])
    os.remove(path / "model.safetensors")
    with pytest.raises(CheckpointError, match="use_safetensors=True"):
        BertForSequenceClassification.from_pretrained(path, use_safetensors=True)


def test_subfolder(tmp_path, bert_sequence_classification_dir):
    shutil.copytree(bert_sequence_classification_dir, tmp_path / "sub")
    ours = AutoModelForSequenceClassification.from_pretrained(tmp_path, subfolder="sub")
    expected = _reference_logits(str(tmp_path), subfolder="sub")
    torch.testing.assert_close(_logits(ours), expected, atol=1e-4, rtol=0)
    assert AutoConfig.from_pretrained(tmp_path, subfolder="sub").model_type == "bert"
    with pytest.raises(NotImplementedError, match="local directories only"):
        AutoModelForSequenceClassification.from_pretrained("owner/not-a-dir", subfolder="sub")


def test_generation_config_argument(gpt2_dir, bert_sequence_classification_dir):
    from haven.generation import GenerationConfig

    gc = GenerationConfig(max_new_tokens=3, do_sample=False)
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir, generation_config=gc)
    assert model.generation_config is gc
    with pytest.raises(ValueError, match="does not generate"):
        AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, generation_config=gc)


# -- options Haven refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"device_map": "balanced"}, "one device"),
        ({"device_map": "sequential"}, "one device"),
        ({"device_map": "disk"}, "offload"),
        ({"device_map": {"bert": "cpu", "classifier": "cuda:0"}}, "across devices"),
        ({"device_map": "not-a-device"}, "not a device"),
        ({"attn_implementation": "flash_attention_2"}, "no 'flash_attention_2' kernel"),
        ({"trust_remote_code": True}, "never runs code"),
        ({"weights_only": False}, "never unpickles"),
        ({"proxies": {"https": "http://proxy:3128"}}, "HTTPS_PROXY"),
        ({"offload_folder": "/tmp/offload"}, "offload"),
        ({"max_memory": "1GB"}, "dict"),
        ({"variant": "fp16"}, "variant"),
        ({"gguf_file": "model.gguf"}, "GGUF"),
        ({"from_tf": True}, "PyTorch weights only"),
        ({"state_dict": {}}, "load_state_dict"),
        ({"adapter_kwargs": {"revision": "x"}}, "PEFT"),
        ({"tp_plan": "auto"}, "parallelism"),
    ],
    ids=repr,
)
def test_refused_options_say_why(kwargs, reason, bert_sequence_classification_dir):
    name = next(iter(kwargs))
    with pytest.raises(NotImplementedError, match=rf"{name}=.*{reason}"):
        AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, **kwargs)


def test_every_option_of_the_table_has_a_decision():
    assert all(option.decision for option in OPTIONS.values())
    assert OPTIONS["load_in_4bit"].refuse(False) is None  # the default value is fine


def test_device_and_device_map_must_agree(bert_sequence_classification_dir):
    with pytest.raises(ValueError, match="disagree"):
        AutoModel.from_pretrained(bert_sequence_classification_dir, device="cpu", device_map="meta")


@pytest.mark.parametrize("method", ["bitsandbytes", "gptq", "awq"])
def test_a_checkpoint_quantized_by_another_tool_is_refused_by_name(method, tmp_path, bert_sequence_classification_dir):
    path = shutil.copytree(bert_sequence_classification_dir, tmp_path / "m")
    data = json.loads((path / "config.json").read_text())
    data["quantization_config"] = {"quant_method": method, "bits": 4}
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=f"quantized with '{method}'.*cannot read"):
        AutoModelForSequenceClassification.from_pretrained(path)


# -- placement: device_map, max_memory, hf_device_map -------------------------------------------


@pytest.mark.parametrize(
    "device_map, expected",
    [("cpu", {"": "cpu"}), ("auto", {"": "cpu"}), ({"": "cpu"}, {"": "cpu"}),
     ({"bert": "cpu", "classifier": "cpu"}, {"bert": "cpu", "classifier": "cpu"})],
    ids=repr,
)
def test_device_map_places_the_model_and_says_where(device_map, expected, bert_sequence_classification_dir):
    if device_map == "auto" and torch.cuda.is_available():
        expected = {"": 0}
    model = AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, device_map=device_map)
    assert model.hf_device_map == expected  # the reference's names: "cpu", or a CUDA index
    assert model.device == (torch.device("cuda", 0) if expected == {"": 0} else torch.device("cpu"))


def test_device_map_naming_a_module_the_model_lacks_is_refused(bert_sequence_classification_dir):
    with pytest.raises(ValueError, match="does not have"):
        AutoModelForSequenceClassification.from_pretrained(
            bert_sequence_classification_dir, device_map={"bert": "cpu", "no_such_head": "cpu"}
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a PyTorch without CUDA")
@pytest.mark.parametrize("device_map", ["cuda", "cuda:0", 0, {"": "cuda:0"}], ids=repr)
def test_cuda_placement_without_cuda_is_refused_not_ignored(device_map, bert_sequence_classification_dir):
    with pytest.raises(ValueError, match="has no CUDA device"):
        AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, device_map=device_map)


def test_max_memory_too_small_for_the_model_is_refused(bert_sequence_classification_dir):
    with pytest.raises(ValueError, match="more than max_memory.*neither splits"):
        AutoModelForSequenceClassification.from_pretrained(
            bert_sequence_classification_dir, device_map="auto", max_memory={"cpu": "10KB"}
        )
    model = AutoModelForSequenceClassification.from_pretrained(
        bert_sequence_classification_dir, device_map="auto", max_memory={"cpu": "1GB"}
    )
    assert model.device == torch.device("cpu")


def test_max_memory_needs_device_map(bert_sequence_classification_dir):
    with pytest.raises(ValueError, match="goes with device_map"):
        AutoModelForSequenceClassification.from_pretrained(bert_sequence_classification_dir, max_memory={"cpu": "1GB"})


# -- config.json never holds loading options ------------------------------------------------------

_LOADING_KEYS = {"load_in_4bit", "load_in_8bit", "device_map", "low_cpu_mem_usage", "attn_implementation"}


def test_loading_options_are_not_saved(tmp_path, bert_sequence_classification_dir):
    model = AutoModelForSequenceClassification.from_pretrained(
        bert_sequence_classification_dir,
        device_map="cpu",
        low_cpu_mem_usage=True,
        attn_implementation="sdpa",
        trust_remote_code=False,
        load_in_4bit=False,
    )
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert not _LOADING_KEYS & set(saved)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert not any(hasattr(ref.config, key) for key in ("load_in_4bit", "device_map", "low_cpu_mem_usage"))


def test_stale_loading_options_in_config_json_are_dropped(tmp_path, bert_sequence_classification_dir):
    """An older Haven wrote them into config.json; they are neither read back nor saved again."""
    path = shutil.copytree(bert_sequence_classification_dir, tmp_path / "m")
    data = json.loads((path / "config.json").read_text())
    data.update(load_in_4bit=True, device_map="auto", attn_implementation="sdpa", low_cpu_mem_usage=True)
    (path / "config.json").write_text(json.dumps(data))
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert not any(key in model.config.__dict__ for key in _LOADING_KEYS)
    model.save_pretrained(tmp_path / "out")
    assert not _LOADING_KEYS & set(json.loads((tmp_path / "out" / "config.json").read_text()))
