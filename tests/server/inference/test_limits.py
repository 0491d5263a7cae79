"""Per-request timeouts (504) and a model bigger than the whole inference memory (507), without a
server: the real Batcher, Generator + TokenStream and Registry with tiny limits."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from haven import pipeline
from haven.linear.dense import _packed_weights
from haven.server.inference.batching import Batcher, Job
from haven.server.inference.continuous import Generator
from haven.server.inference.generation import TokenStream, prepare
from haven.server.inference.registry import InferenceError, Registry, Served


def test_a_request_waits_at_most_the_timeout():
    """504 after `timeout` seconds; the request that timed out is skipped, not run later."""
    ran: list = []
    release = threading.Event()

    def run(jobs):
        ran.extend(job.inputs for job in jobs)
        release.wait(5)
        return [job.inputs for job in jobs]

    batcher = Batcher(run, name="t", timeout=0.2)

    async def main():
        first = asyncio.create_task(batcher.submit("first", {}, size=1, tokens=1))  # blocks the worker
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(InferenceError) as err:
            await batcher.submit("second", {}, size=1, tokens=1)
        waited = time.monotonic() - started
        with pytest.raises(InferenceError):
            await first
        release.set()
        return err.value, waited

    try:
        err, waited = asyncio.run(main())
        assert err.status == 504 and "did not answer within" in err.message
        assert 0.15 < waited < 2
        time.sleep(0.2)  # the worker is free again: a timed-out job must not run
        assert ran == ["first"]
    finally:
        release.set()
        batcher.close()


def test_a_generation_stream_times_out(gpt2_dir):
    """A generation that cannot finish within the timeout ends with 504 (and frees its row)."""
    pipe = pipeline("text-generation", model=gpt2_dir)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)

    class Slow(Generator):  # a slow decode step: a starved event loop cannot take ~60 tokens and reach
        def _step(self):  # the tiny model's 64-position window (a 500) before its 504
            time.sleep(0.05)
            super()._step()

    served.runner = Slow(served, rows=2)
    plan = prepare(served, "hello", {"max_new_tokens": 1000, "do_sample": False}, max_new_tokens=1000,
                   max_tokens=10**6)

    async def main():
        stream = TokenStream(served, plan, timeout=1e-6)  # far shorter than any decode step, however fast
        with pytest.raises(InferenceError) as err:
            await stream.collect()
        return err.value, stream

    try:
        err, stream = asyncio.run(main())
        assert err.status == 504 and "did not finish within" in err.message
        assert stream.seq.cancelled
        # the decoding thread may still hand this stream a token after its event loop closed: that
        # must not raise there (it ended the decoding thread, and every later request timed out)
        stream._emit((1, 0.0))
        time.sleep(0.3)
        assert served.runner.thread.is_alive()
    finally:
        served.runner.close()


class FolderFiles:
    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.snapshots = 0

    def estimate(self, repo_id: str, commit: str) -> float:
        return 1.0

    def snapshot(self, repo_id: str, commit: str) -> Path:
        self.snapshots += 1
        return self.folder


def test_a_model_bigger_than_the_budget_is_507_and_not_loaded_again(bert_sequence_classification_dir):
    files = FolderFiles(bert_sequence_classification_dir)
    registry = Registry(files, budget=1000, make_runner=lambda served: None)
    try:
        found = registry.lookup("a/big", "0" * 40, "text-classification")
        err = found.exception(timeout=60)
        assert isinstance(err, InferenceError) and err.status == 507
        assert "--inference-memory" in err.message
        again = registry.lookup("a/big", "0" * 40, "text-classification")  # a request that does not wait
        assert again.done() and again.exception().status == 507  # the error, not a new load (503 forever)
        assert files.snapshots == 1 and registry.models() == []
    finally:
        registry.close()


class CopiedFiles:
    """Each commit's files copied to `folder/<repo>/<commit>`, as the hub's and a worker's are."""

    def __init__(self, source: str, folder: Path):
        self.source, self.folder = Path(source), folder

    def estimate(self, repo_id: str, commit: str) -> float:
        return 1.0

    def snapshot(self, repo_id: str, commit: str) -> Path:
        target = self.folder / repo_id / commit
        if not target.is_dir():
            shutil.copytree(self.source, target)
        return target


def test_files_of_commits_no_longer_loaded_are_deleted(bert_sequence_classification_dir, tmp_path):
    """A new commit of a served repo evicts the old one (the budget holds one model): the old
    commit's copied files go, the loaded one's stay (they stayed for good before), and a copy
    being written is not touched."""
    files = CopiedFiles(bert_sequence_classification_dir, tmp_path / "inference")
    (files.folder / ".tmp" / "partial").mkdir(parents=True)
    registry = Registry(files, budget=10**12, make_runner=lambda served: None)
    try:
        first = registry.lookup("a/m", "1" * 40, "text-classification").result(timeout=60)
        assert (files.folder / "a" / "m" / ("1" * 40)).is_dir()
        registry.budget = first.nbytes  # room for one model
        registry.lookup("a/m", "2" * 40, "text-classification").result(timeout=60)
        assert [key for key in registry.loaded] == [("a/m", "2" * 40)]
    finally:
        registry.close()
    assert [p.name for p in (files.folder / "a" / "m").iterdir()] == ["2" * 40]
    assert (files.folder / ".tmp" / "partial").is_dir()


@pytest.mark.parametrize(("fixture", "task"), [("gpt2_dir", "text-generation"),
                                            ("bert_sequence_classification_dir", "text-classification")])
