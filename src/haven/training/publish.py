"""Publishing a run: the repository (`hub_model_id`, or output_dir's name in your namespace), the
model with its card at the end, and checkpoints as they are saved (`hub_strategy`):

- "end":        only `trainer.push_to_hub()` (and `trainer.save_model()`) commit;
- "every_save": each checkpoint's model files are also committed to the repo's root;
- "checkpoint": as every_save, plus the whole checkpoint under `last-checkpoint/`, to resume elsewhere.

Commits are synchronous: when a call returns, the files are on the hub. Everything in output_dir is
committed except checkpoint-* folders and names starting with "_"; TensorBoard's `runs/` goes with it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

IGNORE = ["_*", "checkpoint-*", "checkpoint-*/**"]
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")


def _session(trainer: Any, token: str | None = None) -> Any:
    from ..hub.http import HubSession

    return HubSession(None, token if token is not None else trainer.args.hub_token)


def init_repo(trainer: Any, token: str | None = None, private: bool | None = None) -> str:
    """Create the repository if needed; returns its `owner/name`."""
    from ..hub import repos

    args = trainer.args
    name = args.hub_model_id or Path(args.output_dir).absolute().name
    with _session(trainer, token) as session:
        if "/" not in name:
            name = f"{repos.whoami(session)['name']}/{name}"
        url = repos.create_repo(session, name, private=private if private is not None else args.hub_private_repo,
                                exist_ok=True)
    return url.repo_id


def _upload(trainer: Any, folder: str, message: str, token: str | None = None, revision: str | None = None,
            path_in_repo: str = "", ignore: list[str] | None = None) -> Any:
    from ..hub.upload import upload_folder

    if trainer.hub_model_id is None:
        trainer.init_hf_repo(token=token)
    with _session(trainer, token) as session:
        return upload_folder(session, repo_id=trainer.hub_model_id, folder_path=folder, path_in_repo=path_in_repo,
                             ignore_patterns=ignore, commit_message=message, revision=revision)


def push_folder(trainer: Any, commit_message: str, token: str | None = None, revision: str | None = None) -> Any:
    """Commit output_dir as it is (checkpoints left out)."""
    return _upload(trainer, trainer.args.output_dir, commit_message, token, revision, ignore=IGNORE)


def push_to_hub(trainer: Any, *, commit_message: str | None, token: str | None, revision: str | None,
                **card_kwargs: Any) -> Any:
    trainer.control = trainer._call("on_push_begin")
    if trainer.hub_model_id is None:
        trainer.init_hf_repo(token=token)
    trainer.save_model(_internal_call=True)
    trainer.create_model_card(**card_kwargs)
    return push_folder(trainer, commit_message or "End of training", token, revision)


def push_checkpoint(trainer: Any, folder: str) -> None:
    """On each save (hub_strategy every_save / checkpoint): the checkpoint's model files go to the root."""
    args, state = trainer.args, trainer.state
    trainer.control = trainer._call("on_push_begin")
    out = args.output_dir
    for name in os.listdir(folder):
        if name in MODEL_FILES or (name.startswith("model-") and name.endswith(".safetensors")):
            shutil.copy(os.path.join(folder, name), os.path.join(out, name))
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(out)
    shutil.copy(os.path.join(folder, "training_args.json"), os.path.join(out, "training_args.json"))
    what = f"step {state.global_step}" if args.save_strategy == "steps" else f"epoch {int(state.epoch)}"
    message = f"Training in progress, {what}"
    push_folder(trainer, message)
    if args.hub_strategy == "checkpoint":
        _upload(trainer, folder, message + ", checkpoint", path_in_repo="last-checkpoint")
