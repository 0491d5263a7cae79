"""Megatron-LM GPT-2 checkpoints (the 345M release format) -> a GPT-2 directory.

The input is a `.zip` holding `release/mp_rank_00/model_optim_rng.pt` (or that `.pt` file itself):
a dict with `model.language_model.{embedding, transformer|encoder}`, optionally `args` (the
training arguments) and `checkpoint_version`. Megatron keeps Linear weights (out, in), where GPT-2's
Conv1D wants (in, out), and its fused QKV rows are ordered by checkpoint version:

- version 0: [q | k | v], each (n_embd) rows — GPT-2's own order;
- version 1: (heads, head_dim, 3);
- version 2 and later: (heads, 3, head_dim).

Loading uses `torch.load(weights_only=True)`; only `argparse.Namespace` is allowed beyond plain
tensors and containers, for the `args` entry.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import zipfile
from typing import Any

import torch

from ..checkpoint import save_state_dict
from ..errors import CheckpointError, ConfigError

ZIP_MEMBER = "release/mp_rank_00/model_optim_rng.pt"

# The 345M model NVIDIA released, for values a checkpoint without `args` cannot tell.
RELEASE_DEFAULTS = {"vocab_size": 50257, "n_head": 16, "activation_function": "gelu_new"}

_LAYER = re.compile(r"layers\.(\d+)\.(.+)\.(weight|bias)$")
_RENAMES = {
    "input_layernorm": "ln_1",
    "post_attention_layernorm": "ln_2",
    "attention.query_key_value": "attn.c_attn",
    "self_attention.query_key_value": "attn.c_attn",
    "attention.dense": "attn.c_proj",
    "self_attention.dense": "attn.c_proj",
    "mlp.dense_h_to_4h": "mlp.c_fc",
    "mlp.dense_4h_to_h": "mlp.c_proj",
}


def load_megatron(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict of a Megatron `.zip` or `.pt` file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} does not exist; pass the Megatron checkpoint .zip (or its .pt file)")
    if zipfile.is_zipfile(path) and not _is_torch_zip(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            member = (
                ZIP_MEMBER if ZIP_MEMBER in names else next((n for n in names if n.endswith(".pt")), None)
            )
            if member is None:
                raise CheckpointError(
                    f"{path} holds no {ZIP_MEMBER} (nor any .pt file); is it a Megatron checkpoint?"
                )
            data = io.BytesIO(archive.read(member))
        return _torch_load(data, path)
    return _torch_load(path, path)


def _is_torch_zip(path: str) -> bool:
    """torch.save writes zip files too: those have a `*/data.pkl` member."""
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("data.pkl") for n in archive.namelist())


def _torch_load(source: Any, name: str) -> dict[str, Any]:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointError(
            f"cannot read {name} as a weights-only torch checkpoint ({type(err).__name__}: {err}). "
            "Haven never unpickles arbitrary objects; re-save the checkpoint with plain tensors"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{name} is not a Megatron-LM checkpoint: expected a dict with a 'model' entry")
    return state


def _config_from(state: dict[str, Any], lm: dict[str, Any], layers: dict[str, Any], overrides: dict) -> dict:
    args = state.get("args")
    emb = lm["embedding"]
    words = emb["word_embeddings"]["weight"]
    positions = emb["position_embeddings"]["weight"]
    n_layer = 1 + max((int(m.group(1)) for k in layers if (m := _LAYER.match(k))), default=-1)
    fc = next((v for k, v in layers.items() if k.endswith("dense_h_to_4h.weight")), None)
    config: dict[str, Any] = {
        "n_embd": words.shape[1],
        "n_positions": positions.shape[0],
        "n_layer": n_layer,
        "n_inner": fc.shape[0] if fc is not None else None,
        **RELEASE_DEFAULTS,
    }
    if config["vocab_size"] > words.shape[0]:
        config["vocab_size"] = words.shape[0]
    if args is not None:
        config["vocab_size"] = getattr(args, "padded_vocab_size", words.shape[0])
        config["n_head"] = getattr(args, "num_attention_heads", config["n_head"])
        if getattr(args, "bias_gelu_fusion", False):
            config["activation_function"] = "gelu_fast"
        elif getattr(args, "openai_gelu", False):
            config["activation_function"] = "gelu_new"
        else:
            config["activation_function"] = "gelu"
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["n_embd"] % config["n_head"]:
        raise ConfigError(
            f"n_embd {config['n_embd']} is not a multiple of n_head {config['n_head']}; "
            "pass the model's number of heads with --n-head (or a --config file)"
        )
    return config


def _qkv_to_gpt2(t: torch.Tensor, version: float, n_head: int) -> torch.Tensor:
    """Reorder fused QKV rows (first dim) from Megatron's layout to [q | k | v]."""
    rest = t.shape[1:]
    hs = t.shape[0] // (3 * n_head)
    if version == 1.0:
        t = t.reshape(n_head, hs, 3, *rest).permute(2, 0, 1, *range(3, 3 + len(rest)))
    elif version >= 2.0:
        t = t.reshape(n_head, 3, hs, *rest).transpose(0, 1)
    return t.reshape(3 * n_head * hs, *rest)


