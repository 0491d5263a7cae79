"""Streamers: receive token ids as `generate()` produces them and turn them into text.

`generate(..., streamer=s)` calls `s.put(prompt_ids)` once, then `s.put(new_ids)` after every
step, then `s.end()`. Pieces are released as the reference library (5.25) releases them: text made
only of letters, marks, digits and spaces at once (long words and scripts without spaces stream
too), a CJK character at once, anything else up to the last space (a symbol may begin some
formatting, and the replacement character "\\ufffd" is a character still missing bytes), and a
whole line at a newline, whose last token is kept as context so the next line's leading space
decodes right.
"""

from __future__ import annotations

import queue
import unicodedata
from typing import Any

import torch


def _ids(value: torch.Tensor | list[int]) -> list[int]:
    if isinstance(value, torch.Tensor):
        if value.dim() > 1:
            if value.shape[0] > 1:
                raise ValueError("streamers handle one sequence at a time (batch size 1, num_beams=1)")
            value = value[0]
        return value.tolist()
    return list(value)


def _is_cjk(ch: str) -> bool:
    """CJK ideographs are words on their own: no spaces separate them."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _streams_at_once(ch: str) -> bool:
    """Letters (with their marks), digits and spaces cannot change meaning with the next token."""
    return ch.isspace() or unicodedata.category(ch)[0] in "LMN"


class TextStreamer:
    """Print generated text to stdout as it is decoded; flush the rest at the end.

    `skip_prompt=True` leaves the prompt out; other keyword arguments go to `tokenizer.decode`
    (e.g. `skip_special_tokens=True`).
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.cache: list[int] = []  # ids of the current line
        self.printed = 0  # characters of the current line already released
        self.prompt_pending = True

    def put(self, value: torch.Tensor | list[int]) -> None:
        ids = _ids(value)
        if self.skip_prompt and self.prompt_pending:
            self.prompt_pending = False
            return
        self.prompt_pending = False
        self.cache.extend(ids)
        text = self.tokenizer.decode(self.cache, **self.decode_kwargs)
        pending = text[self.printed :]
        if text.endswith("\n"):
            ready, self.cache = pending, self.cache[-1:]
            self.printed = len(self.tokenizer.decode(self.cache, **self.decode_kwargs))
        else:
            if (text and _is_cjk(text[-1])) or all(_streams_at_once(ch) for ch in pending):
                end = len(text)
            else:
                end = max(text.rfind(" ") + 1, self.printed)
            ready = text[self.printed : end]
            self.printed = end
        if ready:
            self.on_finalized_text(ready)

    def end(self) -> None:
        """Release whatever is left and signal the end of the stream."""
        text = self.tokenizer.decode(self.cache, **self.decode_kwargs) if self.cache else ""
        ready = text[self.printed :]
        self.cache, self.printed, self.prompt_pending = [], 0, True
        self.on_finalized_text(ready, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        print(text, flush=True, end="" if not stream_end else None)


class TextIteratorStreamer(TextStreamer):
    """Hand text pieces to another thread: run `generate` in a thread, iterate here.

        streamer = TextIteratorStreamer(tok, skip_prompt=True)
        Thread(target=model.generate, kwargs={**inputs, "streamer": streamer}).start()
        for piece in streamer: ...

    `timeout` (seconds) bounds each wait; `queue.Empty` is raised when it runs out.
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None, **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.queue.put(text, timeout=self.timeout)
        if stream_end:
            self.queue.put(None, timeout=self.timeout)

    def __iter__(self) -> TextIteratorStreamer:
        return self

    def __next__(self) -> str:
        value = self.queue.get(timeout=self.timeout)
        if value is None:
            raise StopIteration
        return value
