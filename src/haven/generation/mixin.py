"""GenerationMixin: `model.generate(...)` for causal language models.

Decoder heads list it first among their bases (`class XForCausalLM(GenerationMixin, XPreTrainedModel)`).
"""

from __future__ import annotations


class GenerationMixin:
    """Filled in by haven.generation (see DESIGN.md, "Generation")."""
