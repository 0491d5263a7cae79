"""Server-sent events of a text-generation stream (no server): each token's event leaves as soon as
the token is chosen, and the last one carries `generated_text`."""

from __future__ import annotations

import asyncio
import json
import threading

from haven import pipeline
from haven.server.inference.generation import TokenStream, _events, answer, prepare
from haven.server.inference.registry import Served


class OneTokenAtATime:
    """Chooses token 5, then waits for `go` before choosing 6, the last (as the Generator hands
    tokens out: appended, the end decided, then emitted)."""

    def __init__(self):
        self.go = threading.Event()

    def submit(self, seq):
        def decode():
            seq.ids.append(5)
            seq.emit((5, -0.1))
            if self.go.wait(10):
                seq.ids.append(6)
                seq.reason = "length"
                seq.emit((6, -0.2))
            seq.emit(None)

        threading.Thread(target=decode, daemon=True).start()


def test_an_event_is_sent_before_the_next_token_is_chosen(gpt2_dir):
    """The first token's event arrives while the second is not chosen yet (it was held back until
    the next token came, to learn whether it was the last: the first event of every stream came a
    whole decode step late)."""
    pipe = pipeline("text-generation", model=gpt2_dir)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)
    served.runner = runner = OneTokenAtATime()
    plan = prepare(served, "hello", {"max_new_tokens": 2}, max_new_tokens=10, max_tokens=10**6)

    async def main():
        events = _events(served, plan, TokenStream(served, plan, timeout=20))
        first = await asyncio.wait_for(events.__anext__(), 5)
        runner.go.set()
        return first, [event async for event in events]

    first, rest = asyncio.run(main())
    first = json.loads(first.decode().removeprefix("data: "))
    assert first["token"]["id"] == 5 and first["generated_text"] is None
    assert len(rest) == 1
    last = json.loads(rest[0].decode().removeprefix("data: "))
    assert last["token"]["id"] == 6 and last["index"] == 1
    assert last["generated_text"] == answer(served, plan, [5, 6])[0]["generated_text"]
