"""Small blocks shared by the architectures: activations, masks, attention, norms, KV cache.

Models register no buffers that are not in the checkpoint (position ids, rotary tables are
computed on the fly), so a model built on the `meta` device is complete once its weights are
assigned.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# -- activations -----------------------------------------------------------------------------------


_float32_constants: dict[tuple, tuple[torch.Tensor, ...]] = {}


def float32_constants(device: torch.device, *values: float) -> tuple[torch.Tensor, ...]:
    """`values` as float32 0-dim tensors on `device`, made once.

    A float32 op with a Python number converts it on every call (about 4 us on CPU, much of a
    tiny op's time); a float32 0-dim tensor holds the very value the kernel would convert to."""
    key = (device, values)
    found = _float32_constants.get(key)
    if found is None:
        with torch.inference_mode(False):  # usable later under autograd as well
            found = tuple(torch.tensor(float(v), dtype=torch.float32, device=device) for v in values)
        _float32_constants[key] = found
    return found


_GELU_NEW = (0.5, 1.0, math.sqrt(2.0 / math.pi), 0.044715)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (GPT-2's `gelu_new`), the reference's formula op for op (in
    float32 on CPU with `float32_constants`, bit-identical)."""
    if x.dtype == torch.float32 and x.is_cpu:
        half, one, k, a = float32_constants(x.device, *_GELU_NEW)
    else:
        half, one, k, a = _GELU_NEW
    return half * x * (one + torch.tanh(k * (x + a * torch.pow(x, 3.0))))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACT2FN = {
    "gelu": F.gelu,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_new,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def get_activation(name: str):
    try:
        return ACT2FN[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; supported: {', '.join(sorted(ACT2FN))}") from None


# -- masks -------------------------------------------------------------------------------------------


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) 1/0 mask -> (B, 1, 1, S) boolean mask for SDPA (True = attend); None if no padding."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


def causal_mask(
    attention_mask: torch.Tensor | None,
    q_len: int,
    past_len: int,
    *,
    batch_size: int,
    device: torch.device,
    sliding_window: int | None = None,
) -> torch.Tensor | None:
    """Boolean (B, 1, q_len, past_len + q_len) mask: causal, padding and optional sliding window.

    Query rows that may attend to nothing (padding positions of a left-padded batch) are opened
    to every key, as the reference does for SDPA, so they hold finite values instead of NaN.
    Returns None when plain causal attention with no padding suffices and SDPA's `is_causal`
    can be used (q_len == total length, no window). Under torch.compile the two shortcuts that
    read the mask's values (no padding at all; no fully masked row) are not taken: the mask is
    built as if they did not hold, which gives the same attention without a graph break.
    """
    kv_len = past_len + q_len
    compiling = torch.compiler.is_compiling()
    no_padding = attention_mask is None or (not compiling and bool(attention_mask[:, :kv_len].all()))
    window_matters = sliding_window is not None and kv_len > sliding_window
    if no_padding and not window_matters and past_len == 0:
        return None
    q_pos = torch.arange(past_len, kv_len, device=device)[:, None]  # (q, 1)
    k_pos = torch.arange(kv_len, device=device)[None, :]  # (1, kv)
    mask = k_pos <= q_pos
    if window_matters:
        mask = mask & (k_pos > q_pos - sliding_window)
    mask = mask[None, None].expand(batch_size, 1, q_len, kv_len)
    if not no_padding:
        mask = mask & attention_mask[:, None, None, :kv_len].bool()
    if not no_padding or window_matters:
        dead = ~mask.any(dim=-1, keepdim=True)
        if compiling or bool(dead.any()):
            mask = mask | dead
    return mask


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
    dropout: float = 0.0,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over (B, nh, T, hs) tensors; k/v may have fewer heads (GQA).

    With `return_weights` the attention probabilities are computed explicitly (slower) so they
    can be returned, as `output_attentions=True` asks.
    """
    if k.shape[1] != q.shape[1]:  # grouped-query attention: repeat kv heads
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    if not return_weights:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal and mask is None, scale=scale
        )
        return out, None
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal and mask is None:
        t, s = q.shape[-2], k.shape[-2]
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    if dropout:
        weights = F.dropout(weights, p=dropout)
    return weights @ v, weights


# -- norms ---------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 whatever the input dtype (as Llama's)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.variance_epsilon)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float | torch.Tensor, n: torch.Tensor | None = None
) -> torch.Tensor:
    """weight * x * rsqrt(mean(x^2) + eps), the mean taken in float32 (`RMSNorm`).

    On CPU, the reference's ops one for one (on CPU its mean is sum / n; a bfloat16 or float16 x
    is widened to float32 first and the result narrowed back), so the results are bit-identical
    in half the dispatches of F.rms_norm, whose fused CPU kernel takes about 40 us on a decode
    step's one row; `n` and `eps` are then best given as float32 0-dim tensors
    (`float32_constants`), which saves a conversion per op."""
    if x.is_cpu:
        h = x if x.dtype == torch.float32 else x.float()
        if n is None:
            n, eps = float32_constants(x.device, x.shape[-1], float(eps))
        normed = h * (h * h).sum(-1, keepdim=True).div_(n).add_(eps).rsqrt_()
        return weight * (normed if h is x else normed.to(x.dtype))
    normed = F.rms_norm(x.float(), (x.shape[-1],), None, float(eps))
    return weight * normed.to(x.dtype)


