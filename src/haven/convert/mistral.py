"""Raw Mistral releases (`params.json` + `consolidated.*.pth` or `consolidated.safetensors`) -> Mistral.

The raw weights use Meta's names (`layers.0.attention.wq.weight`, `feed_forward.w1` ...) and the
interleaved RoPE layout: each head's query/key rows come in (real, imaginary) pairs. Haven, like
the reference library, rotates halves, so those rows are permuted per head: pair i's two rows go
to positions i and i + head_dim/2. Several `consolidated.NN.pth` files are model-parallel shards
of every matrix and are concatenated back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import torch

from ..checkpoint import save_state_dict
from ..errors import CheckpointError, ConfigError

_RENAMES = [
    (r"^tok_embeddings\.weight$", "model.embed_tokens.weight"),
    (r"^norm\.weight$", "model.norm.weight"),
    (r"^output\.weight$", "lm_head.weight"),
    (r"^layers\.(\d+)\.attention_norm\.weight$", r"model.layers.\1.input_layernorm.weight"),
    (r"^layers\.(\d+)\.ffn_norm\.weight$", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"^layers\.(\d+)\.attention\.w([qkvo])\.weight$", r"model.layers.\1.self_attn.\2_proj.weight"),
    (r"^layers\.(\d+)\.feed_forward\.w1\.weight$", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"^layers\.(\d+)\.feed_forward\.w2\.weight$", r"model.layers.\1.mlp.down_proj.weight"),
    (r"^layers\.(\d+)\.feed_forward\.w3\.weight$", r"model.layers.\1.mlp.up_proj.weight"),
]
# In model-parallel shards these are split along their input dimension; norms are replicated.
_SPLIT_ON_INPUT = ("tok_embeddings.weight", ".attention.wo.weight", ".feed_forward.w2.weight")


def rename(key: str) -> str | None:
    for pattern, target in _RENAMES:
        new, n = re.subn(pattern, target, key)
        if n:
            return new
    return None


def interleaved_to_halves(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(n_heads * head_dim, in) rows in (re, im) pairs -> rotate-half order, per head."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.reshape(n_heads, hd // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def config_from_params(params: dict[str, Any], max_position_embeddings: int = 32768) -> dict[str, Any]:
    """A Mistral config.json dict from a raw `params.json`."""
    try:
        config = {
            "hidden_size": params["dim"],
            "num_hidden_layers": params["n_layers"],
            "intermediate_size": params["hidden_dim"],
            "num_attention_heads": params["n_heads"],
            "rms_norm_eps": params["norm_eps"],
            "vocab_size": params["vocab_size"],
        }
    except KeyError as err:
        raise ConfigError(
            f"params.json lacks {err}; a raw Mistral params.json has dim, n_layers, hidden_dim, n_heads, "
            "norm_eps and vocab_size"
        ) from None
    window = params.get("sliding_window")
    config.update(
        {
            "num_key_value_heads": params.get("n_kv_heads", params["n_heads"]),
            "head_dim": params.get("head_dim", params["dim"] // params["n_heads"]),
            "max_position_embeddings": params.get("max_seq_len", max_position_embeddings),
            "sliding_window": int(window) if window is not None else None,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": float(params.get("rope_theta", 10000.0)),
            },
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        }
    )
    return config


def load_raw_weights(raw_dir: str) -> list[dict[str, torch.Tensor]]:
    """The raw state dicts: one per model-parallel shard (a single one for most releases)."""
    names = os.listdir(raw_dir)
    pth = sorted(
        (n for n in names if re.fullmatch(r"consolidated\.\d+\.pth", n)), key=lambda n: int(n.split(".")[1])
    )
    if pth:
        shards = []
        for name in pth:
            try:
                shards.append(
                    torch.load(os.path.join(raw_dir, name), map_location="cpu", weights_only=True, mmap=True)
                )
            except Exception as err:  # unpickling errors come in many types
                raise CheckpointError(
                    f"cannot read {name} as a weights-only torch file ({type(err).__name__}: {err}); "
                    "Haven never unpickles arbitrary objects"
                ) from None
        return shards
    if "consolidated.safetensors" in names:
        from ..checkpoint import load_safetensors

        return [load_safetensors(os.path.join(raw_dir, "consolidated.safetensors"))]
    raise CheckpointError(
        f"{raw_dir} has no consolidated.00.pth (or consolidated.safetensors); pass the directory of a raw "
        "Mistral release, which holds params.json and the consolidated weights"
    )


def _merge(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if len(shards) == 1:
        return shards[0]
    merged = {}
    for key, first in shards[0].items():
        if first.dim() == 1:  # norms are replicated
            merged[key] = first
        else:
            dim = 1 if key.endswith(_SPLIT_ON_INPUT) else 0
            merged[key] = torch.cat([s[key] for s in shards], dim=dim)
    return merged


def convert_mistral(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    max_position_embeddings: int = 32768,
    dtype: torch.dtype | None = None,
    max_shard_size: str = "5GB",
) -> dict[str, Any]:
    """Convert a raw release; write config.json, safetensors, generation_config.json (+ tokenizer.model)."""
    raw_dir, out_dir = os.fspath(raw_dir), os.fspath(out_dir)
    params_path = os.path.join(raw_dir, "params.json")
    if not os.path.isfile(params_path):
        raise CheckpointError(f"{raw_dir} has no params.json; pass the directory of a raw Mistral release")
    with open(params_path, encoding="utf-8") as f:
        params = json.load(f)
    config = config_from_params(params, max_position_embeddings)
    n_heads, n_kv = config["num_attention_heads"], config["num_key_value_heads"]

    out: dict[str, torch.Tensor] = {}
    for key, tensor in _merge(load_raw_weights(raw_dir)).items():
        name = rename(key)
        if name is None:
            continue  # e.g. rope.freqs, which the runtime recomputes
        if name.endswith("q_proj.weight"):
            tensor = interleaved_to_halves(tensor, n_heads)
        elif name.endswith("k_proj.weight"):
            tensor = interleaved_to_halves(tensor, n_kv)
        out[name] = (tensor.to(dtype) if dtype is not None else tensor).contiguous()
    expected = 3 + 9 * config["num_hidden_layers"]
    if len(out) != expected:
        raise CheckpointError(
            f"expected {expected} tensors for {config['num_hidden_layers']} layers, found {len(out)}; "
            "the raw checkpoint is incomplete or does not match params.json"
        )

    from ..models.llama import MistralConfig

    mistral = MistralConfig(**config)
    mistral.architectures = ["MistralForCausalLM"]
    os.makedirs(out_dir, exist_ok=True)
    mistral.save_pretrained(out_dir)
    save_state_dict(out, out_dir, max_shard_size)
    with open(os.path.join(out_dir, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=2)
        f.write("\n")
    for name in os.listdir(raw_dir):
        if name.startswith("tokenizer.model"):  # tokenizer.model, tokenizer.model.v3 ...
            shutil.copy(os.path.join(raw_dir, name), os.path.join(out_dir, "tokenizer.model"))
            break
    return mistral.to_dict()
