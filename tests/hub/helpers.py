"""Helpers shared by the hub client tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: str | os.PathLike, skip: tuple[str, ...] = (".cache/", ".gitattributes")) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root (symlinks followed)."""
    out = {}
    root = Path(root)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(rel == s or rel.startswith(s) for s in skip):
            out[rel] = path.read_bytes()
    return out


@contextlib.contextmanager
def reference_pointed_at(url: str, token: str | None, hf_home: Path) -> Iterator[None]:
    """Point `huggingface_hub` (and so `transformers`) at the hub `url`, in this process.

    Both read `HF_ENDPOINT` once, at import, into module constants; these tests used to pay for a
    fresh interpreter importing transformers (30+ s under load) just to set it. Patching the
    constants gives the same requests. If the patch ever misses, the reference would talk to the
    public Hub, which the test machines cannot reach: the test fails, it cannot pass silently.
    """
    from unittest import mock

    from huggingface_hub import constants

    env = {"HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "HF_HOME": str(hf_home)}
    if token:
        env["HF_TOKEN"] = token
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, env))
        if not token:
            os.environ.pop("HF_TOKEN", None)
        for name, value in (
            ("ENDPOINT", url),
            ("HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
            ("HF_HUB_OFFLINE", False),
            ("HF_HUB_DISABLE_XET", True),
            ("HF_HOME", str(hf_home)),
            ("HF_HUB_CACHE", str(hf_home / "hub")),
        ):
            stack.enter_context(mock.patch.object(constants, name, value))
        yield