def test_prepacked_copies_count_against_the_budget(fixture, task, request):
    """A served model's bytes are its checkpoint's tensors plus the prepacked copies of its
    matrices (encoders' pipelines prepack; the server turns it on for text generation, whose
    continuous batch decodes many rows per step). Expected bytes come from the checkpoint file."""
    from safetensors import safe_open

    from haven.linear.dense import _ONEDNN

    folder = request.getfixturevalue(fixture)
    registry = Registry(FolderFiles(folder), budget=10**12, make_runner=lambda served: None)
    try:
        served = registry.lookup("a/m", "0" * 40, task).result(timeout=120)
    finally:
        registry.close()
    with safe_open(str(Path(folder) / "model.safetensors"), "pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    stored = sum(t.numel() * t.element_size() for t in tensors.values())
    # the blocks' matrices, and GPT-2's output layer (its wte); a classifier's pooler and head
    # multiply one row per text and are not packed
    packed = re.compile(r"(\.(layer|h)\.\d+\..*weight|wte\.weight)$")
    matrices = sum(t.numel() * t.element_size() for key, t in tensors.items() if t.dim() == 2 and packed.search(key))
    buffers = sum(b.numel() * b.element_size() for b in served.pipe.model.buffers())
    assert served.nbytes == stored + matrices + buffers
    if _ONEDNN and task == "text-generation":
        ids = torch.randint(0, 50, (4, 3))  # 12 rows: more than the few-row kernel takes
        with torch.inference_mode():
            served.pipe.model(ids)
        assert served.pipe.model.lm_head in _packed_weights


def test_models_are_unloaded_at_shutdown():
    """An app that includes the inference routes (the hub's, a worker's) closes its registry when it stops."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from haven.server.inference import routes

    class Service:
        closed = 0

        def close(self) -> None:
            self.closed += 1

    app = FastAPI()
    app.include_router(routes.router)
    app.state.inference = Service()
    with TestClient(app):
        assert app.state.inference.closed == 0
    assert app.state.inference.closed == 1


def test_choices_are_all_queued_or_none(gpt2_dir):
    """A completion whose choices do not all fit the queue is refused whole (429): the choices already
    queued are cancelled, not decoded for nobody (they held rows until max_tokens)."""
    from haven.server.inference.generation import open_streams

    pipe = pipeline("text-generation", model=gpt2_dir)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)
    served.runner = Generator(served, rows=1, max_queue=3)
    plan = prepare(served, "hello", {"max_new_tokens": 200, "do_sample": False}, max_new_tokens=200, max_tokens=10**6)
    submitted = []
    real_submit = served.runner.submit

    def submit(seq):
        real_submit(seq)
        submitted.append(seq)

    served.runner.submit = submit

    async def main():
        with pytest.raises(InferenceError) as err:
            open_streams(served, [plan, plan], 4, timeout=30)  # 8 sequences: 1 row + 3 waiting fit
        return err.value

    try:
        err = asyncio.run(main())
    finally:
        served.runner.close()
    assert err.status == 429
    assert len(submitted) >= 3 and all(seq.cancelled for seq in submitted)


def test_a_repo_whose_generation_config_names_only_max_length(gpt2_dir, tmp_path):
    """The pipeline adds no max_new_tokens when the repo's generation_config sets max_length: the
    request (with no max_new_tokens) is served to that total, as the pipeline does (it was a 400
    'max_new_tokens must be a positive integer, got None')."""
    import json
    import shutil

    from haven.server.inference.generation import answer

    folder = tmp_path / "gen"
    shutil.copytree(gpt2_dir, folder)
    config_path = folder / "generation_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config_path.write_text(json.dumps({**config, "max_length": 12, "do_sample": False}))
    pipe = pipeline("text-generation", model=str(folder))
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)
    served.runner = Generator(served, rows=2)
    plan = prepare(served, "hello there", {}, max_new_tokens=100, max_tokens=10**6)
    assert plan.generate["max_new_tokens"] == 12 - len(plan.features["input_ids"])

    async def main():
        return await TokenStream(served, plan, timeout=60).collect()

    try:
        tokens = [t for t, _ in asyncio.run(main())]
    finally:
        served.runner.close()
    assert answer(served, plan, tokens) == pipe("hello there")


def test_a_failed_decode_step_is_an_error_event(gpt2_dir):
    """A decode step that fails mid-stream ends the TGI stream with an error event InferenceClient
    raises on (the stream was cut with no event: the exception was not an InferenceError)."""
    from haven.server.inference.generation import _events

    pipe = pipeline("text-generation", model=gpt2_dir)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)

    class Failing:
        def submit(self, seq):
            seq.emit((5, -0.1))
            seq.emit(RuntimeError("out of memory"))

    served.runner = Failing()
    plan = prepare(served, "hello", {"max_new_tokens": 4}, max_new_tokens=10, max_tokens=10**6)

    async def main():
        return [event async for event in _events(served, plan, TokenStream(served, plan, timeout=10))]

    events = asyncio.run(main())
    last = json.loads(events[-1].decode().removeprefix("data: "))
    assert last["error"] == "generation failed: RuntimeError: out of memory"


def test_settling_a_job_whose_event_loop_closed_is_harmless():
    """A job still queued when its caller's event loop has closed (a timed-out request at shutdown)
    is settled without error: closing a batcher raised 'Event loop is closed' from call_soon_threadsafe."""
    loop = asyncio.new_event_loop()
    batcher = Batcher(lambda jobs: [None for _ in jobs], name="t")
    job = Job("x", 1, 1, {}, loop, loop.create_future())
    loop.close()
    with batcher.cond:
        batcher.queue.append(job)
    batcher.close()
