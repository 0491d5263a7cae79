"""Where the hub is, who we are, and where files go: endpoint, token, cache, git credentials.

Read at call time (so a test or a long-lived process can change them):
  endpoint: `HAVEN_ENDPOINT`, then `HF_ENDPOINT`, then the public Hub.
  cache:    `$HAVEN_HOME/hub` when `HAVEN_HOME` is set; else the cache `huggingface_hub` and
            `transformers` use, so one download serves all three: `HF_HUB_CACHE`, then
            `HUGGINGFACE_HUB_CACHE`, then `$HF_HOME/hub`, where `HF_HOME` defaults to
            `$XDG_CACHE_HOME/huggingface`, then `~/.cache/huggingface`.
  token:    `HAVEN_TOKEN`, then `HF_TOKEN`, then Haven's own token file `$HAVEN_HOME/token`
            (written by `haven login`; `HAVEN_HOME` defaults to `~/.cache/haven`), then the token
            file of `huggingface_hub` (`HF_TOKEN_PATH`, default `$HF_HOME/token`, written by
            `hf auth login`) -- that one only for the endpoint huggingface_hub itself would send it
            to (`HF_ENDPOINT`, default the public Hub), so a huggingface.co token never reaches
            another hub.
"""

from __future__ import annotations

import os
import tempfile

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


def _path_from_env(value: str) -> str:
    return os.path.expandvars(os.path.expanduser(value))


def haven_home() -> str:
    """Haven's own folder: the token of `haven login` (and the cache, when HAVEN_HOME is set)."""
    return _path_from_env(os.environ.get("HAVEN_HOME") or os.path.join("~", ".cache", "haven"))


def hf_home() -> str:
    """`huggingface_hub`'s HF_HOME: `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else ~/.cache/huggingface."""
    value = os.environ.get("HF_HOME")
    if not value:
        value = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return _path_from_env(value)


def default_cache_dir() -> str:
    """The download cache: `$HAVEN_HOME/hub` if HAVEN_HOME is set, else the ecosystem's shared one."""
    if os.environ.get("HAVEN_HOME"):
        return os.path.join(haven_home(), "hub")
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return _path_from_env(os.environ[name])
    return os.path.join(hf_home(), "hub")


def token_path() -> str:
    """Where `haven login` keeps the token."""
    return os.path.join(haven_home(), "token")


def hf_token_path() -> str:
    """Where `huggingface_hub` keeps its token (`HF_TOKEN_PATH`, else `$HF_HOME/token`)."""
    return _path_from_env(os.environ.get("HF_TOKEN_PATH") or os.path.join(hf_home(), "token"))


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


def get_token(endpoint: str | None = None) -> str | None:
    """The token to send to `endpoint` (default: `get_endpoint()`), or None for anonymous access."""
    for name in ("HAVEN_TOKEN", "HF_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    token = read_token(token_path())
    if token:
        return token
    hf_endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    if (endpoint or get_endpoint()).rstrip("/") == hf_endpoint:
        return read_token(hf_token_path())
    return None


def read_token(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
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
