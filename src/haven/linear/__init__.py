"""Linear layer implementations: the module a block calls for each projection.

A decoder or encoder block calls its projections as modules (`self.q_proj(x)`); which
implementation runs is decided by the module plugged in there, outside the block's math:

- `dense.Linear`: float32/bf16 weights; on CPU, for a few dozen rows at a time, a weight
  prepacked once for oneDNN (`optimize_for_inference()` turns it on).

Quantized implementations live beside it in this package, one file each.
"""

from __future__ import annotations

from .dense import Linear

__all__ = ["Linear"]
