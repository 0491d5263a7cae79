"""Where the hub is and who we are: endpoint, token, `haven login` storage, git credentials.

Lookup order, read at call time (so a test or a long-lived process can change them):
  endpoint: `HAVEN_ENDPOINT`, then `HF_ENDPOINT`, then the public Hub;
  token:    `HAVEN_TOKEN`, then `HF_TOKEN`, then `$HAVEN_HOME/token` (written by `haven login`).
`HAVEN_HOME` defaults to `~/.cache/haven`; the download cache lives in `$HAVEN_HOME/hub`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


def haven_home() -> str:
    return os.path.expanduser(os.environ.get("HAVEN_HOME") or os.path.join("~", ".cache", "haven"))


def default_cache_dir() -> str:
    return os.path.join(haven_home(), "hub")


def token_path() -> str:
    return os.path.join(haven_home(), "token")


def get_endpoint() -> str:
    """Base URL of the hub, without a trailing slash."""
    value = os.environ.get("HAVEN_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return value.rstrip("/")


def env_flag(*names: str) -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


def is_offline() -> bool:
    return env_flag("HAVEN_OFFLINE", "HF_HUB_OFFLINE")


def progress_disabled() -> bool:
    return env_flag("HAVEN_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")


def get_token() -> str | None:
    """The token to send, or None for anonymous access."""
    for name in ("HAVEN_TOKEN", "HF_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    try:
        with open(token_path(), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def save_token(token: str) -> str:
    """Store `token` for later sessions (mode 600). Returns the file's path."""
    path = token_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # A fresh file, created 0600 and moved into place: an old token file with looser permissions
    # is replaced (O_TRUNC would keep its mode), and a crash never leaves half a token.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".token-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token.strip() + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def delete_token() -> bool:
    """Forget the stored token. True if there was one."""
    try:
        os.remove(token_path())
        return True
    except FileNotFoundError:
        return False


# -- git credentials --------------------------------------------------------------------------------


def _credential_description(endpoint: str, username: str | None = None, password: str | None = None) -> str:
    parts = urlsplit(endpoint)
    lines = [f"protocol={parts.scheme}", f"host={parts.netloc}"]
    if username is not None:
        lines.append(f"username={username}")
    if password is not None:
        lines.append(f"password={password}")
    return "\n".join(lines) + "\n\n"


def git_credential_helpers() -> list[str]:
    """The credential helpers git is configured with (empty: git would store nothing)."""
    try:
        out = subprocess.run(
            ["git", "config", "--get-all", "credential.helper"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.stdout.splitlines() if line.strip()]


def git_credential_approve(endpoint: str, username: str, token: str) -> bool:
    """Hand the token to git's credential helpers for `endpoint`. False if git is missing."""
    return _git_credential("approve", _credential_description(endpoint, username, token))


def git_credential_reject(endpoint: str) -> bool:
    """Ask git's credential helpers to forget what they hold for `endpoint`."""
    return _git_credential("reject", _credential_description(endpoint))


def _git_credential(action: str, description: str) -> bool:
    try:
        proc = subprocess.run(
            ["git", "credential", action], input=description, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
