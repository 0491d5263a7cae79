"""The decoding loops: prefill, decode_one_token, choose tokens, greedy/sampling and beam search.

Everything here runs under `torch.inference_mode()` (set by `generate`). Sequences are written
into a preallocated (B, max_length) buffer and the model writes its keys/values into a
preallocated `KVCache`, so a step allocates nothing proportional to the sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .logits_process import LogitsProcessorList
from .stopping import StoppingCriteriaList

BIG_NEG = -1.0e9  # "impossible" score used by beam search bookkeeping (as the reference)


@dataclass
class Step:
    """Per-call decoding state shared by the loops.

    Position ids are left to the model, which derives them from the attention mask (`cumsum - 1`,
    pads clamped) or from the cache length: a left-padded row numbers its real tokens from 0
    exactly as the unpadded prompt would, and no position tensor is built here per step.
    """

    model: Any
    decode: Any  # the compiled forward for one-token steps (`compile_decoding()`), or None: the model
    cache: Any  # KVCache, or None when use_cache=False
    mask: torch.Tensor | None  # (B, max_length) 1/0 buffer, None when nothing is padded
    max_length: int
    record_scores: bool = False
    record_logits: bool = False
    scores: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)


def _forward(step: Step, ids: torch.Tensor, length: int, forward: Any = None) -> torch.Tensor:
    """Run the model (or `forward`) on `ids` (B, T), the tokens ending at position `length - 1`;
    (B, V) float logits."""
    out = (forward or step.model)(
        ids,
        attention_mask=step.mask[:, :length] if step.mask is not None else None,
        cache=step.cache,
        use_cache=step.cache is not None,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float()


def prefill(step: Step, seqs: torch.Tensor, length: int) -> torch.Tensor:
    """Feed the prompt (minus whatever the cache already holds) and return next-token logits (B, V)."""
    past = step.cache.get_seq_length() if step.cache is not None else 0
    return _forward(step, seqs[:, past:length], length)


def decode_one_token(step: Step, seqs: torch.Tensor, length: int) -> torch.Tensor:
    """Feed the last chosen token (at `length - 1`) and return the next-token logits (B, V)."""
    if step.cache is None:  # use_cache=False: recompute the whole prefix
        return _forward(step, seqs[:, :length], length)
    return _forward(step, seqs[:, length - 1 : length], length, step.decode)


def choose(scores: torch.Tensor, do_sample: bool) -> torch.Tensor:
    """(B, V) scores -> (B,) token ids: argmax, or one draw from softmax(scores)."""
    if do_sample:
        return torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(1)
    return scores.argmax(-1)


def _record(step: Step, logits: torch.Tensor, scores: torch.Tensor) -> None:
    if step.record_logits:
        step.logits.append(logits)
    if step.record_scores:
        step.scores.append(scores if scores is not logits else scores.clone())


# -- greedy and multinomial sampling ---------------------------------------------------------------


def sample_loop(
    step: Step,
    seqs: torch.Tensor,
    prompt_length: int,
    *,
    do_sample: bool,
    processors: LogitsProcessorList,
    stopping: StoppingCriteriaList,
    eos: torch.Tensor | None,
    pad_token_id: int | None,
    streamer: Any = None,
) -> torch.Tensor:
    """Greedy (or sampled) decoding into `seqs` (B, max_length). Returns the filled prefix.

    A row stops at an EOS token or when a stopping criterion says so; afterwards it is padded
    with `pad_token_id` while the other rows go on. The loop ends when every row has stopped
    or the buffer is full.
    """
    length = prompt_length
    batch = seqs.shape[0]
    unfinished = torch.ones(batch, dtype=torch.bool, device=seqs.device)
    watch = eos is not None or len(stopping) > 0
    logits = prefill(step, seqs, length)
    while True:
        scores = processors(seqs[:, :length], logits) if processors else logits
        if step.record_scores or step.record_logits:
            _record(step, logits, scores)
        tokens = choose(scores, do_sample)
        if watch and pad_token_id is not None:
            tokens = torch.where(unfinished, tokens, pad_token_id)
        seqs[:, length] = tokens
        length += 1
        if streamer is not None:
            streamer.put(tokens.cpu())
        if watch:
            if eos is not None:
                unfinished &= ~torch.isin(tokens, eos)
            if stopping:
                unfinished &= ~stopping(seqs[:, :length])
            if not bool(unfinished.any()):
                break
        if length >= step.max_length:
            break
        logits = decode_one_token(step, seqs, length)
    return seqs[:, :length]


# -- beam search ---------------------------------------------------------------------------------------


def _take(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select along dim 1 (the beam axis) of (B, K, ...) with index (B, J) -> (B, J, ...)."""
    while index.dim() < t.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(t, index, dim=1)


