"""How to quantize a model's weights: Haven's `QuantizationConfig` and the reference's `BitsAndBytesConfig`.

`from_pretrained(load_in_8bit=True | load_in_4bit=True | quantization_config=...)` all end in one
`QuantizationConfig` (`resolve`). A `BitsAndBytesConfig` (object or dict, the reference library's
field names) is read into one; a field whose value Haven cannot honour raises, saying why, instead
of being ignored. What Haven does: weight-only, group-wise integer quantization of the
Linear / Conv1D weights at load; embeddings, norms and (unless asked) the output layer stay float.

config.json of a model saved quantized holds `quantization_config` with `quant_method: "haven"`;
a checkpoint quantized by another tool (bitsandbytes, GPTQ, AWQ ...) is refused by that name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..dtypes import parse_dtype
from ..errors import CheckpointError

QUANT_METHOD = "haven"


@dataclass
class QuantizationConfig:
    """Weight-only quantization of a model's Linear/Conv1D layers.

    - `bits`: 8 (int8) or 4 (int4, two per byte);
    - `group_size`: 32, 64 or 128 consecutive inputs of a row share one scale (and zero);
      a layer whose input size is not a multiple of it stays float;
    - `symmetric`: codes centred on zero (one scale per group), or asymmetric (a scale and a
      zero per group; more accurate at 4 bits). Default: symmetric at 8 bits, asymmetric at 4;
    - `modules_to_not_convert`: module names (or their last parts: "c_proj", "classifier")
      that stay float;
    - `quantize_lm_head`: also quantize the output layer (float by default, as in the reference);
    - `compute_dtype`: the float dtype the matrix products run in (default: the model's dtype).
    """

    bits: int = 8
    group_size: int = 32
    symmetric: bool | None = None
    modules_to_not_convert: list[str] = field(default_factory=list)
    quantize_lm_head: bool = False
    compute_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.bits not in (8, 4):
            raise ValueError(f"QuantizationConfig(bits={self.bits!r}): Haven quantizes to 8 or 4 bits")
        if self.group_size not in (32, 64, 128):
            raise ValueError(f"QuantizationConfig(group_size={self.group_size!r}): pass 32, 64 or 128")
        if self.symmetric is None:
            self.symmetric = self.bits == 8
        self.modules_to_not_convert = list(self.modules_to_not_convert or [])
        if isinstance(self.compute_dtype, str):
            self.compute_dtype = parse_dtype(self.compute_dtype, "compute_dtype")
        if self.compute_dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"compute_dtype must be float32, bfloat16 or float16, got {self.compute_dtype!r}")

    def skips(self, name: str) -> bool:
        """Whether the module called `name` stays float by `modules_to_not_convert`."""
        return any(
            name == key or name.endswith("." + key) or name.startswith(key + ".") or ("." + key + ".") in name
            for key in self.modules_to_not_convert
        )

    def to_dict(self) -> dict[str, Any]:
        """What config.json stores (`quantization_config`)."""
        out: dict[str, Any] = {
            "quant_method": QUANT_METHOD,
            "bits": self.bits,
            "group_size": self.group_size,
            "symmetric": self.symmetric,
            "modules_to_not_convert": list(self.modules_to_not_convert),
            "quantize_lm_head": self.quantize_lm_head,
        }
        if self.compute_dtype is not None:
            out["compute_dtype"] = str(self.compute_dtype).removeprefix("torch.")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantizationConfig:
        """A config.json `quantization_config` written by Haven; another tool's is refused by name."""
        method = data.get("quant_method")
        if method != QUANT_METHOD:
            raise CheckpointError(
                f"the checkpoint's weights were quantized with {method or 'an unnamed method'!r} "
                f"(config.json quantization_config), a format Haven cannot read; load the float "
                "(float32/bfloat16/float16) checkpoint and quantize it with load_in_8bit / load_in_4bit"
            )
        known = {"bits", "group_size", "symmetric", "modules_to_not_convert", "quantize_lm_head", "compute_dtype"}
        unknown = set(data) - known - {"quant_method"}
        if unknown:
            raise CheckpointError(
                f"config.json quantization_config has keys this Haven does not know: {sorted(unknown)}; "
                "it was written by a newer Haven, upgrade to load it"
            )
        return cls(**{k: v for k, v in data.items() if k in known})


# the reference's BitsAndBytesConfig fields and their defaults
_BNB_DEFAULTS: dict[str, Any] = {
    "load_in_8bit": False,
    "load_in_4bit": False,
    "llm_int8_threshold": 6.0,
    "llm_int8_skip_modules": None,
    "llm_int8_enable_fp32_cpu_offload": False,
    "llm_int8_has_fp16_weight": False,
    "bnb_4bit_compute_dtype": None,
    "bnb_4bit_quant_type": None,
    "bnb_4bit_use_double_quant": False,
    "bnb_4bit_quant_storage": None,
}

# fields Haven cannot honour when set to anything but their default, and why
_BNB_REFUSED = {
    "llm_int8_threshold": "Haven's int8 has no outlier decomposition (every weight is int8, activations stay float)",
    "llm_int8_enable_fp32_cpu_offload": "Haven does not offload: it runs the whole model on one device",
    "llm_int8_has_fp16_weight": "Haven's quantized layers are for inference; they keep no float copy for training",
    "bnb_4bit_quant_type": (
        "Haven's 4-bit format is neither bitsandbytes' 'fp4' nor 'nf4': it is int4 in groups of 32-128 with "
        "error-minimising scales; leave bnb_4bit_quant_type out, or pass haven.QuantizationConfig(bits=4, ...)"
    ),
    "bnb_4bit_use_double_quant": "Haven keeps its group scales in float16 (it does not quantize them again)",
}


class BitsAndBytesConfig:
    """The reference library's `BitsAndBytesConfig`, by its field names, read into Haven's own
    quantization: `load_in_8bit` -> int8 (symmetric), `load_in_4bit` -> int4 (asymmetric),
    both in groups of 32 (llama.cpp's q8_0 / q4_0 block), `llm_int8_skip_modules` -> modules kept float,
    `bnb_4bit_compute_dtype` -> the dtype the products run in. Other fields are accepted at their
    defaults; another value raises ValueError saying why Haven cannot honour it."""

    quant_method = "bitsandbytes"

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(_BNB_DEFAULTS)
        if unknown:
            raise TypeError(
                f"BitsAndBytesConfig got unknown field(s) {sorted(unknown)}; its fields are {sorted(_BNB_DEFAULTS)}"
            )
        for name, default in _BNB_DEFAULTS.items():
            setattr(self, name, kwargs.get(name, default))
        for name, reason in _BNB_REFUSED.items():
            value = getattr(self, name)
            if value != _BNB_DEFAULTS[name]:
                raise ValueError(f"BitsAndBytesConfig({name}={value!r}) cannot be honoured: {reason}")
        if self.bnb_4bit_quant_storage not in (None, "uint8", torch.uint8):
            raise ValueError(
                f"BitsAndBytesConfig(bnb_4bit_quant_storage={self.bnb_4bit_quant_storage!r}) cannot be honoured: "
                "Haven stores two 4-bit codes per uint8"
            )
        if self.load_in_8bit and self.load_in_4bit:
            raise ValueError("BitsAndBytesConfig: load_in_8bit and load_in_4bit are both set; pick one")
        if not (self.load_in_8bit or self.load_in_4bit):
            raise ValueError("BitsAndBytesConfig needs load_in_8bit=True or load_in_4bit=True")

    def to_haven(self) -> QuantizationConfig:
        compute = self.bnb_4bit_compute_dtype
        if self.load_in_8bit and compute is not None:
            raise ValueError("bnb_4bit_compute_dtype applies to load_in_4bit only; leave it out with load_in_8bit")
        return QuantizationConfig(
            bits=8 if self.load_in_8bit else 4,
            modules_to_not_convert=list(self.llm_int8_skip_modules or []),
            compute_dtype=parse_dtype(compute, "bnb_4bit_compute_dtype") if compute is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"quant_method": self.quant_method, **{k: getattr(self, k) for k in _BNB_DEFAULTS}}

    def __repr__(self) -> str:
        set_fields = {k: getattr(self, k) for k, v in _BNB_DEFAULTS.items() if getattr(self, k) != v}
        return f"BitsAndBytesConfig({', '.join(f'{k}={v!r}' for k, v in set_fields.items())})"


def resolve(
    load_in_8bit: bool = False, load_in_4bit: bool = False, quantization_config: Any = None
) -> QuantizationConfig | None:
    """The one QuantizationConfig that from_pretrained's quantization arguments ask for (None: float)."""
    if quantization_config is None:
        if load_in_8bit or load_in_4bit:
            return BitsAndBytesConfig(load_in_8bit=bool(load_in_8bit), load_in_4bit=bool(load_in_4bit)).to_haven()
        return None
    if load_in_8bit or load_in_4bit:
        raise ValueError(
            "pass load_in_8bit / load_in_4bit or quantization_config=, not both (they would have to agree)"
        )
    if isinstance(quantization_config, QuantizationConfig):
        return quantization_config
    if isinstance(quantization_config, BitsAndBytesConfig):
        return quantization_config.to_haven()
    if isinstance(quantization_config, dict):
        data = dict(quantization_config)
        method = data.pop("quant_method", None)
        if method == QUANT_METHOD:
            return QuantizationConfig.from_dict(quantization_config)
        if method not in (None, "bitsandbytes") or not set(data) <= set(_BNB_DEFAULTS):
            raise ValueError(
                f"quantization_config={quantization_config!r} is neither a BitsAndBytesConfig dict (fields "
                f"{sorted(_BNB_DEFAULTS)}) nor Haven's ({{'quant_method': 'haven', 'bits': 4, ...}}); "
                "Haven quantizes with those two only"
            )
        return BitsAndBytesConfig(**data).to_haven()
    raise TypeError(
        f"quantization_config must be a haven.QuantizationConfig, a haven.BitsAndBytesConfig or a dict, "
        f"got {type(quantization_config).__name__}"
    )
