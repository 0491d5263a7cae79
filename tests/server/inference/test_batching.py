"""The encoder batcher's gathering (without a server) and the stage timings a live server reports."""

from __future__ import annotations

import asyncio
import threading
import time

from haven.server.inference.batching import Batcher

from .conftest import post


def _recording_batcher(seconds: float, **kw) -> tuple[Batcher, list[int]]:
    sizes: list[int] = []

    def run(jobs):
        sizes.append(len(jobs))
        time.sleep(seconds)
        return [job.inputs for job in jobs]

    return Batcher(run, name="t", **kw), sizes


def test_closed_loop_clients_returning_one_by_one_are_batched_together():
    """Four clients whose next requests arrive a little apart, just after their batch: one batch of
    four, not a batch of one (the first arrival) and then one of three."""
    batcher, sizes = _recording_batcher(0.05, gather=0.5)

    async def main():
        await asyncio.gather(*(batcher.submit(i, {}, size=1, tokens=4) for i in range(4)))  # a batch of 4 runs
        sizes.clear()

        async def late(i: int):
            await asyncio.sleep(0.02 * i)
            return await batcher.submit(i, {}, size=1, tokens=4)

        return await asyncio.gather(*(late(i) for i in range(4)))

    try:
        assert asyncio.run(main()) == [0, 1, 2, 3]
        assert sizes == [4]
    finally:
        batcher.close()


def test_a_lone_client_never_waits_for_company():
    """One request at a time: each runs at once (no gathering wait after a one-row batch)."""
    batcher, sizes = _recording_batcher(0.0, gather=0.5)

    async def main():
        started = time.monotonic()
        for i in range(10):
            assert await batcher.submit(i, {}, size=1, tokens=4) == i
        return time.monotonic() - started

    try:
        assert asyncio.run(main()) < 0.6  # a gathering wait would be min(0.5, 0.5 / 4) s each: 1.25 s
        assert sizes == [1] * 10
    finally:
        batcher.close()


def test_answers_report_where_the_time_went(inference_hub):
    """Server-Timing: tokenize, queue, pad, forward, postprocess, and the batch's rows; concurrent
    requests share batches."""
    repo = inference_hub.repos["text-classification"]
    post(inference_hub.url, repo, {"inputs": "warm up"}, inference_hub.token).raise_for_status()
    replies: list = []

    def one(i: int) -> None:
        replies.append(post(inference_hub.url, repo, {"inputs": f"sentence number {i}"}, inference_hub.token))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = []
    for r in replies:
        assert r.status_code == 200, r.text
        parts = dict(p.strip().split(";", 1) for p in r.headers["server-timing"].split(","))
        assert set(parts) == {"tokenize", "queue", "pad", "forward", "postprocess", "batch"}
        assert all(float(parts[k].removeprefix("dur=")) >= 0 for k in parts if k != "batch")
        rows.append(int(parts["batch"].removeprefix('desc="').split()[0]))
    assert all(1 <= n <= 8 for n in rows) and sum(rows) > 8  # some requests were answered in a shared batch
