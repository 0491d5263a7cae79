"""Haven as git's credential helper, so `git clone` / `git push` of hub repositories just work.

`haven login` registers, in the user's global git config and for the endpoint's URL only:

    [credential "http://hub.example:8080"]
        helper =
        helper = !'/path/to/python' -m haven.cli auth git-credential --endpoint http://hub.example:8080 --username me

The empty `helper =` clears helpers configured before it for that URL, so git asks Haven and no
other helper (an older plaintext copy of the token in `git-credential-store` is never consulted).
The `!` form runs this Python, so it works without `haven` on PATH. git then runs
`... git-credential get|store|erase` with `key=value` lines on stdin (git-credential(1)):

  get    -- for a request whose protocol, host (with port) and, when git sends one, path match
            the endpoint, print `username=` and `password=` (the token Haven would send there);
            any other host gets nothing.
  store  -- git says a credential worked: a token for the endpoint that differs from Haven's
            stored one becomes the stored token (as `haven login --token` would).
  erase  -- git says the credential was rejected: if it is Haven's stored token, forget it.
Other actions are ignored, as the protocol asks. `haven logout` removes the registration.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

from .auth import delete_token, get_token, read_token, save_token, token_path


def parse_request(lines: Iterable[str]) -> dict[str, str]:
    """git's credential description: `key=value` lines, ended by a blank line or EOF."""
    request: dict[str, str] = {}
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            break
        key, sep, value = line.partition("=")
        if sep:
            request[key] = value
    return request


def matches(endpoint: str, request: dict[str, str]) -> bool:
    """Whether git asks about `endpoint`: same protocol and host:port, and path under it if git sent one."""
    url = urlsplit(endpoint)
    if request.get("protocol") != url.scheme or request.get("host", "").lower() != url.netloc.lower():
        return False
    base = url.path.strip("/")
    path = request.get("path")
    return not base or path is None or path.strip("/") == base or path.strip("/").startswith(base + "/")


def answer(action: str, request: dict[str, str], endpoint: str, username: str) -> str:
    """What the helper prints for `action` (and the side effect of store/erase)."""
    if not matches(endpoint, request):
        return ""
    if action == "get":
        token = get_token(endpoint)
        return f"username={request.get('username') or username}\npassword={token}\n" if token else ""
    password = request.get("password")
    if action == "store" and password and password != get_token(endpoint):
        save_token(password)
    elif action == "erase":
        stored = read_token(token_path())
        if stored and password in (None, stored):
            delete_token()
    return ""


# -- registration in the global git config ------------------------------------------------------------


def helper_command(endpoint: str, username: str) -> str:
    """The `!`-form helper line for `endpoint` (this Python; no PATH needed)."""
    args = [sys.executable, "-m", "haven.cli", "auth", "git-credential", "--endpoint", endpoint, "--username", username]
    return "!" + shlex.join(args)


def _git_config(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "config", "--global", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def register(endpoint: str, username: str) -> bool:
    """Make Haven git's only credential helper for `endpoint`. False if git is missing or refuses."""
    key = f"credential.{endpoint}.helper"
    _git_config("--unset-all", key)
    first = _git_config("--add", key, "")
    second = _git_config("--add", key, helper_command(endpoint, username))
    return bool(first and second and first.returncode == 0 and second.returncode == 0)


def unregister(endpoint: str) -> bool:
    """Remove what `register` wrote for `endpoint`. True if there was something to remove."""
    key = f"credential.{endpoint}.helper"
    current = _git_config("--get-all", key)
    if current is None or current.returncode != 0:
        return False
    _git_config("--unset-all", key)
    return True


def reject_elsewhere(endpoint: str) -> None:
    """Ask git's other helpers to forget what they hold for `endpoint` (copies older Havens stored there)."""
    url = urlsplit(endpoint)
    description = f"protocol={url.scheme}\nhost={url.netloc}\n\n"
    try:
        subprocess.run(["git", "credential", "reject"], input=description, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
