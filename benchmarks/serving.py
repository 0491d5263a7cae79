"""What the hub benchmarks share: a `haven serve` on a free loopback port, and `haven admin` calls."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haven(*args: str, data: Path, stdin: str | None = None) -> str:
    """`haven ARGS --data DATA`'s standard output."""
    cmd = [sys.executable, "-m", "haven.cli", *args, "--data", str(data)]
    return subprocess.run(cmd, input=stdin, check=True, capture_output=True, text=True).stdout.strip()


def start_server(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`haven serve --no-demo` on 127.0.0.1, its output in `log`; returns once /api/health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "haven.cli", "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(port),
           "--data", str(data), "--public-url", url, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115 - the server's life
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"haven serve exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"haven serve did not start:\n{log.read_text()}")