def convert_megatron_gpt2(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config_file: str | os.PathLike | None = None,
    n_head: int | None = None,
    vocab_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Convert; write config.json, model.safetensors and generation_config.json. Returns the config dict."""
    state = load_megatron(checkpoint)
    try:
        lm = state["model"]["language_model"]
        layers = lm["transformer"] if "transformer" in lm else lm["encoder"]
        words = lm["embedding"]["word_embeddings"]["weight"]
        positions = lm["embedding"]["position_embeddings"]["weight"]
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"{checkpoint} lacks {err} under model.language_model; it is not a Megatron-LM GPT-2 checkpoint"
        ) from None
    overrides = {"n_head": n_head, "vocab_size": vocab_size}
    if config_file:
        with open(config_file, encoding="utf-8") as f:
            overrides = {**json.load(f), **{k: v for k, v in overrides.items() if v is not None}}
    config = _config_from(state, lm, layers, overrides)
    version = float(state.get("checkpoint_version", 0.0))
    heads = config["n_head"]

    out: dict[str, torch.Tensor] = {
        "transformer.wte.weight": words[: config["vocab_size"]],
        "transformer.wpe.weight": positions,
    }
    for key, value in layers.items():
        if key.startswith("final_layernorm."):
            out["transformer.ln_f." + key.split(".", 1)[1]] = value
            continue
        m = _LAYER.match(key)
        if m is None or m.group(2) not in _RENAMES:
            continue  # _extra_state and other bookkeeping entries
        layer, op, kind = int(m.group(1)), m.group(2), m.group(3)
        name = f"transformer.h.{layer}.{_RENAMES[op]}.{kind}"
        if op.endswith("query_key_value"):
            value = _qkv_to_gpt2(value, version, heads)
        if kind == "weight" and value.dim() == 2:
            value = value.t()  # Linear (out, in) -> Conv1D (in, out)
        out[name] = value
    if "transformer.ln_f.weight" not in out:
        raise CheckpointError(f"{checkpoint} has no final_layernorm weights; the checkpoint is incomplete")
    out = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in out.items()}

    full = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "layer_norm_epsilon": 1e-5,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": True,
        **config,
    }
    from ..models.gpt2 import GPT2Config

    gpt2 = GPT2Config(**full)
    gpt2.architectures = ["GPT2LMHeadModel"]
    os.makedirs(out_dir, exist_ok=True)
    gpt2.save_pretrained(out_dir)
    save_state_dict(out, os.fspath(out_dir), "5GB")
    _write_generation_config(out_dir, gpt2.bos_token_id, gpt2.eos_token_id)
    return gpt2.to_dict()


def _write_generation_config(out_dir: str | os.PathLike, bos: Any, eos: Any) -> None:
    with open(os.path.join(out_dir, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos}, f, indent=2)
        f.write("\n")
