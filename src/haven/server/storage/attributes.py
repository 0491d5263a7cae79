"""`.gitattributes` handling: the Hub's default LFS patterns, matching a path against patterns, and
the line to append so that an LFS path is tracked (so `git clone` with git-lfs smudges it)."""

from __future__ import annotations

import re
from functools import lru_cache

LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"

# Extensions of binary formats that models and datasets ship; same spirit as the public Hub's.
_DEFAULT_PATTERNS = [
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib",
    "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet",
    "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*",
    "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
]
DEFAULT_GITATTRIBUTES = "".join(f"{p} {LFS_ATTRS}\n" for p in _DEFAULT_PATTERNS).encode()


@lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern:
    """Translate a gitattributes (wildmatch) pattern into a regex over the full path."""
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("[[:space:]]", i):
            out.append(r"\s")
            i += 11
        elif pattern[i] == "*":
            out.append(".*" if pattern.startswith("**", i) else "[^/]*")
            i += 2 if pattern.startswith("**", i) else 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif pattern[i] == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(r"\[")
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(prefix + "".join(out) + r"\Z", re.DOTALL)


def _unquote(pattern: str) -> str:
    if len(pattern) >= 2 and pattern[0] == pattern[-1] == '"':
        return pattern[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return pattern


def is_lfs_tracked(gitattributes: str, path: str) -> bool:
    """Whether the last line of `gitattributes` that sets `filter` for `path` sets `filter=lfs`."""
    tracked = False
    for line in gitattributes.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith('"'):
            end = line.find('"', 1)
            while end > 0 and line[end - 1] == "\\":
                end = line.find('"', end + 1)
            if end < 0:
                continue
            pattern, attrs = _unquote(line[: end + 1]), line[end + 1 :].split()
        else:
            pattern, *attrs = line.split()
        if pattern.startswith("!"):
            continue  # negative patterns are forbidden in gitattributes
        filter_value = None
        for attr in attrs:
            if attr.startswith("filter="):
                filter_value = attr[7:]
            elif attr in ("-filter", "!filter"):
                filter_value = ""
        if filter_value is None:
            continue
        try:
            if _pattern_regex(pattern).match(path):
                tracked = filter_value == "lfs"
        except re.error:
            continue
    return tracked


def escape_pattern(path: str) -> str:
    """A gitattributes pattern matching exactly `path` (anchored at the root)."""
    escaped = re.sub(r"([*?\[\]\\!#\"])", r"\\\1", path).replace(" ", "[[:space:]]")
    return escaped if "/" in path else "/" + escaped


def with_lfs_paths(gitattributes: bytes, paths: list[str]) -> bytes:
    """`gitattributes` with a line appended for each path in `paths` not already LFS-tracked."""
    text = gitattributes.decode("utf-8", "replace")
    missing = [p for p in paths if not is_lfs_tracked(text, p)]
    if not missing:
        return gitattributes
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{escape_pattern(p)} {LFS_ATTRS}\n" for p in dict.fromkeys(missing))
    return text.encode()
