"""Converters: raw inputs are built from tiny reference models (the inverse transform), converted
with `haven convert`, and the result must give the original model's logits in Haven and in the
reference library."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures.decoders import random_ids
from haven.auto import AutoModelForCausalLM
from haven.cli import main
from haven.errors import CheckpointError
from haven.layers import apply_rotary

# -- Megatron GPT-2 ---------------------------------------------------------------------------------


def _to_megatron_qkv(t: torch.Tensor, version: float, n_head: int) -> torch.Tensor:
    """GPT-2's [q | k | v] rows -> Megatron's stored order for a checkpoint version."""
    rest = t.shape[1:]
    hs = t.shape[0] // (3 * n_head)
    t = t.reshape(3, n_head, hs, *rest)
    if version == 1.0:
        t = t.permute(1, 2, 0, *range(3, 3 + len(rest)))  # (heads, head_dim, 3)
    elif version >= 2.0:
        t = t.transpose(0, 1)  # (heads, 3, head_dim)
    return t.reshape(3 * n_head * hs, *rest)


def make_megatron(
    gpt2_dir: str, version: float | None, args: argparse.Namespace | None, pad_rows: int
) -> dict:
    sd = load_file(os.path.join(gpt2_dir, "model.safetensors"))
    cfg = json.load(open(os.path.join(gpt2_dir, "config.json")))
    n_head, n_layer = cfg["n_head"], cfg["n_layer"]
    words = sd["transformer.wte.weight"]
    words = torch.cat([words, torch.randn(pad_rows, words.shape[1])])  # Megatron pads the vocabulary
    layers = {}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        layers[f"layers.{i}.input_layernorm.weight"] = sd[p + "ln_1.weight"]
        layers[f"layers.{i}.input_layernorm.bias"] = sd[p + "ln_1.bias"]
        layers[f"layers.{i}.attention.query_key_value.weight"] = _to_megatron_qkv(
            sd[p + "attn.c_attn.weight"].t(), version or 0.0, n_head
        )
        layers[f"layers.{i}.attention.query_key_value.bias"] = _to_megatron_qkv(
            sd[p + "attn.c_attn.bias"], version or 0.0, n_head
        )
        layers[f"layers.{i}.attention.dense.weight"] = sd[p + "attn.c_proj.weight"].t().contiguous()
        layers[f"layers.{i}.attention.dense.bias"] = sd[p + "attn.c_proj.bias"]
        layers[f"layers.{i}.post_attention_layernorm.weight"] = sd[p + "ln_2.weight"]
        layers[f"layers.{i}.post_attention_layernorm.bias"] = sd[p + "ln_2.bias"]
        layers[f"layers.{i}.mlp.dense_h_to_4h.weight"] = sd[p + "mlp.c_fc.weight"].t().contiguous()
        layers[f"layers.{i}.mlp.dense_h_to_4h.bias"] = sd[p + "mlp.c_fc.bias"]
        layers[f"layers.{i}.mlp.dense_4h_to_h.weight"] = sd[p + "mlp.c_proj.weight"].t().contiguous()
        layers[f"layers.{i}.mlp.dense_4h_to_h.bias"] = sd[p + "mlp.c_proj.bias"]
    layers["final_layernorm.weight"] = sd["transformer.ln_f.weight"]
    layers["final_layernorm.bias"] = sd["transformer.ln_f.bias"]
    embedding = {
        "word_embeddings": {"weight": words},
        "position_embeddings": {"weight": sd["transformer.wpe.weight"]},
    }
    state = {"model": {"language_model": {"embedding": embedding, "transformer": layers}}}
    if version is not None:
        state["checkpoint_version"] = version
    if args is not None:
        state["args"] = args
    return state


def _save_zip(state: dict, path: str) -> str:
    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("release/mp_rank_00/model_optim_rng.pt", buf.getvalue())
    return path


def _assert_same_logits(original: str, converted: str, vocab: int) -> None:
    import transformers

    ids = random_ids(vocab, (2, 11), seed=7)
    with torch.no_grad():
        expected = transformers.AutoModelForCausalLM.from_pretrained(original).eval()(ids).logits
        ours = AutoModelForCausalLM.from_pretrained(converted)(ids).logits
        theirs = transformers.AutoModelForCausalLM.from_pretrained(converted).eval()(ids).logits
    assert torch.allclose(ours, expected, atol=1e-4), (ours - expected).abs().max()
    assert torch.allclose(theirs, expected, atol=1e-4), (theirs - expected).abs().max()


@pytest.mark.parametrize("version", [None, 1.0, 3.0])
def test_megatron_gpt2_zip_round_trip(tmp_path, gpt2_dir, capsys, version):
    vocab = json.load(open(os.path.join(gpt2_dir, "config.json")))["vocab_size"]
    ckpt = _save_zip(make_megatron(gpt2_dir, version, None, pad_rows=64), str(tmp_path / "ckpt.zip"))
    out = tmp_path / "out"
    rc = main(["convert", "megatron-gpt2", ckpt, str(out), "--n-head", "4", "--vocab-size", str(vocab)])
    assert rc == 0
    assert "wrote a GPT-2 (2 layers, 32 wide, 4 heads" in capsys.readouterr().out
    cfg = json.load(open(out / "config.json"))
    assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu_new"
    assert json.load(open(out / "generation_config.json"))["eos_token_id"] == 50256
    _assert_same_logits(gpt2_dir, str(out), vocab)


def test_megatron_gpt2_args_and_plain_pt(tmp_path, gpt2_dir):
    """A checkpoint with training `args` (an argparse.Namespace) gives its own sizes and activation."""
    vocab = json.load(open(os.path.join(gpt2_dir, "config.json")))["vocab_size"]
    args = argparse.Namespace(
        padded_vocab_size=vocab, num_attention_heads=4, openai_gelu=True, bias_gelu_fusion=False
    )
    pt = tmp_path / "model_optim_rng.pt"
    torch.save(make_megatron(gpt2_dir, 2.0, args, pad_rows=0), pt)
    out = tmp_path / "out"
    assert main(["convert", "megatron-gpt2", str(pt), str(out)]) == 0
    assert json.load(open(out / "config.json"))["n_head"] == 4
    _assert_same_logits(gpt2_dir, str(out), vocab)


def test_megatron_refuses_pickled_objects_and_foreign_files(tmp_path, capsys):
    import datetime

    bad = tmp_path / "bad.pt"
    torch.save({"model": {}, "x": datetime.datetime(2020, 1, 1)}, bad)  # any non-allowlisted object
    assert main(["convert", "megatron-gpt2", str(bad), str(tmp_path / "o")]) == 1
    assert "weights-only" in capsys.readouterr().err
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="no release/mp_rank_00/model_optim_rng.pt"):
        from haven.convert.megatron_gpt2 import convert_megatron_gpt2

        convert_megatron_gpt2(other, tmp_path / "o")


# -- Mistral ----------------------------------------------------------------------------------------


def halves_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.reshape(n_heads, 2, hd // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


RAW_NAMES = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
}


def make_raw_mistral(mistral_dir: str) -> tuple[dict, dict]:
    cfg = json.load(open(os.path.join(mistral_dir, "config.json")))
    sd = load_file(os.path.join(mistral_dir, "model.safetensors"))
    raw = {}
    for key, value in sd.items():
        if key in RAW_NAMES:
            raw[RAW_NAMES[key]] = value
            continue
        layer, rest = key.removeprefix("model.layers.").split(".", 1)
        if rest == "self_attn.q_proj.weight":
            value = halves_to_interleaved(value, cfg["num_attention_heads"])
        elif rest == "self_attn.k_proj.weight":
            value = halves_to_interleaved(value, cfg["num_key_value_heads"])
        raw[f"layers.{layer}.{RAW_NAMES[rest]}"] = value.contiguous()
    params = {
        "dim": cfg["hidden_size"],
        "n_layers": cfg["num_hidden_layers"],
        "head_dim": cfg["head_dim"],
        "hidden_dim": cfg["intermediate_size"],
        "n_heads": cfg["num_attention_heads"],
        "n_kv_heads": cfg["num_key_value_heads"],
        "norm_eps": cfg["rms_norm_eps"],
        "vocab_size": cfg["vocab_size"],
        "sliding_window": str(cfg["sliding_window"]),  # some releases write it as a string
        "rope_theta": cfg["rope_parameters"]["rope_theta"],
        "max_seq_len": cfg["max_position_embeddings"],
    }
    return raw, params


def _split_model_parallel(raw: dict, n: int) -> list[dict]:
    shards: list[dict] = [{} for _ in range(n)]
    for key, value in raw.items():
        if value.dim() == 1:
            parts = [value] * n
        elif key.endswith(("tok_embeddings.weight", "attention.wo.weight", "feed_forward.w2.weight")):
            parts = value.chunk(n, dim=1)
        else:
            parts = value.chunk(n, dim=0)
        for shard, part in zip(shards, parts, strict=True):
            shard[key] = part.clone()
    return shards


@pytest.mark.parametrize("layout", ["one-pth", "two-pth-shards", "safetensors"])
def test_mistral_round_trip(tmp_path, mistral_dir, capsys, layout):
    raw, params = make_raw_mistral(mistral_dir)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "params.json").write_text(json.dumps(params))
    (raw_dir / "tokenizer.model.v3").write_bytes(b"not really a sentencepiece model")
    if layout == "one-pth":
        torch.save(raw, raw_dir / "consolidated.00.pth")
    elif layout == "two-pth-shards":
        for i, shard in enumerate(_split_model_parallel(raw, 2)):
            torch.save(shard, raw_dir / f"consolidated.0{i}.pth")
    else:
        save_file(raw, raw_dir / "consolidated.safetensors")
    out = tmp_path / "out"
    assert main(["convert", "mistral", str(raw_dir), str(out)]) == 0
    assert "sliding window 4" in capsys.readouterr().out
    cfg = json.load(open(out / "config.json"))
    assert cfg["model_type"] == "mistral" and cfg["sliding_window"] == 4 and cfg["num_key_value_heads"] == 2
    assert (out / "tokenizer.model").exists()
    _assert_same_logits(mistral_dir, str(out), params["vocab_size"])


def test_mistral_permutation_matches_interleaved_rope(mistral_dir):
    """Independent of the round trip: attention scores computed the original way (query/key rows
    in (re, im) pairs, rotated as complex numbers) equal Haven's rotate-half scores after conversion."""
    from haven.convert.mistral import interleaved_to_halves

    raw, params = make_raw_mistral(mistral_dir)
    hd, theta = params["head_dim"], params["rope_theta"]
    wq, wk = raw["layers.0.attention.wq.weight"], raw["layers.0.attention.wk.weight"]
    x = torch.randn(6, params["dim"])
    pos = torch.arange(6).float()
    freqs = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
    rot = torch.polar(torch.ones(6, hd // 2), torch.outer(pos, freqs))  # (T, hd/2) e^{i pos theta}

    def original(w):  # head 0, Meta-style complex rotation
        h = (x @ w.t())[:, :hd].reshape(6, hd // 2, 2)
        return torch.view_as_real(torch.view_as_complex(h.contiguous()) * rot).flatten(1)

    expected = original(wq) @ original(wk).t()
    q = (x @ interleaved_to_halves(wq, params["n_heads"]).t())[:, :hd]
    k = (x @ interleaved_to_halves(wk, params["n_kv_heads"]).t())[:, :hd]
    emb = torch.cat([torch.outer(pos, freqs)] * 2, dim=-1)
    q, k = apply_rotary(q, emb.cos(), emb.sin()), apply_rotary(k, emb.cos(), emb.sin())
    assert torch.allclose(q @ k.t(), expected, atol=1e-4)
    assert not math.isclose(float((x @ wq.t())[:, :hd].norm()), 0.0)


def test_mistral_bad_inputs(tmp_path, capsys):
    assert main(["convert", "mistral", str(tmp_path), str(tmp_path / "o")]) == 1
    assert "has no params.json" in capsys.readouterr().err
    (tmp_path / "params.json").write_text(json.dumps({"dim": 8}))
    assert main(["convert", "mistral", str(tmp_path), str(tmp_path / "o")]) == 1
    assert "params.json lacks 'n_layers'" in capsys.readouterr().err


def test_megatron_config_file_and_dtype(tmp_path, gpt2_dir):
    cfg = json.load(open(os.path.join(gpt2_dir, "config.json")))
    ckpt = _save_zip(make_megatron(gpt2_dir, 2.0, None, pad_rows=0), str(tmp_path / "ckpt.zip"))
    config_file = tmp_path / "gpt2.json"
    config_file.write_text(json.dumps({"n_head": 4, "vocab_size": cfg["vocab_size"]}))
    out = tmp_path / "out"
    assert (
        main(
            ["convert", "megatron-gpt2", ckpt, str(out), "--config", str(config_file), "--dtype", "bfloat16"]
        )
        == 0
    )
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16 and model.config.n_head == 4
    ref = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids = random_ids(cfg["vocab_size"], (1, 8))
    with torch.no_grad():
        assert (model(ids).logits.float() - ref(ids).logits).abs().max() < 0.1


class _Exploit:
    """Unpickling this would create `marker` (a stand-in for running any command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["megatron-gpt2", "mistral"])
def test_converters_never_run_pickled_code(tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    src = tmp_path / "src"
    src.mkdir()
    payload = {"model": {}, "x": _Exploit(marker)} if kind == "megatron-gpt2" else {"x": _Exploit(marker)}
    if kind == "mistral":
        params = {"dim": 8, "n_layers": 1, "hidden_dim": 16, "n_heads": 2, "norm_eps": 1e-5, "vocab_size": 8}
        (src / "params.json").write_text(json.dumps(params))
        target = src / "consolidated.00.pth"
    else:
        target = src / "ckpt.pt"
    torch.save(payload, target)
    arg = str(target) if kind == "megatron-gpt2" else str(src)
    assert main(["convert", kind, arg, str(tmp_path / "o")]) == 1
    assert "never unpickles arbitrary objects" in capsys.readouterr().err
    assert not marker.exists()
