"""One reading of dtype names, for from_pretrained, quantization configs and `haven convert`."""

from __future__ import annotations

import pytest
import torch

from haven import QuantizationConfig
from haven.dtypes import parse_dtype


@pytest.mark.parametrize(
    "value, expected",
    [(torch.bfloat16, torch.bfloat16), ("bfloat16", torch.bfloat16), ("torch.float16", torch.float16), ("float32", torch.float32)],
)
def test_names_and_dtypes(value, expected):
    assert parse_dtype(value) is expected


@pytest.mark.parametrize("value", ["float33", "Tensor", "", None])
def test_what_is_not_a_dtype_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"compute_dtype=.* is not a dtype; pass e\.g\. torch\.bfloat16"):
        parse_dtype(value, "compute_dtype")


def test_quantization_config_and_from_pretrained_share_it(tmp_path):
    with pytest.raises(ValueError, match="compute_dtype='half-ish' is not a dtype"):
        QuantizationConfig(bits=8, compute_dtype="half-ish")
    from haven.modeling import _parse_dtype

    assert _parse_dtype("auto") is None and _parse_dtype(None) is None
    with pytest.raises(ValueError, match="dtype='float33' is not a dtype"):
        _parse_dtype("float33")
