"""Continuous batching for text generation: requests join and leave a running batch at every step.

All running sequences share one preallocated key/value buffer per layer, `(rows, kv_heads,
capacity, head_dim)`, and are kept right-aligned: the newest token of every row sits at the same
column `length`. A decode step feeds every row's newest token at that column, with an attention
mask that hides each row's unused left part and explicit per-row position ids, so a row computes
exactly what it would alone (the model is called as usual: `input_ids`, `attention_mask`,
`position_ids`, `cache`).

- An idle generator whose requests are still being prepared (checked and tokenized: see
  `arrival`) waits up to `GATHER` for them before its first prefill, so a burst of requests is
  prefilled together instead of the first alone while the rest queue behind it (16 streams at
  once, benchmarks/inference.py: first tokens after 0.38-0.39 s instead of 0.43 s); a lone
  request never waits.
- Newcomers are prefilled together in their own `KVCache` (left-padded, as `generate()` pads a
  batch), each one's first token chosen, and its keys and values copied into a free row so that
  they end at `length` (the buffer is shifted right once when a prompt is longer than `length`).
- A finished or abandoned row is freed at once; only rows up to the highest busy one are computed.
- The dead margin on the left (columns no busy row uses) is cut off only when it grows past
  `COMPACT_AT` columns and half the buffer, not at every step.

Tokens are chosen as `generate()` chooses them (the same GenerationConfig resolution, logits
processors and stopping rules), so a greedy request gives the same tokens inside a batch as alone.
A sampled request with a seed draws from its own `torch.Generator`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import PipelineError
from ...generation.logits_process import build_processors
from ...generation.stopping import StopStringCriteria
from ...layers import KVCache
from .batching import QueueFull
from .registry import InferenceError, Served

log = logging.getLogger("haven.server.inference")

COMPACT_AT = 64  # columns of dead left margin before the buffer is shifted left
GATHER = 0.05  # seconds an idle generator waits for requests still being prepared
Emit = Callable[[Any], None]  # called with (token id, logprob), then None at the end (or an exception)


@dataclass
class Sequence:
    """One generation request: its tokens so far and how to choose and stop."""

    ids: list[int]
    prompt_length: int
    max_length: int  # prompt + new tokens, at most
    gc: Any  # the resolved GenerationConfig
    emit: Emit
    stop: StopStringCriteria | None = None
    generator: torch.Generator | None = None
    processors: Any = None
    row: int = -1
    start: int = 0  # first cache column of this row
    cancelled: bool = False
    eos: frozenset[int] = field(default_factory=frozenset)
    reason: str = ""  # why it ended, in TGI's words: "eos_token", "stop_sequence" or "length"

    def __post_init__(self) -> None:
        self.processors = build_processors(self.gc, prompt_length=self.prompt_length)
        self.eos = frozenset(self.gc.eos_token_ids or ())


def new_sequence(served: Served, prompt_ids: list[int], generate_kwargs: dict, emit: Emit,
                 seed: int | None = None) -> Sequence:
    """A Sequence for `prompt_ids` with `generate()`'s keyword arguments (as the pipeline makes them)."""
    model = served.pipe.model
    try:
        gc, max_length = served.pipe.decoding_settings(generate_kwargs, len(prompt_ids))
    except PipelineError as err:
        raise InferenceError(400, str(err)) from None
    if gc.num_beams > 1 or (gc.num_return_sequences or 1) > 1:
        raise InferenceError(400, "the inference API decodes one sequence per request (no beams)")
    tokenizer = generate_kwargs.get("tokenizer") or served.pipe.tokenizer
    stop = StopStringCriteria(tokenizer, gc.stop_strings) if gc.stop_strings else None
    generator = None
    if seed is not None:
        generator = torch.Generator(device=model.device).manual_seed(int(seed))
    return Sequence(list(prompt_ids), len(prompt_ids), max_length, gc, emit, stop, generator)


