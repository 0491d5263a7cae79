"""`haven convert megatron-gpt2 CHECKPOINT OUT_DIR` and `haven convert mistral RAW_DIR OUT_DIR`."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a Megatron-LM GPT-2 or raw Mistral checkpoint to a model directory",
        description="Convert checkpoints from other formats into directories Haven (and transformers) load.",
    )
    sub = parser.add_subparsers(dest="format", metavar="FORMAT")

    meg = sub.add_parser(
        "megatron-gpt2",
        help="a Megatron-LM GPT-2 checkpoint (.zip with release/mp_rank_00/model_optim_rng.pt, or the .pt)",
    )
    meg.add_argument("checkpoint", help="the checkpoint .zip or .pt file")
    meg.add_argument("out_dir", help="directory to write config.json and model.safetensors to")
    meg.add_argument(
        "--config", dest="config_file", help="a GPT-2 config.json to use instead of inferring one"
    )
    meg.add_argument(
        "--n-head",
        type=int,
        dest="n_head",
        help="attention heads, when the checkpoint has no args (default 16)",
    )
    meg.add_argument(
        "--vocab-size", type=int, dest="vocab_size", help="rows of the embedding to keep (default 50257)"
    )
    meg.add_argument("--dtype", help="cast the weights (float32, float16, bfloat16); default: keep")
    meg.set_defaults(func=_megatron)

    mis = sub.add_parser("mistral", help="a raw Mistral release: params.json + consolidated.*.pth")
    mis.add_argument("raw_dir", help="directory with params.json and consolidated.00.pth (or .safetensors)")
    mis.add_argument("out_dir", help="directory to write config.json and safetensors weights to")
    mis.add_argument(
        "--max-position-embeddings",
        type=int,
        default=32768,
        dest="max_position_embeddings",
        help="context length to record when params.json has no max_seq_len (default 32768)",
    )
    mis.add_argument("--dtype", help="cast the weights (float32, float16, bfloat16); default: keep")
    mis.add_argument("--max-shard-size", default="5GB", dest="max_shard_size", help="safetensors shard size")
    mis.set_defaults(func=_mistral)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _dtype(name: str | None):
    from ..dtypes import dtype_or_auto  # torch: imported only when a conversion runs

    return dtype_or_auto(name, "--dtype")


def _megatron(args: argparse.Namespace) -> int:
    from .megatron_gpt2 import convert_megatron_gpt2

    config = convert_megatron_gpt2(
        args.checkpoint,
        args.out_dir,
        config_file=args.config_file,
        n_head=args.n_head,
        vocab_size=args.vocab_size,
        dtype=_dtype(args.dtype),
    )
    print(
        f"wrote a GPT-2 ({config['n_layer']} layers, {config['n_embd']} wide, {config['n_head']} heads, "
        f"vocabulary {config['vocab_size']}) to {args.out_dir}; add the GPT-2 tokenizer files to use it"
    )
    return 0


def _mistral(args: argparse.Namespace) -> int:
    from .mistral import convert_mistral

    config = convert_mistral(
        args.raw_dir,
        args.out_dir,
        max_position_embeddings=args.max_position_embeddings,
        dtype=_dtype(args.dtype),
        max_shard_size=args.max_shard_size,
    )
    window = config.get("sliding_window")
    print(
        f"wrote a Mistral ({config['num_hidden_layers']} layers, {config['hidden_size']} wide, "
        f"{config['num_attention_heads']} heads / {config['num_key_value_heads']} kv heads, "
        f"sliding window {window if window else 'off'}) to {args.out_dir}"
    )
    return 0
