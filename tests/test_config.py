import json

import pytest

from haven.config import PretrainedConfig
from haven.errors import ConfigError


def test_unknown_keys_and_labels_round_trip(tmp_path):
    data = {"model_type": "", "custom_key": [1, 2], "id2label": {"0": "NEG", "1": "POS"}}
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = PretrainedConfig.from_pretrained(tmp_path)
    assert config.custom_key == [1, 2]
    assert config.id2label == {0: "NEG", 1: "POS"}
    assert config.label2id == {"NEG": 0, "POS": 1}
    assert config.num_labels == 2
    config.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["custom_key"] == [1, 2]
    assert saved["id2label"] == {"0": "NEG", "1": "POS"}


def test_num_labels_builds_default_names():
    config = PretrainedConfig(num_labels=3)
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert config.label2id["LABEL_2"] == 2


def test_malformed_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8,')
    with pytest.raises(ConfigError, match="config.json is not valid JSON"):
        PretrainedConfig.from_pretrained(tmp_path)


def test_non_object_config_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        PretrainedConfig.from_pretrained(tmp_path)
