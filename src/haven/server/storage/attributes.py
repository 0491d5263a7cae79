"""`.gitattributes` handling: the Hub's default LFS patterns, matching a path against patterns, and
the line to append so that an LFS path is tracked (so `git clone` with git-lfs smudges it)."""

from __future__ import annotations

import re
from functools import lru_cache

from .errors import StorageError

LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"

# Extensions of binary formats that models and datasets ship; same spirit as the public Hub's.
_DEFAULT_PATTERNS = [
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib",
    "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet",
    "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*",
    "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
]
DEFAULT_GITATTRIBUTES = "".join(f"{p} {LFS_ATTRS}\n" for p in _DEFAULT_PATTERNS).encode()


MAX_LINE_BYTES = 2048  # git ignores longer lines (attr.c); so does this module, to agree with it
MAX_FILTER_LINES = 1000  # lines that set `filter`; more is refused (GitattributesError)

# Matching follows git's wildmatch on UTF-8 bytes, without backtracking: a pattern is split at
# "/" into segments, each segment at "*" into chunks of fixed width ("?", "[...]", literal bytes),
# and chunks are placed leftmost-first, which is exact for fixed-width chunks between stars. A
# chunk is found with a regular expression holding no quantifier, so matching a path costs at
# most (path length x pattern length) steps in the regex engine, however many stars there are.

_CLASSES = {
    b"alnum": bytes(c for c in range(128) if chr(c).isalnum()),
    b"alpha": bytes(c for c in range(128) if chr(c).isalpha()),
    b"blank": b" \t",
    b"cntrl": bytes([*range(32), 127]),
    b"digit": b"0123456789",
    b"graph": bytes(range(33, 127)),
    b"lower": bytes(range(97, 123)),
    b"print": bytes(range(32, 127)),
    b"punct": bytes(c for c in range(33, 127) if not chr(c).isalnum()),
    b"space": b" \t\n\v\f\r",
    b"upper": bytes(range(65, 91)),
    b"xdigit": b"0123456789abcdefABCDEF",
}


class GitattributesError(StorageError):
    """A `.gitattributes` too large to evaluate within the hub's bounds (400)."""


def _bracket(pattern: bytes, i: int) -> tuple[bytes, int] | None:
    """The regex class for the bracket expression at `pattern[i] == "["` and the index after it;
    None if git would abort the match (no closing "]", an unknown [:class:])."""
    j, n = i + 1, len(pattern)
    negate = j < n and pattern[j] in b"!^"
    j += negate
    members: set[int] = set()
    prev, first = None, True
    while True:
        if j >= n:
            return None
        c = pattern[j]
        if c == 0x5D and not first:  # "]"
            j += 1
            break
        first = False
        if c == 0x5C:  # backslash: the next byte literally
            j += 1
            if j >= n:
                return None
            c = pattern[j]
        elif c == 0x2D and prev is not None and j + 1 < n and pattern[j + 1] != 0x5D:  # a range
            j += 1
            hi = pattern[j]
            if hi == 0x5C:
                j += 1
                if j >= n:
                    return None
                hi = pattern[j]
            members.update(range(prev, hi + 1))
            prev, j = None, j + 1
            continue
        elif c == 0x5B and j + 1 < n and pattern[j + 1] == 0x3A:  # "[:"
            close = pattern.find(b"]", j + 2)
            if close < 0:
                return None
            if pattern[close - 1] == 0x3A and close - 1 >= j + 2:
                name = pattern[j + 2 : close - 1]
                if name not in _CLASSES:
                    return None
                members.update(_CLASSES[name])
                prev, j = None, close + 1
                continue
        members.add(c)
        prev, j = c, j + 1
    chosen = set(range(256)) - members if negate else members
    chosen.discard(0x2F)  # never "/"
    if not chosen:
        return b"(?!)", j
    return b"[" + b"".join(re.escape(bytes([m])) for m in sorted(chosen)) + b"]", j


