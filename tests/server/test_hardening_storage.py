"""Issue 12, storage: `.gitattributes` matching in linear time (agreeing with `git check-attr`),
crash-safe repository create/delete/move (a process killed mid-way leaves the repo or nothing),
and bounds on LFS objects (maximum size, interrupted uploads swept at start)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from haven.server.storage import attributes

# -- H3: .gitattributes ---------------------------------------------------------------------------

PATTERNS = [
    "*.bin", "*", "**", "?", "a?c", "[abc]*", "[!abc]*", "[^a]x", "[a-c]*.txt", "[]a]*", "[a-]*",
    "[[:digit:]]*", "[[:alpha:][:digit:]]x", "[[:bogus:]]x", "[abc", "[[:alpha:]", "x\\*y", "x\\",
    "a/b", "/top.txt", "dir/**", "**/x.txt", "a/**/b.txt", "a/**b", "dir/", "*a*a*a*a*a*a*a*a*a*a*a*a*b",
    "d*/*.txt", "*/*", "?.bin", "??.bin", "é*", "my[[:space:]]file", "**/**/x.txt", "a**", "***.txt",
    "*[xy]*[xy]*", "[z-a]*", "[\\]]*", "a/*/b.txt", "/*", "/a/**", "**/d/**", "*.BIN",
]
PATHS = [
    "x.bin", "a/x.bin", "abc", "a", "b", "abc.txt", "d/abc.txt", "dir/x", "dir/sub/x", "dir", "x.txt",
    "a/x.txt", "a/b/x.txt", "a/b.txt", "a/q/b.txt", "a/q/r/b.txt", "a/xb", "a/b", "top.txt", "sub/top.txt",
    "1abc", "]ab", "-x", "x*y", "xzy", "é.bin", "éé.bin", "my file", "a" * 33 + "b", "a" * 34, "dd/x.txt",
    "d/x.txt", "dx/y/z.txt", "x/d/y", "X.BIN", "yxy", "\\x",
]


def git_check_attr(tmp_path: Path, gitattributes: bytes, paths: list[str]) -> dict[str, str]:
    """`git check-attr filter` for each path under a root `.gitattributes` (git is the reference)."""
    work = tmp_path / "attr"
    if not (work / ".git").exists():
        subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / ".gitattributes").write_bytes(gitattributes)
    out = subprocess.run(["git", "-C", str(work), "check-attr", "-z", "filter", "--", *paths],
                         capture_output=True, check=True).stdout.decode().split("\0")
    return {out[i]: out[i + 2] for i in range(0, len(out) - 2, 3)}


def test_each_pattern_agrees_with_git_check_attr(tmp_path: Path):
    mismatches = []
    for pattern in PATTERNS:
        text = f"{pattern} filter=lfs\n"
        said = git_check_attr(tmp_path, text.encode(), PATHS)
        for path in PATHS:
            if attributes.is_lfs_tracked(text, path) != (said[path] == "lfs"):
                mismatches.append((pattern, path, said[path]))
    assert mismatches == []


def test_last_matching_line_wins_as_in_git(tmp_path: Path):
    text = ("*.bin filter=lfs\nsub/*.bin -filter\nsub/keep.bin filter=lfs\n*.txt filter=lfs\nx.txt filter\n"
            "a.txt !filter\n[attr]bin -diff\n" + "y.bin" + " " * attributes.MAX_LINE_BYTES + "-filter\n")
    paths = ["x.bin", "sub/x.bin", "sub/keep.bin", "x.txt", "a.txt", "b.txt", "y.bin"]
    said = git_check_attr(tmp_path, text.encode(), paths)
    assert {p: attributes.is_lfs_tracked(text, p) for p in paths} == {p: said[p] == "lfs" for p in paths}
    assert said["y.bin"] == "lfs"  # git ignores the over-long line, and so do we


@pytest.mark.parametrize(
    "pattern, path",
    [
        ("*a" * 12 + "*b", "a" * 34),  # 16 s with the backtracking regex
        ("*a" * 500 + "*b", "a" * 250),
        ("*?" * 600, "a" * 250 + "/" + "b" * 250),
        ("**/a" * 400 + "/**/b", "/".join(["a"] * 63) + "/c"),
        ("*[ab]" * 300 + "*c", "ab" * 120),
    ],
    ids=["issue", "stars", "questions", "globstars", "brackets"],
)
def test_pathological_patterns_match_in_linear_time(tmp_path: Path, pattern: str, path: str):
    text = f"{pattern} filter=lfs\n"
    start = time.perf_counter()
    ours = attributes.is_lfs_tracked(text, path)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05, f"{elapsed:.3f} s"
    assert ours == (git_check_attr(tmp_path, text.encode(), [path])[path] == "lfs")


def test_too_many_filter_lines_are_refused_with_400():
    text = "".join(f"*.e{i} filter=lfs\n" for i in range(attributes.MAX_FILTER_LINES + 1))
    with pytest.raises(attributes.GitattributesError) as err:
        attributes.is_lfs_tracked(text, "x.bin")
    assert err.value.status == 400 and "at most" in err.value.message
    assert attributes.is_lfs_tracked(text.split("\n", 1)[1], "x.e1")  # one line less is fine