# -- KV cache --------------------------------------------------------------------------------------------


class KVCache:
    """Preallocated key/value buffers for every layer of a decoder.

    Keys and values live in (B, n_kv_heads, capacity, head_dim) tensors written by index
    assignment; capacity grows in `chunk`-sized steps (or is sized once with `max_length`), so
    a decoding step never concatenates the whole cache.

    A forward pass over T new tokens calls `update(layer, k, v)` once per layer (each call
    writes positions [length, length + T) and returns views of [0, length + T)) and then
    `advance(T)` once. `reorder(index)` permutes the batch, as beam search needs.
    """

    def __init__(self, max_length: int = 0, chunk: int = 256):
        self.max_length = max_length
        self.chunk = chunk
        self.length = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def get_seq_length(self) -> int:
        return self.length

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def _ensure(self, layer: int, k: torch.Tensor, needed: int) -> None:
        while len(self.keys) <= layer:
            self.keys.append(k.new_empty(0))
            self.values.append(k.new_empty(0))
        buf = self.keys[layer]
        if buf.dim() == 4 and buf.shape[2] >= needed:
            return
        b, h, _, d = k.shape
        size = max(needed, self.max_length)
        size = ((size + self.chunk - 1) // self.chunk) * self.chunk
        new_k = k.new_empty(b, h, size, d)
        new_v = k.new_empty(b, h, size, d)
        if buf.dim() == 4 and self.length:
            new_k[:, :, : self.length] = self.keys[layer][:, :, : self.length]
            new_v[:, :, : self.length] = self.values[layer][:, :, : self.length]
        self.keys[layer], self.values[layer] = new_k, new_v

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = k.shape[2]
        end = self.length + n
        if layer >= len(self.keys) or self.keys[layer].dim() != 4 or self.keys[layer].shape[2] < end:
            self._ensure(layer, k, end)
        keys, values = self.keys[layer], self.values[layer]
        keys.narrow(2, self.length, n).copy_(k)
        values.narrow(2, self.length, n).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def advance(self, n: int) -> None:
        self.length += n

    def check_batch(self, batch: int) -> None:
        """A cache holds rows for one batch size: an empty one (new, or `crop(0)`) is re-sized, a
        filled one with another batch size is refused (its buffers would otherwise broadcast or
        fail deep inside attention with a bare shape error)."""
        held = next((k.shape[0] for k in self.keys if k.dim() == 4), batch)
        if held == batch:
            return
        if self.length == 0:
            self.keys.clear()
            self.values.clear()
            return
        raise ValueError(
            f"the cache holds {self.length} cached tokens for a batch of {held} but this call has a "
            f"batch of {batch}; pass the same rows as the call that filled it, or a new cache (None)"
        )

    def crop(self, length: int) -> None:
        """Forget everything after the first `length` positions."""
        self.length = min(self.length, length)

    def reorder(self, index: torch.Tensor) -> None:
        """Select/permute batch rows (beam search): row i becomes old row index[i]."""
        self.keys = [t.index_select(0, index) for t in self.keys]
        self.values = [t.index_select(0, index) for t in self.values]

    def __len__(self) -> int:
        return len(self.keys)


# -- rotary position embeddings (decoders) --------------------------------------------------------------

ROPE_TYPES = ("default", "linear", "dynamic", "llama3")


def cache_argument(cache: KVCache | None, kwargs: dict[str, Any], *, only_cache: bool = True) -> KVCache | None:
    """The KV cache a call was given: `cache` (the reference's name since transformers 5.25) or
    `past_key_values`, its older name, popped from `kwargs`. With `only_cache`, any other leftover
    keyword is refused: a forward never ignores what it is told."""
    older = kwargs.pop("past_key_values", None)
    if only_cache and kwargs:
        raise TypeError(f"unexpected keyword arguments for a decoder call: {', '.join(sorted(kwargs))}")
    if older is None:
        return cache
    if cache is not None:
        raise TypeError("pass the KV cache once: `cache=` (`past_key_values=` is its older name)")
    return older


def rope_parameters(config) -> dict:
    """The config's RoPE settings as one dict with `rope_type` and `rope_theta`.

    Reads the current reference's `rope_parameters` key or the older `rope_scaling` (+ top-level
    `rope_theta`); `type` is accepted for `rope_type`, as old config files write it.
    """
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params["rope_type"] = params.get("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    if params["rope_type"] not in ROPE_TYPES:
        raise ValueError(
            f"rope type {params['rope_type']!r} is not supported by Haven (supported: {', '.join(ROPE_TYPES)}); "
            "check rope_parameters / rope_scaling in config.json"
        )
    if params["rope_type"] == "llama3":
        params.setdefault("original_max_position_embeddings", config.max_position_embeddings)
    return params


def rope_inv_freq(params: dict, dim: int, max_position: int, seq_len: int | None = None) -> torch.Tensor:
    """Inverse frequencies (dim // 2,) in float32 for a RoPE type; `seq_len` only matters for dynamic."""
    theta = params["rope_theta"]
    kind = params["rope_type"]
    if kind == "dynamic" and seq_len is not None and seq_len > max_position:
        factor = params["factor"]
        # float32 arithmetic, as the reference does it, so frequencies agree to the last bit
        grow = torch.tensor(factor * seq_len / max_position - (factor - 1), dtype=torch.float32, device="cpu")
        theta = torch.tensor(theta, dtype=torch.float32, device="cpu") * grow ** (dim / (dim - 2))
    # always on the CPU (models are built under a `meta` device context), moved with the tables
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim))
    if kind == "linear":
        inv_freq = inv_freq / params["factor"]
    elif kind == "llama3":
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        old_len = params["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = torch.where(medium, blended, scaled)
    return inv_freq


class RotaryEmbedding:
    """cos/sin tables for rotate-half RoPE, cached per (device, dtype) and grown as needed.

    A plain object, not a module: the tables are not checkpoint tensors, and they follow the
    device and dtype of the activations they are asked for. `dynamic` scaling follows the
    reference: frequencies are recomputed when a call reaches past the longest length seen
    (beyond `max_position_embeddings`), and reset when a call is back within it.
    """

    def __init__(self, head_dim: int, params: dict, max_position_embeddings: int):
        self.dim = head_dim
        self.params = params
        self.max_position = max_position_embeddings
        self.dynamic = params["rope_type"] == "dynamic"
        self._seen = max_position_embeddings  # dynamic: the length the frequencies are for
        self._inv_freq = rope_inv_freq(params, head_dim, max_position_embeddings)
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _table(self, size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        key = (device, dtype, self._seen)
        table = self._tables.get(key)
        if table is None or table[0].shape[0] < size:
            size = max(size, 2 * table[0].shape[0] if table is not None else 256)
            pos = torch.arange(size, dtype=torch.float32, device="cpu")
            freqs = torch.outer(pos, self._inv_freq)  # (N, dim/2), the same products as pos * inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            sin = emb.sin()
            signed = torch.cat((-sin[:, : self.dim // 2], sin[:, self.dim // 2 :]), dim=-1)
            table = (emb.cos().to(device=device, dtype=dtype), signed.to(device=device, dtype=dtype))
            if self.dynamic:
                self._tables = {k: v for k, v in self._tables.items() if k[2] == self._seen}
            self._tables[key] = table
        return table

    def __call__(
        self, position_ids: torch.Tensor, dtype: torch.dtype, max_position: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions -> cos, signed sin of shape (B, 1, T, head_dim), for `rotate`.

        The sine's first half is negated, so `rotate` needs one roll instead of rotate_half's
        slices, negation and concatenation (and gives bit-identical results).

        `max_position` (an upper bound of position_ids + 1) saves a device sync when known.
        """
        if max_position is None or self.dynamic:
            max_position = int(position_ids.max()) + 1
        if self.dynamic:
            self._update_dynamic(max_position)
        cos, sin = self._table(max_position, position_ids.device, dtype)
        return cos[position_ids].unsqueeze(1), sin[position_ids].unsqueeze(1)

    def _update_dynamic(self, seq_len: int) -> None:
        if seq_len > self._seen:
            self._seen = seq_len
            self._inv_freq = rope_inv_freq(self.params, self.dim, self.max_position, seq_len)
        elif seq_len < self.max_position < self._seen:
            self._seen = self.max_position
            self._inv_freq = rope_inv_freq(self.params, self.dim, self.max_position)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, nh, T, hs) queries or keys by (B, 1, T, hs) cos/sin (rotate-half layout)."""
    return x * cos + rotate_half(x) * sin


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """`apply_rotary` with the tables RotaryEmbedding returns: roll(x, half) * signed_sin
    equals rotate_half(x) * sin exactly."""
    return x * cos + torch.roll(x, x.shape[-1] // 2, -1) * signed_sin


# -- decoder helpers: positions and masks over a KV cache ---------------------------------------------


def decoder_positions(
    attention_mask: torch.Tensor | None, past_len: int, q_len: int, batch_size: int, device: torch.device
) -> torch.Tensor:
    """(B, q_len) position ids of the new tokens.

    From the (B, past + new) attention mask when there is one (`cumsum - 1`, pads clamped to 0),
    so a left-padded row numbers its real tokens from 0 as the unpadded prompt would.
    """
    if attention_mask is None:
        return torch.arange(past_len, past_len + q_len, device=device).expand(batch_size, q_len)
    pos = attention_mask.long().cumsum(-1)[:, past_len:] - 1  # (B, q_len)
    return pos.clamp_(min=0)


def decoder_mask(
    attention_mask: torch.Tensor | None,
    q_len: int,
    past_len: int,
    *,
    batch_size: int,
    device: torch.device,
    sliding_window: int | None = None,
) -> tuple[torch.Tensor | None, bool]:
    """(mask, is_causal) for SDPA over [cache + new] keys; no mask at all when none is needed.

    A single new token with no padding and no active window sees every key: no mask, not causal.
    (Under torch.compile a given mask is always applied: see `causal_mask`.)
    """
    kv_len = past_len + q_len
    if q_len == 1 and (sliding_window is None or kv_len <= sliding_window):
        if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
            return None, False
    mask = causal_mask(
        attention_mask, q_len, past_len, batch_size=batch_size, device=device, sliding_window=sliding_window
    )
    return mask, mask is None
