"""Logits processors: functions of (ids so far, next-token scores) -> new scores.

Each processor is a small callable `proc(input_ids (B, S), scores (B, V)) -> (B, V)` that returns
a new tensor. `build_processors` picks the ones a GenerationConfig asks for, in the reference
library's order, so scores (and therefore samples and beams) match it.
"""

from __future__ import annotations

from typing import Any

import torch

NEG_INF = float("-inf")


class LogitsProcessor:
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class LogitsProcessorList(list):
    """Applies its processors in order."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for proc in self:
            scores = proc(input_ids, scores)
        return scores


# -- penalties and bans (any strategy) ----------------------------------------------------------------


class RepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """Make tokens already present less likely: positive scores / p, negative scores * p.

    `skip`: per-row count of leading positions to ignore (the left padding of a batch).
    """

    def __init__(self, penalty: float, skip: torch.Tensor | None = None):
        if not penalty > 0:
            raise ValueError(f"repetition penalty must be > 0, got {penalty}")
        self.penalty = float(penalty)
        self.skip = skip

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        ids = input_ids.clamp(max=vocab)  # ids past the head's vocabulary go to a spare column
        if self.skip is not None:
            skip = self.skip.to(ids.device)
            if skip.shape[0] != ids.shape[0]:  # rows were repeated (beams / several samples)
                skip = skip.repeat_interleave(ids.shape[0] // skip.shape[0])
            pos = torch.arange(ids.shape[1], device=ids.device)
            ids = ids.masked_fill(pos[None, :] < skip[:, None], vocab)
        seen = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
        seen.scatter_(1, ids, True)
        seen = seen[:, :vocab]
        penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return torch.where(seen, penalised, scores)


class NoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Ban every token that would complete an n-gram already present in the row."""

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"no_repeat_ngram_size must be a positive integer, got {ngram_size}")
        self.n = ngram_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        n, length = self.n, input_ids.shape[1]
        if length < n:
            return scores
        vocab = scores.shape[-1]
        tail = input_ids[:, length - n + 1 :]  # (B, n-1): what the next token would extend
        grams = input_ids.unfold(1, n, 1)  # (B, length-n+1, n)
        hit = (grams[:, :, : n - 1] == tail[:, None, :]).all(-1)  # (B, G)
        banned_ids = torch.where(hit, grams[:, :, -1].clamp(max=vocab), vocab)
        banned = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, banned_ids, True)
        return scores.masked_fill(banned[:, :vocab], NEG_INF)


class NoBadWordsLogitsProcessor(LogitsProcessor):
    """Never produce the listed token sequences: a sequence's last token is banned when the row
    ends with the rest of it (single-token words are always banned). EOS alone is never banned."""

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id: int | list[int] | None = None):
        eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        words = [list(w) for w in bad_words_ids if not (len(w) == 1 and w[0] in eos)]
        self.single = sorted({w[0] for w in words if len(w) == 1})
        self.multi: dict[int, tuple[list[list[int]], list[int]]] = {}
        for w in words:
            if len(w) > 1:
                prefixes, lasts = self.multi.setdefault(len(w) - 1, ([], []))
                prefixes.append(w[:-1])
                lasts.append(w[-1])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        too_big = [t for t in self.single if t >= vocab] + [
            t for _, (ps, ls) in self.multi.items() for t in ls + [x for p in ps for x in p] if t >= vocab
        ]
        if too_big:
            raise ValueError(f"bad_words_ids hold token ids {sorted(set(too_big))} outside the vocabulary ({vocab})")
        banned = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
        if self.single:
            banned[:, self.single] = True
        for plen, (prefixes, lasts) in self.multi.items():
            if plen > input_ids.shape[1]:
                continue
            pref = torch.tensor(prefixes, device=input_ids.device)  # (W, plen)
            match = (input_ids[:, None, -plen:] == pref[None]).all(-1)  # (B, W)
            last = torch.tensor(lasts, device=input_ids.device).expand_as(match)
            banned.scatter_(1, torch.where(match, last, vocab), True)  # unmatched go to the spare column
        return scores.masked_fill(banned[:, :vocab], NEG_INF)


class MinLengthLogitsProcessor(LogitsProcessor):
    """Forbid EOS until rows hold `min_length` tokens; `prompt_length` makes it count new tokens only."""

    def __init__(self, min_length: int, eos_token_id: int | list[int], prompt_length: int = 0):
        self.min_length = min_length
        self.eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] - self.prompt_length >= self.min_length:
            return scores
        eos = [e for e in self.eos if 0 <= e < scores.shape[-1]]
        out = scores.clone()
        out[:, eos] = NEG_INF
        return out


