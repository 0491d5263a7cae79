"""git pre-receive hook: the push policy of a Haven hub.

Refuses (before any ref moves):
- a blob over HAVEN_MAX_GIT_BLOB bytes (default 10 MB) that is not an LFS pointer: such files
  must be tracked with git-lfs, as on the public Hub;
- updates of refs other than branches (refs/heads/*) and tags (refs/tags/*);
- deleting the default branch (HAVEN_DEFAULT_BRANCH, default "main").

Run by `git receive-pack` (under `git http-backend`) with the pushed objects still in quarantine;
stdin has one "<old> <new> <ref>" line per updated ref. Uses only the standard library and `git`,
and is run by path (not imported), so keep it self-contained.
"""

import os
import subprocess
import sys

ZERO = "0" * 40
ALLOWED_REFS = ("refs/heads/", "refs/tags/")


def human(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def oversized_blobs(tips: list[str], limit: int) -> list[tuple[str, int]]:
    """(path, size) of every new blob larger than `limit` reachable from `tips`."""
    listing = subprocess.run(
        ["git", "rev-list", "--objects", *tips, "--not", "--all"],
        capture_output=True, text=True, check=True,
    ).stdout
    paths: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, path = line.partition(" ")
        if path:  # commits have no path; trees and blobs do
            paths.setdefault(sha, path)
    if not paths:
        return []
    checked = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)"],
        input="\n".join(paths) + "\n", capture_output=True, text=True, check=True,
    ).stdout
    found = []
    for line in checked.splitlines():
        sha, kind, size = line.split()
        if kind == "blob" and int(size) > limit:
            found.append((paths[sha], int(size)))
    return sorted(found)


def main() -> int:
    limit = int(os.environ.get("HAVEN_MAX_GIT_BLOB", 10 * 1024 * 1024))
    default = os.environ.get("HAVEN_DEFAULT_BRANCH", "main")
    updates = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
    errors = []
    tips = []
    for _old, new, ref in updates:
        if not ref.startswith(ALLOWED_REFS):
            errors.append(f"refusing to update {ref}: only branches (refs/heads/*) and tags can be pushed.")
        if new != ZERO:
            tips.append(new)
        elif ref == f"refs/heads/{default}":
            errors.append(f"refusing to delete the default branch {default!r}.")
    big = oversized_blobs(tips, limit) if tips else []
    for path, size in big:
        errors.append(f"{path} is {human(size)}; files larger than {human(limit)} must be stored with git-lfs.")
    if not errors:
        return 0
    out = ["", "Push rejected by the hub:"] + [f"  - {e}" for e in errors]
    if big:
        names = ",".join(p for p, _ in big)
        out += [
            "",
            "Track large files with git-lfs. To move files of commits you already made into LFS:",
            "  git lfs install",
            f'  git lfs migrate import --include="{names}"',
            "  git push",
            f'For new files, run `git lfs track "{big[0][0]}"` before `git add`.',
        ]
    sys.stderr.write("\n".join(out) + "\n\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
