"""Dynamic batching for encoder models, off the event loop.

Requests for one model queue up in its `Batcher`; one worker thread takes the oldest request and
every queued request with the same parameters behind it while the padded batch stays within a
token budget (rows x longest row <= `max_tokens`), runs them as one call, and hands each request
its own answer. While a batch runs, the next one gathers: under load batches grow by themselves,
and a lone request never waits for company.

Closed-loop clients (each sends its next request when the last is answered) arrive in a burst
just after a batch ends, not all at once: taking the first arrival alone would run a one-row
batch (a whole pass over the weights for one request) and leave the rest for the next. So when
fewer rows wait than the previous batch had, the worker waits up to `gather` seconds (at most a
quarter of a typical batch's time) for them; a lone client (previous batch: one row) never waits.
Each job's `timing` gets the seconds it queued ("queue") and the rows of its batch ("rows").

A batch that fails (one request's bad input) is run again one request at a time, so only the
request at fault gets the error. The queue is bounded: when `max_queue` requests wait, `submit`
raises `QueueFull` (the route answers 429 with Retry-After). A request waits at most `timeout`
seconds (504); one that timed out is skipped, not run.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .registry import InferenceError


class QueueFull(InferenceError):
    def __init__(self, retry_after: float):
        super().__init__(
            429,
            "too many inference requests are waiting for this model: retry after a moment",
            headers={"Retry-After": str(max(1, round(retry_after)))},
        )


@dataclass
class Job:
    inputs: Any  # what the request sent (one input or a list)
    size: int  # number of rows it adds to a batch
    tokens: int  # its longest row, in tokens
    params: dict
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    key: str = ""
    started: float = field(default_factory=time.monotonic)
    timing: dict = field(default_factory=dict)  # filled on the worker thread before the answer is settled

    def __post_init__(self) -> None:
        self.key = json.dumps(self.params, sort_keys=True, default=str)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(apply)
        except RuntimeError:  # the caller's event loop has closed: nobody is waiting for this answer
            pass


RunBatch = Callable[[list[Job]], list[Any]]  # jobs of equal params -> one answer per job


class Batcher:
    """One worker thread running `run(jobs)` on batches of queued jobs."""

    def __init__(self, run: RunBatch, *, name: str, max_tokens: int = 8192, max_rows: int = 64,
                 max_queue: int = 256, timeout: float = 60.0, gather: float = 0.02):
        self.run = run
        self.max_tokens = max_tokens
        self.max_rows = max_rows
        self.max_queue = max_queue
        self.timeout = timeout
        self.gather = gather
        self.queue: deque[Job] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.busy_seconds = 0.5  # a running mean of one batch's time, for Retry-After
        self.last_rows = 1  # rows of the previous batch
        self.thread = threading.Thread(target=self._work, name=f"haven-batcher-{name}", daemon=True)
        self.thread.start()

    async def submit(self, inputs: Any, params: dict, *, size: int, tokens: int, timing: dict | None = None) -> Any:
        """The answer to `inputs`; `timing`, when given, receives the job's "queue" seconds, its
        batch's "rows" and whatever the run adds."""
        loop = asyncio.get_running_loop()
        job = Job(inputs, size, tokens, params, loop, loop.create_future())
        if timing is not None:
            job.timing = timing
        with self.cond:
            if len(self.queue) >= self.max_queue:
                raise QueueFull(self.busy_seconds * len(self.queue) / max(1, self.max_rows))
            self.queue.append(job)
            self.cond.notify()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.timeout)
        except TimeoutError:
            job.future.cancel()
            raise InferenceError(504, f"the model did not answer within {self.timeout:g} s: retry later") from None

    def _take(self) -> list[Job] | None:
        with self.cond:
            while not self.queue and not self.closed:
                self.cond.wait()
            if self.closed:
                return None
            deadline = time.monotonic() + min(self.gather, self.busy_seconds / 4)
            while not self.closed and sum(job.size for job in self.queue) < self.last_rows:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            if self.closed or not self.queue:
                return None if self.closed else []
            first = self.queue.popleft()
            batch, rows, longest = [first], first.size, first.tokens
            kept: deque[Job] = deque()
            while self.queue:
                job = self.queue.popleft()
                wider = max(longest, job.tokens)
                if job.key == first.key and rows + job.size <= self.max_rows and (rows + job.size) * wider <= self.max_tokens:
                    batch.append(job)
                    rows, longest = rows + job.size, wider
                else:
                    kept.append(job)
            self.queue.extendleft(reversed(kept))
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            batch = [job for job in batch if not job.future.cancelled()]
            if not batch:
                continue
            start = time.monotonic()
            rows = sum(job.size for job in batch)
            for job in batch:
                job.timing.update(queue=start - job.started, rows=rows)
            try:
                answers = self.run(batch)
            except Exception as err:  # noqa: BLE001 - handed to the requests below
                if len(batch) == 1:
                    batch[0].settle(error=err)
                else:
                    for job in batch:  # find the request at fault: each alone
                        try:
                            job.settle(self.run([job])[0])
                        except Exception as one:  # noqa: BLE001
                            job.settle(error=one)
            else:
                for job, answer in zip(batch, answers):
                    job.settle(answer)
            self.busy_seconds = 0.8 * self.busy_seconds + 0.2 * (time.monotonic() - start)
            self.last_rows = rows

    def close(self) -> None:
        with self.cond:
            self.closed = True
            for job in self.queue:
                job.settle(error=InferenceError(503, "the model was unloaded: retry the request"))
            self.queue.clear()
            self.cond.notify_all()
