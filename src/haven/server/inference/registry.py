"""The models the inference API has in memory: loaded once, kept in an LRU bounded by weight bytes.

A model is keyed by (repo id, commit): every request resolves its revision to a commit first, so a
new commit on the served branch is picked up by the next request (it loads as a new entry, and the
old one ages out of the LRU). Loading runs on one background thread:

- `get(...)` answers a ready `Served` at once; for a model that is not ready it starts the load
  (once, however many requests ask) and raises `ModelLoading` with an estimated time, or with
  `wait=True` waits for the load to finish.
- The files of the commit are copied out of the hub's storage into `DATA/inference/<id>/<commit>/`
  (`StoreFiles`; weights of other frameworks are left out when safetensors are there), or
  downloaded from the hub by a worker (`worker.HubFiles`), then
  `haven.pipeline(task, model=folder)` builds the model and tokenizer as a user's call would. A
  text-generation model is also told to prepack its weights, as encoders' pipelines do (its
  decode steps run many rows at once).
- After a load, the least recently used models are dropped until the weights in memory, their
  prepacked copies included, fit the budget (`--inference-memory`), and the copied files of every
  commit no longer loaded are deleted. A model bigger than the whole budget is refused (507).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...linear.dense import packed_bytes
from ..api.common import ApiError

log = logging.getLogger("haven.server.inference")

OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ot", ".gguf", ".tflite", ".ckpt")
LOAD_BYTES_PER_SECOND = 200e6  # for the 503's estimated_time: copy + map + prepack
RETRY_FAILED_LOAD = 30.0  # seconds a failed load is answered with its error before a request tries again


class InferenceError(ApiError):
    """An inference request the server answers with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict | None = None, extra: dict | None = None):
        super().__init__(status, message, headers=headers, extra=extra)


class ModelLoading(InferenceError):
    def __init__(self, repo_id: str, estimated: float):
        super().__init__(
            503,
            f"Model {repo_id} is currently loading",
            headers={"Retry-After": str(max(1, round(estimated)))},
            extra={"estimated_time": round(estimated, 1)},
        )


@dataclass
class Served:
    """One loaded model: its pipeline and what runs requests on it (a batcher or the generator)."""

    repo_id: str
    commit: str
    task: str
    pipe: Any
    nbytes: int
    sentence_transformers: bool = False
    runner: Any = None  # batching.Batcher or continuous.Generator, made by the registry's `make_runner`
    last_used: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


def weight_bytes(model: Any) -> int:
    """Bytes of a model's parameters and buffers (prepacked copies are counted apart: `packed_bytes`)."""
    tensors = [*model.parameters(), *model.buffers()]
    seen, total = set(), 0
    for t in tensors:
        key = t.data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


