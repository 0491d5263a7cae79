"""A malformed shard index (`model.safetensors.index.json`) is a CheckpointError, whatever its
shape: never an AttributeError, RecursionError or UnicodeDecodeError from deep inside the loader."""

from __future__ import annotations

import pytest

from haven.checkpoint import read_index
from haven.errors import CheckpointError

BAD = {
    "not-json": b"{weight_map",
    "not-utf8": b'{"weight_map": {"a": "\xff.safetensors"}}',
    "a-list": b"[1, 2]",
    "no-weight-map": b'{"metadata": {}}',
    "weight-map-a-list": b'{"weight_map": ["a.safetensors"]}',
    "shard-an-int": b'{"weight_map": {"a": 1}}',
    "shard-null": b'{"weight_map": {"a": null}}',
    "deep": b'{"metadata":' + b"[" * 100_000 + b"]" * 100_000 + b', "weight_map": {}}',
    "outside": b'{"weight_map": {"a": "../../etc/x.safetensors"}}',
    "absolute": b'{"weight_map": {"a": "/etc/x.safetensors"}}',
}


@pytest.mark.parametrize("content", list(BAD.values()), ids=list(BAD))
def test_malformed_index_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "model.safetensors.index.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        read_index(str(path))


def test_valid_index(tmp_path):
    path = tmp_path / "model.safetensors.index.json"
    path.write_text('{"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors"}}')
    assert read_index(str(path)) == {"a": "model-00001-of-00002.safetensors"}