def beam_search(
    step: Step,
    seqs: torch.Tensor,
    prompt_length: int,
    *,
    num_beams: int,
    do_sample: bool,
    processors: LogitsProcessorList,
    stopping: StoppingCriteriaList,
    eos_ids: list[int],
    fill_value: int,
    length_penalty: float,
    early_stopping: bool | str,
    num_return_sequences: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vectorised beam search over `seqs` (B*K, max_length), rows grouped by prompt.

    Each step scores every (beam, token) continuation by accumulated log-probability, keeps the
    best `keep` of them (more than K so that EOS continuations cannot starve the live beams),
    moves those that hit a stopping criterion into the finished set (score divided by
    new_length ** length_penalty) and continues with the best K that did not.

    Returns (sequences (B*R, L), sequence scores (B*R,), beam indices (B*R, L - prompt)).
    """
    flat, _ = seqs.shape
    k, s, max_length = num_beams, prompt_length, step.max_length
    b = flat // k
    dev = seqs.device
    keep = max(2, 1 + len(eos_ids)) * k
    first_k = torch.arange(keep, device=dev) < k  # (keep,)

    running = seqs.view(b, k, max_length).clone()
    running[:, :, s:] = fill_value
    done_seqs = running.clone()
    running_scores = torch.zeros(b, k, device=dev)
    running_scores[:, 1:] = BIG_NEG  # identical beams at the start: only the first may expand
    done_scores = torch.full((b, k), BIG_NEG, device=dev)
    done_flags = torch.zeros(b, k, dtype=torch.bool, device=dev)
    improvable = torch.ones(b, 1, dtype=torch.bool, device=dev)
    running_src = torch.full((b, k, max_length - s), -1, dtype=torch.int32, device=dev)
    done_src = running_src.clone()
    row_offset = (torch.arange(b, device=dev) * k).view(-1, 1)

    length = s
    logits = prefill(step, running.view(flat, max_length), length)
    while True:
        logp = F.log_softmax(logits, dim=-1)
        logp = processors(running.view(flat, max_length)[:, :length], logp) if processors else logp
        if step.record_scores or step.record_logits:
            _record(step, logits, logp)
        vocab = logp.shape[-1]
        total = (logp.view(b, k, vocab) + running_scores[:, :, None]).view(b, k * vocab)

        # candidates: the `keep` best (or sampled) continuations
        if do_sample:
            cand = torch.multinomial(total.softmax(-1), num_samples=keep)
            # drawn candidates are ranked by score, best first, as the top-k ones are
            cand_scores, order = total.gather(1, cand).sort(dim=-1, descending=True)
            cand = cand.gather(1, order)
        else:
            cand_scores, cand = torch.topk(total, keep)
        src_beam = cand // vocab  # (b, keep)
        cand_seqs = _take(running, src_beam)
        cand_seqs[:, :, length] = cand % vocab
        cand_src = _take(running_src, src_beam)
        cand_src[:, :, length - s] = (src_beam + row_offset).to(cand_src.dtype)
        hits = stopping(cand_seqs[:, :, : length + 1].reshape(b * keep, length + 1)).view(b, keep)

        # live beams for the next step: best K candidates that did not stop
        alive = cand_scores + hits.float() * BIG_NEG
        best = torch.topk(alive, k).indices
        running, running_scores, running_src = _take(cand_seqs, best), _take(alive, best), _take(cand_src, best)

        # finished set: merge the stopped top-K candidates, keep the best K
        ended = hits & first_k[None, :]
        fin = cand_scores / float(length + 1 - s) ** length_penalty
        fin = fin + (done_flags.all(-1, keepdim=True) & (early_stopping is True)).float() * BIG_NEG
        fin = fin + (~improvable).float() * BIG_NEG
        fin = fin + (~ended).float() * BIG_NEG
        merged_scores = torch.cat((done_scores, fin), 1)
        best = torch.topk(merged_scores, k).indices
        done_seqs = _take(torch.cat((done_seqs, cand_seqs), 1), best)
        done_scores = _take(merged_scores, best)
        done_src = _take(torch.cat((done_src, cand_src), 1), best)
        done_flags = _take(torch.cat((done_flags, ended), 1), best)

        length += 1
        improvable = _still_improvable(
            improvable, running_scores, done_scores, done_flags, length - s, max_length - s,
            early_stopping, length_penalty,
        )
        all_full = bool(done_flags.all()) and early_stopping is True
        if not bool(improvable.any()) or all_full or bool(hits.all()) or length >= max_length:
            break
        if step.cache is not None:
            step.cache.reorder(running_src[:, :, length - 1 - s].reshape(-1).long())
        logits = decode_one_token(step, running.view(flat, max_length), length)

    r = num_return_sequences
    out_seqs = done_seqs[:, :r].reshape(b * r, max_length)
    out_scores = done_scores[:, :r].reshape(b * r)
    out_src = done_src[:, :r].reshape(b * r, max_length - s)
    generated = int((out_src != -1).sum(1).max())
    return out_seqs[:, : s + generated], out_scores, out_src[:, :generated]


def _still_improvable(
    improvable: torch.Tensor,
    running_scores: torch.Tensor,
    done_scores: torch.Tensor,
    done_flags: torch.Tensor,
    new_length: int,
    max_new: int,
    early_stopping: bool | str,
    length_penalty: float,
) -> torch.Tensor:
    """(B, 1): may a live beam still beat the worst finished one? (the reference's heuristic:
    the best live score at the current length, or at max length for early_stopping="never"
    with a positive length penalty)."""
    best_len = max_new if early_stopping == "never" and length_penalty > 0.0 else new_length
    best_live = running_scores[:, :1] / float(best_len) ** length_penalty
    worst_done = torch.where(done_flags, done_scores.min(1, keepdim=True).values, BIG_NEG)
    return improvable & (best_live > worst_done).any(-1, keepdim=True)
