"""Shared fixtures of the hub client tests: a user on the session's `hub_server`, and an
environment (HAVEN_ENDPOINT, HAVEN_TOKEN, a private HAVEN_HOME and HF_HOME) pointing Haven's client at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fixtures.server import unique_name
from haven.hub.client import HubClient


@dataclass
class HubEnv:
    url: str
    user: str
    token: str = field(repr=False)  # never in a failure report
    home: Path
    client: HubClient

    @property
    def cache_dir(self) -> Path:
        return self.home / "hub"

    def new_repo(self, prefix: str = "repo") -> str:
        return f"{self.user}/{unique_name(prefix)}"


@pytest.fixture(scope="session")
def hub_user(hub_server) -> tuple[str, str]:
    name = unique_name("hubclient")
    return name, hub_server.create_user(name)


@pytest.fixture
def hub(hub_server, hub_user, tmp_path, monkeypatch) -> HubEnv:
    user, token = hub_user
    home = tmp_path / "haven-home"
    for name in ("HF_TOKEN", "HAVEN_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # never the real ~/.cache (cache, HF's token file)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HAVEN_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HAVEN_TOKEN", token)
    monkeypatch.setenv("HAVEN_HOME", str(home))
    client = HubClient()
    yield HubEnv(hub_server.url, user, token, home, client)
    client.close()
