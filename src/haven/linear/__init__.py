"""Linear layer implementations: the module a block calls for each projection.

A decoder or encoder block calls its projections as modules (`self.q_proj(x)`); which
implementation runs is decided by the module plugged in there, outside the block's math:

- `dense.Linear`: float32/bf16 weights; on CPU, for a few dozen rows at a time, a weight
  prepacked once for oneDNN (`optimize_for_inference()` turns it on).

Quantized implementations live beside it in this package, one file each:

- `quantized.QuantizedLinear`: int8 / int4 codes with group scales (`quantize.py`: the format and
  the error-minimising scales), swapped in for Linear / Conv1D at load by `replace.py` as
  `config.QuantizationConfig` / `BitsAndBytesConfig` ask; `kernels/`: its compiled few-rows
  product, with a portable dequantize-and-F.linear path.
"""

from __future__ import annotations

from .config import BitsAndBytesConfig, QuantizationConfig
from .dense import Linear
from .quantized import QuantizedLinear

__all__ = ["BitsAndBytesConfig", "Linear", "QuantizationConfig", "QuantizedLinear"]