# -- warpers (sampling only) ------------------------------------------------------------------------------


class TemperatureLogitsWarper(LogitsProcessor):
    def __init__(self, temperature: float):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}; use do_sample=False for greedy decoding")
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopKLogitsWarper(LogitsProcessor):
    """Keep the k highest scores (ties with the k-th kept too)."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        self.k = max(int(top_k), min_tokens_to_keep)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[:, -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, NEG_INF)


class TopPLogitsWarper(LogitsProcessor):
    """Nucleus filtering: keep the smallest set of most likely tokens whose mass reaches p."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not 0.0 <= top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {top_p}")
        self.top_p = float(top_p)
        self.keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ascending, order = torch.sort(scores, dim=-1)
        mass_below = ascending.softmax(-1).cumsum(-1)  # (B, V) mass of this token and all less likely
        drop = mass_below <= 1.0 - self.top_p
        drop[:, -self.keep :] = False
        return scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)


class MinPLogitsWarper(LogitsProcessor):
    """Drop tokens whose probability is below min_p times the most likely token's."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p = float(min_p)
        self.keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(-1)
        drop = probs < self.min_p * probs.amax(-1, keepdim=True)
        top = torch.topk(probs, min(self.keep, probs.shape[-1]), dim=-1).indices
        drop.scatter_(1, top, False)
        return scores.masked_fill(drop, NEG_INF)


class TypicalLogitsWarper(LogitsProcessor):
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy,
    until their mass reaches `mass`."""

    def __init__(self, mass: float = 0.9, min_tokens_to_keep: int = 1):
        if not 0.0 < mass < 1.0:
            raise ValueError(f"typical_p must be in (0, 1), got {mass}")
        self.mass = float(mass)
        self.keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = scores.log_softmax(-1)
        entropy = -(logp * logp.exp()).nansum(-1, keepdim=True)  # (B, 1)
        distance = (-logp - entropy).abs()
        sorted_dist, order = torch.sort(distance, dim=-1)
        cum = scores.gather(-1, order).softmax(-1).cumsum(-1)
        last = (cum < self.mass).sum(-1, keepdim=True).clamp(max=scores.shape[-1] - 1)  # (B, 1)
        drop = sorted_dist > sorted_dist.gather(1, last)
        drop[:, : self.keep] = False
        return scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)


# -- assembly -----------------------------------------------------------------------------------------------


def build_processors(
    gc: Any,
    *,
    prompt_length: int,
    padding_lengths: torch.Tensor | None = None,
    extra: list[LogitsProcessor] | None = None,
) -> LogitsProcessorList:
    """The processors `gc` (a filled-in GenerationConfig) asks for, in the reference's order.

    Empty when nothing is configured, so the plain greedy loop does no extra work.
    """
    procs = LogitsProcessorList()
    eos = gc.eos_token_ids
    if gc.repetition_penalty is not None and gc.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(gc.repetition_penalty, skip=padding_lengths))
    if gc.no_repeat_ngram_size:
        procs.append(NoRepeatNGramLogitsProcessor(gc.no_repeat_ngram_size))
    if gc.bad_words_ids is not None:
        procs.append(NoBadWordsLogitsProcessor(gc.bad_words_ids, eos))
    if eos and gc.min_length:
        procs.append(MinLengthLogitsProcessor(gc.min_length, eos))
    if eos and gc.min_new_tokens:
        procs.append(MinLengthLogitsProcessor(gc.min_new_tokens, eos, prompt_length=prompt_length))
    procs.extend(extra or [])
    if gc.do_sample:
        keep = (len(eos) + 1 if eos else 2) if gc.num_beams > 1 else 1
        if gc.temperature is not None and gc.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(gc.temperature))
        if gc.top_k:
            procs.append(TopKLogitsWarper(gc.top_k, keep))
        if gc.top_p is not None and gc.top_p < 1.0:
            procs.append(TopPLogitsWarper(gc.top_p, keep))
        if gc.min_p is not None:
            procs.append(MinPLogitsWarper(gc.min_p, keep))
        if gc.typical_p is not None and gc.typical_p < 1.0:
            procs.append(TypicalLogitsWarper(gc.typical_p, keep))
    return procs
