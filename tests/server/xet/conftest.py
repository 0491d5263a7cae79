"""A hub for the Xet tests, and the unmodified client run as users run it: a fresh process with
the default settings (no HF_HUB_DISABLE_XET, which tests/conftest.py sets for everything else)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fixtures.server import start_server, stop_server


@pytest.fixture(scope="package")
def xet_hub(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("xet-hub"))
    try:
        yield server
    finally:
        stop_server(server)


def default_env(hub, token: str | None) -> dict:
    env = hub.env(token)
    env.pop("HF_HUB_DISABLE_XET")
    return env


def run_client(hub, token: str | None, code: str, *, env: dict | None = None, timeout: int = 300, **params):
    """Run `code` in a fresh Python with the default client configured for `hub`; `params` arrive as
    the dict `P`; what the code assigns to `OUT` comes back (JSON)."""
    script = "import json, os, sys\nP = json.loads(sys.argv[1])\nOUT = None\n" + textwrap.dedent(code)
    script += "\nprint('@@OUT ' + json.dumps(OUT))\n"
    run = subprocess.run([sys.executable, "-c", script, json.dumps(params)], env=env or default_env(hub, token),
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"client failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}\n{hub.log()[-3000:]}"
    line = [x for x in run.stdout.splitlines() if x.startswith("@@OUT ")][-1]
    return json.loads(line[6:])
