"""Stopping criteria: `crit(input_ids (B, S)) -> (B,) bool`, True where a row is done."""

from __future__ import annotations

import time
from typing import Any

import torch


class StoppingCriteria:
    def __call__(self, input_ids: torch.Tensor, scores: Any = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class StoppingCriteriaList(list):
    """A row is done when any criterion says so."""

    def __call__(self, input_ids: torch.Tensor, scores: Any = None) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for crit in self:
            done |= crit(input_ids, scores)
        return done


class MaxLengthCriteria(StoppingCriteria):
    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, input_ids: torch.Tensor, scores: Any = None) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.max_length, device=input_ids.device)


class MaxTimeCriteria(StoppingCriteria):
    """Stop every row once `max_time` seconds have passed since `start` (default: construction)."""

    def __init__(self, max_time: float, start: float | None = None):
        self.max_time = max_time
        self.start = time.time() if start is None else start

    def __call__(self, input_ids: torch.Tensor, scores: Any = None) -> torch.Tensor:
        over = time.time() - self.start > self.max_time
        return torch.full((input_ids.shape[0],), over, device=input_ids.device)


class EosTokenCriteria(StoppingCriteria):
    def __init__(self, eos_token_id: int | list[int]):
        ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.eos = torch.tensor(ids)

    def __call__(self, input_ids: torch.Tensor, scores: Any = None) -> torch.Tensor:
        if self.eos.device != input_ids.device:
            self.eos = self.eos.to(input_ids.device)
        return torch.isin(input_ids[:, -1], self.eos)


class StopStringCriteria(StoppingCriteria):
    """Stop a row once its text ends in one of `stop_strings`.

    A stop string counts when it reaches into the text of the row's last token (it may start in
    earlier tokens, and the last token may run past it: "st" + "opped" stops on "stop"), so a
    stop string that only appears further back never stops the row again. Only the tail of each
    row is decoded: enough tokens to cover the longest stop string.
    """

    def __init__(self, tokenizer: Any, stop_strings: str | list[str]):
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.window = max((len(s) for s in self.stop_strings), default=0) + 1

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def __call__(self, input_ids: torch.Tensor, scores: Any = None) -> torch.Tensor:
        done = []
        rows = input_ids[:, -self.window :].tolist()
        for row in rows:
            text = self._decode(row)
            last_start = len(self._decode(row[:-1])) if len(row) > 1 else 0
            last_start = min(last_start, len(text))
            hit = False
            for s in self.stop_strings:
                # any occurrence ending after the last token's first character
                start = text.find(s, max(0, last_start - len(s) + 1))
                if start != -1 and start + len(s) > last_start:
                    hit = True
                    break
            done.append(hit)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
