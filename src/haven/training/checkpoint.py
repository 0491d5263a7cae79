"""Checkpoints: `output_dir/checkpoint-<step>/` with everything a run needs to continue exactly.

    config.json + model.safetensors   the model (save_pretrained), and the tokenizer's files
    optimizer.pt, scheduler.pt        their state dicts (torch.save; read back with weights_only=True)
    rng_state.pth                     Python, NumPy, torch CPU (and CUDA) generator states
    trainer_state.json                TrainerState: step, epoch, log_history, best metric ...
    training_args.json                the arguments, for people (the reference pickles them; Haven does not)

Nothing here unpickles arbitrary objects: every `.pt` file is loaded with `weights_only=True`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from typing import Any

import numpy as np
import torch

PREFIX = "checkpoint"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX}-(\d+)$")
OPTIMIZER, SCHEDULER, RNG, STATE, ARGS = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                                          "training_args.json")


def sorted_checkpoints(output_dir: str) -> list[str]:
    """Checkpoint folders in `output_dir`, oldest step first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), os.path.join(output_dir, name)) for name in os.listdir(output_dir)
             if (m := _CHECKPOINT_RE.match(name)) and os.path.isdir(os.path.join(output_dir, name))]
    return [path for _, path in sorted(found)]


def last_checkpoint(output_dir: str) -> str:
    """The newest checkpoint folder; ValueError when there is none."""
    found = sorted_checkpoints(output_dir)
    if not found:
        raise ValueError(f"no checkpoint-<step> folder in {output_dir!r} to resume from; train with a save_strategy "
                         "first, or pass resume_from_checkpoint=<path>")
    return found[-1]


def rotate(output_dir: str, limit: int | None, best: str | None) -> list[str]:
    """Delete the oldest checkpoints beyond `limit`, never the best one. Returns the deleted paths."""
    if not limit:
        return []
    found = sorted_checkpoints(output_dir)
    if best is not None and best in found:  # keep the best: move it to the newest end, as the reference does
        found.remove(best)
        found.append(best)
    if best is not None and limit == 1 and found[-1] != best:
        limit = 2
    doomed = found[: max(0, len(found) - limit)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def save_rng_state(folder: str) -> None:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, os.path.join(folder, RNG))


def load_rng_state(folder: str) -> None:
    path = os.path.join(folder, RNG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: this checkpoint cannot resume with the same random numbers")
    state = torch.load(path, weights_only=True)
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(folder: str, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    torch.save(optimizer.state_dict(), os.path.join(folder, OPTIMIZER))
    torch.save(scheduler.state_dict(), os.path.join(folder, SCHEDULER))


def load_training_state(folder: str, optimizer: torch.optim.Optimizer, scheduler: Any, device: torch.device) -> None:
    for name in (OPTIMIZER, SCHEDULER):
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"{folder} has no {name}: it was saved with save_only_model=True, which cannot "
                                    "resume; start a new run from its weights instead")
    optimizer.load_state_dict(torch.load(os.path.join(folder, OPTIMIZER), map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(os.path.join(folder, SCHEDULER), weights_only=True))


def load_model_weights(model: torch.nn.Module, folder: str) -> None:
    """Copy a checkpoint's safetensors weights into `model` in place (the optimizer keeps its parameters)."""
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no *.safetensors weights to resume from")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(os.path.join(folder, name)))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    tied = {k for k in missing if _tied(model, k)}
    if set(missing) - tied:
        raise ValueError(f"checkpoint {folder} lacks weights {sorted(set(missing) - tied)[:5]} ...: it belongs to "
                         "another model")
    with torch.no_grad():
        for key, value in state.items():
            if key in own:
                own[key].copy_(value)


def _tied(model: torch.nn.Module, key: str) -> bool:
    """Whether a missing key is an output embedding tied to the input one (saved once)."""
    out = getattr(model, "get_output_embeddings", lambda: None)()
    inp = getattr(model, "get_input_embeddings", lambda: None)()
    return out is not None and inp is not None and out.weight is inp.weight and key.endswith("weight")