class Generator:
    """One decoding thread per model, running every admitted sequence together."""

    def __init__(self, served: Served, *, rows: int = 16, max_queue: int = 256):
        self.model = served.pipe.model
        self.pad = served.pipe.pad_token_id
        self.rows: list[Sequence | None] = [None] * rows
        self.max_queue = max_queue
        self.waiting: deque[Sequence] = deque()
        self.arriving = 0  # requests between their arrival and `submit` (see `arrival`)
        self.cond = threading.Condition()
        self.closed = False
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0  # the column of the next token, the same for every row
        self.steps = 0
        self.peak_rows = 0  # most sequences decoded in one step so far
        self.thread = threading.Thread(target=self._work, name=f"haven-generator-{served.repo_id}", daemon=True)
        self.thread.start()

    # -- the request side ----------------------------------------------------------------------------

    @contextmanager
    def arrival(self) -> Iterator[None]:
        """Around a request's preparation up to its `submit`: while any is inside, an idle
        generator waits (up to GATHER) before it prefills what has been submitted."""
        with self.cond:
            self.arriving += 1
        try:
            yield
        finally:
            with self.cond:
                self.arriving -= 1
                self.cond.notify()

    def submit(self, seq: Sequence) -> None:
        with self.cond:
            if self.closed:
                raise InferenceError(503, "the model was unloaded: retry the request")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(1.0)
            self.waiting.append(seq)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            for seq in [*self.waiting, *(s for s in self.rows if s is not None)]:
                seq.emit(InferenceError(503, "the model was unloaded: retry the request"))
            self.waiting.clear()
            self.cond.notify_all()

    # -- the decoding thread -------------------------------------------------------------------------

    def _work(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cond:
                    while not self.waiting and not any(self.rows) and not self.closed:
                        self.cond.wait()
                    if self.closed:
                        return
                    if not any(self.rows):  # idle: let the requests being prepared join the first prefill
                        deadline = time.monotonic() + GATHER
                        while self.arriving and not self.closed and len(self.waiting) < len(self.rows):
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self.cond.wait(left)
                    newcomers = []
                    while self.waiting and len(newcomers) < self.rows.count(None):
                        newcomers.append(self.waiting.popleft())
                self._admit(newcomers)
                if any(self.rows):
                    try:
                        self._step()
                    except Exception as err:  # noqa: BLE001 - every running request hears of it
                        log.exception("inference: a decode step failed")
                        for seq in self.rows:
                            if seq is not None:
                                self._finish(seq, err)

    def _admit(self, newcomers: list[Sequence]) -> None:
        """Prefill the newcomers together (left-padded, positions from the mask, as generate() pads a
        batch), choose each one's first token, and move its keys/values into a free row."""
        live = [s for s in newcomers if not s.cancelled]
        if not live:
            return
        longest = max(len(s.ids) for s in live)
        ids = torch.full((len(live), longest), self.pad, dtype=torch.long)
        mask = torch.zeros((len(live), longest), dtype=torch.long)
        for i, seq in enumerate(live):
            ids[i, longest - len(seq.ids) :] = torch.tensor(seq.ids)
            mask[i, longest - len(seq.ids) :] = 1
        cache = KVCache()
        device = self.model.device
        try:
            out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), cache=cache, use_cache=True,
                             logits_to_keep=1)
        except Exception as err:  # noqa: BLE001 - handed to the requests
            for seq in live:
                self._finish(seq, err)
            return
        for i, seq in enumerate(live):
            prompt = len(seq.ids)  # cached tokens: the prompt (its first new token is fed at the next step)
            try:
                if self._choose(seq, out.logits[i, -1]):
                    self._finish(seq, None)  # done after one token: it never needs a row
                    continue
                seq.row = self.rows.index(None)
                self._make_room(prompt, cache)
                seq.start = self.length - prompt
                for layer, (k, v) in enumerate(zip(cache.keys, cache.values)):
                    self.keys[layer][seq.row, :, seq.start : self.length] = k[i, :, longest - prompt : longest]
                    self.values[layer][seq.row, :, seq.start : self.length] = v[i, :, longest - prompt : longest]
                self.rows[seq.row] = seq
            except Exception as err:  # noqa: BLE001 - handed to the request
                self._finish(seq, err)

    def _make_room(self, prompt: int, cache: KVCache) -> None:
        """Buffers exist, hold `prompt` columns left of `length`, and one more column on the right."""
        if not self.keys:
            capacity = max(256, prompt + 1)
            rows = len(self.rows)
            self.keys = [k.new_zeros(rows, k.shape[1], capacity, k.shape[3]) for k in cache.keys]
            self.values = [v.new_zeros(rows, v.shape[1], capacity, v.shape[3]) for v in cache.values]
        shift = max(0, prompt - self.length)
        self._reserve(self.length + shift + 1)
        if shift:
            self._move(0, self.length, shift)
            for seq in self.rows:
                if seq is not None:
                    seq.start += shift
            self.length += shift

    def _reserve(self, columns: int) -> None:
        capacity = self.keys[0].shape[2]
        if columns <= capacity:
            return
        bigger = max(columns, capacity * 2)
        for buffers in (self.keys, self.values):
            for i, old in enumerate(buffers):
                new = old.new_zeros(old.shape[0], old.shape[1], bigger, old.shape[3])
                new[:, :, : self.length] = old[:, :, : self.length]
                buffers[i] = new

    def _move(self, first: int, end: int, by: int) -> None:
        """Shift columns [first, end) by `by` (negative: to the left) in every buffer."""
        for buffers in (self.keys, self.values):
            for t in buffers:
                t[:, :, first + by : end + by] = t[:, :, first:end].clone()

    def _compact(self) -> None:
        busy = [s for s in self.rows if s is not None]
        if not busy:
            self.length = 0
            return
        margin = min(s.start for s in busy)
        if margin >= COMPACT_AT and margin * 2 >= self.length:
            self._move(margin, self.length, -margin)
            for seq in busy:
                seq.start -= margin
            self.length -= margin

    def _step(self) -> None:
        """Feed every busy row's newest token at column `length`; choose each row's next token."""
        for seq in self.rows:
            if seq is not None and seq.cancelled:
                self._finish(seq, None)
        busy = [s for s in self.rows if s is not None]
        if not busy:
            self._compact()
            return
        self._reserve(self.length + 1)
        top = max(s.row for s in busy) + 1
        self.peak_rows = max(self.peak_rows, len(busy))
        device = self.model.device
        tokens = torch.full((top, 1), self.pad, dtype=torch.long)
        positions = torch.zeros((top, 1), dtype=torch.long)
        mask = torch.zeros((top, self.length + 1), dtype=torch.long)
        mask[:, self.length] = 1  # a free row sees only its own (ignored) column
        for seq in busy:
            tokens[seq.row, 0] = seq.ids[-1]
            positions[seq.row, 0] = len(seq.ids) - 1
            mask[seq.row, seq.start :] = 1
        view = KVCache()
        view.keys = [k[:top] for k in self.keys]
        view.values = [v[:top] for v in self.values]
        view.length = self.length
        out = self.model(
            input_ids=tokens.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
            cache=view, use_cache=True, logits_to_keep=1,
        )
        self.length += 1
        self.steps += 1
        logits = out.logits[:, -1]
        # greedy rows with nothing to process are chosen together: one argmax and one log-softmax
        # for all of them (per row, the two cost more than the rest of the step's bookkeeping)
        plain = [s for s in busy if not s.gc.do_sample and not s.processors]
        chosen: dict[int, tuple[int, float]] = {}
        if plain:
            scores = logits[torch.tensor([s.row for s in plain], device=logits.device)].float()
            picks = scores.argmax(-1, keepdim=True)
            logprobs = torch.log_softmax(scores, -1).gather(-1, picks)
            chosen = {s.row: pair for s, pair in zip(plain, zip(picks[:, 0].tolist(), logprobs[:, 0].tolist()))}
        for seq in busy:
            token, logprob = chosen[seq.row] if seq.row in chosen else self._score(seq, logits[seq.row])
            if self._take(seq, token, logprob):
                self._finish(seq, None)
        self._compact()

    def _choose(self, seq: Sequence, logits: torch.Tensor) -> bool:
        """Append the next token (as generate() chooses it) and hand it out; True when done."""
        return self._take(seq, *self._score(seq, logits))

    def _score(self, seq: Sequence, logits: torch.Tensor) -> tuple[int, float]:
        """(the next token as generate() chooses it, its log-probability) of one row's logits."""
        scores = logits[None].float()
        if seq.processors:
            scores = seq.processors(torch.tensor([seq.ids], device=scores.device), scores)
        if seq.gc.do_sample:
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=seq.generator)[0, 0])
        else:
            token = int(scores.argmax(-1)[0])
        return token, float(torch.log_softmax(scores, -1)[0, token])

    def _take(self, seq: Sequence, token: int, logprob: float) -> bool:
        """Append `token` and hand it out; True when the sequence is done."""
        seq.ids.append(token)
        if token in seq.eos:
            seq.reason = "eos_token"
        elif seq.stop is not None and bool(seq.stop(torch.tensor([seq.ids]))[0]):
            seq.reason = "stop_sequence"
        elif len(seq.ids) >= seq.max_length:
            seq.reason = "length"
        seq.emit((token, logprob))
        return bool(seq.reason)

    def _finish(self, seq: Sequence, error: BaseException | None) -> None:
        if 0 <= seq.row < len(self.rows) and self.rows[seq.row] is seq:
            self.rows[seq.row] = None
        seq.emit(error)