class _Segment:
    """One "/"-free glob ("*.bin", "w?[0-9]*"), matched against one path segment (bytes)."""

    def __init__(self, pattern: bytes):
        self.never = False
        chunks: list[list[bytes]] = [[]]
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i]
            if c == 0x2A:  # "*" (runs of stars are one star inside a segment)
                while i < n and pattern[i] == 0x2A:
                    i += 1
                chunks.append([])
                continue
            if c == 0x3F:  # "?"
                atom, i = b".", i + 1
            elif c == 0x5C:  # backslash
                if i + 1 >= n:
                    self.never = True
                    return
                atom, i = re.escape(pattern[i + 1 : i + 2]), i + 2
            elif c == 0x5B:  # "["
                found = _bracket(pattern, i)
                if found is None:
                    self.never = True
                    return
                atom, i = found
            else:
                atom, i = re.escape(bytes([c])), i + 1
            chunks[-1].append(atom)
        self.chunks = [(re.compile(b"".join(atoms), re.DOTALL), len(atoms)) for atoms in chunks]

    def match(self, text: bytes) -> bool:
        if self.never:
            return False
        chunks = self.chunks
        if len(chunks) == 1:
            regex, width = chunks[0]
            return len(text) == width and regex.match(text) is not None
        (head, head_width), (tail, tail_width) = chunks[0], chunks[-1]
        end = len(text) - tail_width
        if end < head_width or not head.match(text) or not tail.match(text, end):
            return False
        pos = head_width
        for regex, _width in chunks[1:-1]:
            found = regex.search(text, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True


_ANY = _Segment(b"?*")  # one whole segment, whatever it is


class _Pattern:
    """A gitattributes pattern: a basename glob (no "/"), or a path glob anchored at the root
    whose "**" segments match any number of folders (a trailing "/**" at least one entry)."""

    def __init__(self, pattern: str):
        raw = pattern.encode()
        self.never = raw.endswith(b"/")  # a folder pattern never matches a file
        self.basename = b"/" not in raw
        if self.basename:
            self.glob = _Segment(raw)
            return
        parts: list[_Segment | None] = [None if seg == b"**" else _Segment(seg) for seg in raw.lstrip(b"/").split(b"/")]
        if parts[-1] is None:
            parts[-1:] = [_ANY, None]
        self.runs: list[list[_Segment]] = [[]]  # fixed-length runs of segment globs between "**"
        for part in parts:
            if part is None:
                self.runs.append([])
            else:
                self.runs[-1].append(part)

    def match(self, path: bytes) -> bool:
        if self.never:
            return False
        if self.basename:
            return self.glob.match(path.rsplit(b"/", 1)[-1])
        segments = path.split(b"/")
        runs = self.runs

        def fits(run: list[_Segment], at: int) -> bool:
            return all(glob.match(segments[at + k]) for k, glob in enumerate(run))

        if len(runs) == 1:
            return len(segments) == len(runs[0]) and fits(runs[0], 0)
        head, tail = runs[0], runs[-1]
        end = len(segments) - len(tail)
        if end < len(head) or not fits(head, 0) or not fits(tail, end):
            return False
        pos = len(head)
        for run in runs[1:-1]:
            at = next((k for k in range(pos, end - len(run) + 1) if fits(run, k)), None)
            if at is None:
                return False
            pos = at + len(run)
        return True


def _unquote(pattern: str) -> str:
    if len(pattern) >= 2 and pattern[0] == pattern[-1] == '"':
        return pattern[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return pattern


@lru_cache(maxsize=64)
def _filter_rules(gitattributes: str) -> tuple[tuple[_Pattern, str], ...]:
    """(pattern, filter value) of each line that mentions `filter`, in file order ("" when the
    line unsets it or sets it without a value)."""
    rules = []
    for line in gitattributes.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[attr]")) or len(line.encode()) > MAX_LINE_BYTES:
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
        value = None
        for attr in attrs:
            if attr.startswith("filter="):
                value = attr[7:]
            elif attr in ("filter", "-filter", "!filter"):
                value = ""
        if value is not None:
            rules.append((_Pattern(pattern), value))
    if len(rules) > MAX_FILTER_LINES:
        raise GitattributesError(
            f".gitattributes has {len(rules)} lines that set `filter`; the hub evaluates at most "
            f"{MAX_FILTER_LINES}: merge them into fewer patterns (for example '*.bin filter=lfs ...')."
        )
    return tuple(rules)


def is_lfs_tracked(gitattributes: str, path: str) -> bool:
    """Whether the last line of `gitattributes` whose pattern matches `path` and that mentions
    `filter` sets `filter=lfs`, as `git check-attr filter` says. Raises GitattributesError for a
    file over the bounds (MAX_FILTER_LINES); lines over MAX_LINE_BYTES are ignored, as git does."""
    raw = path.encode("utf-8", "surrogateescape")
    for pattern, value in reversed(_filter_rules(gitattributes)):
        if pattern.match(raw):
            return value == "lfs"
    return False


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