class Registry:
    """Load-once LRU of `Served` models. `files` gives a commit's files in a folder (`StoreFiles`
    for the hub's own storage, `worker.HubFiles` for a worker that downloads from its hub);
    `budget` bytes of weights may stay in memory; `make_runner(served)` gives each loaded model
    its request runner; `options` are the `pipeline()` keyword arguments every model loads with
    (the server's --inference-device, --inference-dtype, --inference-load-in-8bit/4bit)."""

    def __init__(self, files: Any, budget: int, make_runner: Callable[[Served], Any], options: dict | None = None):
        self.files = files
        self.budget = budget
        self.make_runner = make_runner
        self.options = options or {}
        self.loaded: OrderedDict[tuple[str, str], Served] = OrderedDict()
        self.loading: dict[tuple[str, str], tuple[Future, float]] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="haven-inference-load")

    # -- asking for a model ---------------------------------------------------------------------

    def lookup(self, repo_id: str, commit: str, task: str | None) -> Served | Future:
        """The served model, or the future of its (possibly just started) load."""
        key = (repo_id, commit)
        with self.lock:
            served = self.loaded.get(key)
            if served is not None:
                self.loaded.move_to_end(key)
                served.last_used = time.monotonic()
                return served
            pending = self.loading.get(key)
            if pending is not None and pending[0].done() and time.monotonic() - pending[1] > RETRY_FAILED_LOAD:
                pending = None  # a failed load, reported for a while: try again
            if pending is None:
                estimate = self.files.estimate(repo_id, commit)
                future = self.pool.submit(self._load, repo_id, commit, task)
                pending = (future, time.monotonic() + estimate)
                self.loading[key] = pending
            return pending[0]

    def eta(self, repo_id: str, commit: str) -> float:
        pending = self.loading.get((repo_id, commit))
        return 1.0 if pending is None else max(1.0, pending[1] - time.monotonic())

    # -- loading --------------------------------------------------------------------------------

    def _load(self, repo_id: str, commit: str, task: str | None) -> Served:
        key = (repo_id, commit)
        try:
            served = self._build(repo_id, commit, task)
            served.runner = self.make_runner(served)
            with self.lock:
                self.loaded[key] = served
                self._evict()
            log.info("inference: loaded %s@%s (%s, %.1f MB)", repo_id, commit[:8], served.task, served.nbytes / 1e6)
            with self.lock:
                self.loading.pop(key, None)
            self._prune()
            return served
        except BaseException:
            # the failed future stays (its time is now when it failed), so requests that do not wait
            # get the error instead of starting the same load again and answering 503 forever
            with self.lock:
                if key in self.loading:
                    self.loading[key] = (self.loading[key][0], time.monotonic())
            raise

    def _build(self, repo_id: str, commit: str, task: str | None) -> Served:
        from ... import pipeline
        from ...pipelines import TASKS, infer_task

        folder = self.files.snapshot(repo_id, commit)
        st = (folder / "modules.json").is_file()
        task = task or infer_task(str(folder))
        if task not in TASKS:
            raise InferenceError(400, unsupported_task(repo_id, task))
        # a sentence-transformers repo embeds sentences for feature-extraction too (as the Hub)
        pipe = pipeline("sentence-similarity" if st and task == "feature-extraction" else task, model=str(folder),
                        **self.options)
        if task == "text-generation" and hasattr(pipe.model, "optimize_for_inference"):
            # the continuous batch decodes up to 16 rows per step: prepacked weights make those
            # steps 1.15-1.45x faster, for a second copy of the weights (counted below)
            pipe.model.optimize_for_inference(prepack=True)
        nbytes = weight_bytes(pipe.model) + packed_bytes(pipe.model)
        if nbytes > self.budget:
            raise InferenceError(
                507,
                f"{repo_id} has {nbytes / 1e6:.0f} MB of weights, more than this hub's whole inference memory "
                f"({self.budget / 1e6:.0f} MB): start the hub with a larger --inference-memory",
            )
        return Served(repo_id, commit, task, pipe, nbytes, sentence_transformers=st)

    def _evict(self) -> None:
        """Drop least recently used models until the rest fit the budget (the newest always stays)."""
        total = sum(s.nbytes for s in self.loaded.values())
        while total > self.budget and len(self.loaded) > 1:
            key, old = self.loaded.popitem(last=False)
            total -= old.nbytes
            old.close()
            log.info("inference: evicted %s@%s (%.1f MB)", key[0], key[1][:8], old.nbytes / 1e6)

    def _prune(self) -> None:
        """Delete the copied files of every commit neither loaded nor loading (an evicted model, a
        commit the branch moved past): otherwise each load of a new commit leaves its files behind
        for good. A loaded model's files stay (its weights are mapped from them)."""
        root = getattr(self.files, "folder", None)
        if root is None:
            return
        with self.lock:
            keep = {*self.loaded, *self.loading}
        for folder in root.glob("[!.]*/*/*"):  # <ns>/<name>/<commit>; .tmp holds copies being written
            repo_id = f"{folder.parent.parent.name}/{folder.parent.name}"
            if folder.is_dir() and (repo_id, folder.name) not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                log.info("inference: removed the files of %s@%s", repo_id, folder.name[:8])

    def models(self) -> list[Served]:
        with self.lock:
            return list(self.loaded.values())

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            for served in self.loaded.values():
                served.close()
            self.loaded.clear()


def unsupported_task(repo_id: str, task: str | None) -> str:
    from ...pipelines import TASKS

    return (
        f"{repo_id} is a {task} model, which Haven's inference API cannot run; it serves: {', '.join(sorted(TASKS))}"
        if task
        else f"{repo_id} names no task: add `pipeline_tag:` to its model card (or `architectures` to config.json); "
        f"Haven's inference API serves: {', '.join(sorted(TASKS))}"
    )


class StoreFiles:
    """A commit's files copied out of the hub's own storage (`RepoStore`) into `folder`."""

    def __init__(self, storage: Any, folder: Path):
        self.storage = storage
        self.folder = folder

    def estimate(self, repo_id: str, commit: str) -> float:
        """Seconds a load may take (for the 503's estimated_time), from the weights' size."""
        try:
            entries = self.storage.list_tree("model", repo_id, commit, recursive=True)
        except Exception:  # noqa: BLE001 - an estimate only; the load reports the real error
            return 2.0
        size = sum(e.size for e in entries if e.type == "file" and e.path.endswith(".safetensors"))
        return 2.0 + size / LOAD_BYTES_PER_SECOND

    def snapshot(self, repo_id: str, commit: str) -> Path:
        """The commit's files in a folder of their own (written once, atomically)."""
        target = self.folder / repo_id / commit
        if target.is_dir():
            return target
        entries = [e for e in self.storage.list_tree("model", repo_id, commit, recursive=True) if e.type == "file"]
        has_safetensors = any(e.path.endswith(".safetensors") for e in entries)
        tmp = self.folder / ".tmp" / f"{repo_id.replace('/', '--')}-{commit}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for entry in entries:
            if has_safetensors and entry.path.endswith(OTHER_WEIGHTS):
                continue
            path = tmp / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            _, content = self.storage.open_file("model", repo_id, commit, entry.path)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                with content, open(path, "wb") as out:
                    shutil.copyfileobj(content, out, 4 << 20)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:  # another load wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
        return target
