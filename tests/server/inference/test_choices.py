"""OpenAI requests with n > 1: when one choice fails, the other choices are cancelled (not decoded
for nobody until max_tokens), unstreamed and streamed. A stand-in runner fails the second choice
and leaves the others running."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from haven import pipeline
from haven.server.inference.generation import collect_all, open_streams, prepare
from haven.server.inference.openai import _stream
from haven.server.inference.registry import InferenceError, Served


class SecondFails:
    """Every choice gets one token; the second then fails, the others never finish on their own."""

    def __init__(self):
        self.seqs = []

    def submit(self, seq):
        self.seqs.append(seq)
        seq.emit((5, -0.1))
        if len(self.seqs) == 2:
            seq.emit(InferenceError(500, "choice 2 failed"))


@pytest.fixture
def setup(gpt2_dir):
    pipe = pipeline("text-generation", model=gpt2_dir)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)
    served.runner = SecondFails()
    plan = prepare(served, "hello", {"max_new_tokens": 50, "do_sample": False}, max_new_tokens=50, max_tokens=10**6,
                   extra={"return_full_text": False})
    return served, plan


def test_unstreamed_choices_are_cancelled_when_one_fails(setup):
    served, plan = setup

    async def main():
        streams = open_streams(served, [plan], 4, timeout=30)
        started = time.monotonic()
        with pytest.raises(InferenceError) as err:
            await collect_all(streams)
        return err.value, time.monotonic() - started

    err, waited = asyncio.run(main())
    assert err.message == "choice 2 failed" and waited < 5  # not the 30 s timeout
    assert len(served.runner.seqs) == 4 and all(seq.cancelled for seq in served.runner.seqs)


def test_streamed_choices_are_cancelled_when_one_fails(setup):
    served, plan = setup

    async def main():
        streams = open_streams(served, [plan], 4, timeout=30)
        meta = {"id": "cmpl-x", "created": 0, "model": "t/x"}
        # read to the end, as the server's StreamingResponse does: the stream ends at the error
        events = [event.decode() async for event in _stream(served, [plan], streams, 4, [], False, meta, False)]
        return events, [seq.cancelled for seq in served.runner.seqs]

    events, cancelled = asyncio.run(asyncio.wait_for(main(), 10))  # before: on until the 30 s timeout
    assert json.loads(events[-1].removeprefix("data: "))["error"]["message"] == "choice 2 failed"
    assert cancelled == [True] * 4
