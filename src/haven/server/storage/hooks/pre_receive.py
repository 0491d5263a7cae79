"""git pre-receive hook: the push policy of a Haven hub.

Refuses (before any ref moves):
- a blob over HAVEN_MAX_GIT_BLOB bytes (default 10 MB) that is not an LFS pointer: such files
  must be tracked with git-lfs, as on the public Hub;
- an LFS pointer whose object the hub does not have with that size: the hub answers through the
  Unix socket named by HAVEN_LFS_CHECK (see `githttp.LfsCheck`; skipped when unset), from the
  store it serves (its blob store, local or S3, and files uploaded through Xet). git-lfs uploads
  objects before the push, so this only catches pushes made without git-lfs or with its upload
  skipped. A push is refused too when the hub does not answer;
- a file or folder name the commit API would refuse, by the same rules (`gitnames.py`: git's
  `.git` aliases, backslash, control characters, a segment over 255 bytes, a name that is not
  UTF-8), a path over 4096 bytes or 64 components at a pushed tip, a symlink that leads outside
  the repository or into `.git` once every link on its way is followed (`b -> .` then
  `a -> b/..` escapes), and submodules (gitlinks): clones of a hub repository must not write
  outside their folder, and the hub serves plain files;
- updates of refs other than branches (refs/heads/*) and tags (refs/tags/*), and branch or tag
  names over 250 bytes or with control characters;
- deleting the default branch (HAVEN_DEFAULT_BRANCH, default "main");
- a new README.md at a branch tip whose card metadata (YAML front matter) is invalid, with the
  message the commit API gives for the same file (`card_metadata.card_error`).

Run by `git receive-pack` (under `git http-backend`) with the pushed objects still in quarantine;
stdin has one "<old> <new> <ref>" line per updated ref. Run by path (not imported) with the
server's interpreter: it uses the standard library, `git`, and its sibling `card_metadata.py`
(standard library and PyYAML) and `gitnames.py` (standard library), shared with the commit API.
"""

import os
import re
import socket
import subprocess
import sys

from card_metadata import CARD_PATH, card_error
from gitnames import component_error, is_hfs_dotgit, is_ntfs_dotgit, path_error, ref_name_error

ZERO = "0" * 40
ALLOWED_REFS = ("refs/heads/", "refs/tags/")
POINTER = re.compile(rb"^version https://git-lfs\S*\noid sha256:([0-9a-f]{64})\nsize (\d+)\n", re.M)
MAX_POINTER = 1024
MAX_LINK_HOPS = 40  # links followed while resolving one path, as Linux's limit
CHECK_TIMEOUT = 600  # seconds the hub may take to look up a push's LFS objects


def human(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def git(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], input=data, capture_output=True, check=True).stdout


def new_objects(tips: list[str]) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
    """(sha, path, size) of every blob and (sha, path) of every tree reachable from `tips` and
    from no existing ref. Every name a push adds or renames sits in one of those new trees."""
    paths: dict[str, str] = {}
    for line in git("rev-list", "--objects", *tips, "--not", "--all").decode("utf-8", "replace").splitlines():
        sha, sep, path = line.partition(" ")
        if sep:  # commits have no path; trees and blobs do (the root tree an empty one)
            paths.setdefault(sha, path)
    if not paths:
        return [], []
    checked = git("cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)",
                  data=("\n".join(paths) + "\n").encode()).decode()
    blobs, trees = [], []
    for line in checked.splitlines():
        sha, kind, size = line.split()
        if kind == "blob":
            blobs.append((sha, paths[sha], int(size)))
        elif kind == "tree":
            trees.append((sha, paths[sha]))
    return blobs, trees


def read_objects(shas: list[str]) -> list[bytes]:
    """The raw contents of `shas`, in order, through one `git cat-file --batch`."""
    if not shas:
        return []
    out = git("cat-file", "--batch", data=("\n".join(shas) + "\n").encode())
    contents, pos = [], 0
    for _ in shas:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        contents.append(out[header_end + 1 : header_end + 1 + size])
        pos = header_end + 1 + size + 1
    return contents


def tree_entries(raw: bytes, hash_bytes: int) -> list[tuple[str, bytes, str]]:
    """(mode, raw name, sha) of a raw git tree: entries are b"<mode> <name>\\0<binary sha>"."""
    entries, pos = [], 0
    while pos < len(raw):
        space = raw.index(b" ", pos)
        nul = raw.index(b"\0", space)
        sha = raw[nul + 1 : nul + 1 + hash_bytes].hex()
        entries.append((raw[pos:space].decode(), raw[space + 1 : nul], sha))
        pos = nul + 1 + hash_bytes
    return entries


def bad_names(trees: list[tuple[str, str]]) -> tuple[list[str], bool]:
    """Reasons to refuse entries of the new trees (names, submodules), and whether they add a symlink."""
    errors, new_links = [], False
    for (sha, folder), raw in zip(trees, read_objects([sha for sha, _ in trees])):
        for mode, raw_name, _entry_sha in tree_entries(raw, len(sha) // 2):
            name = raw_name.decode("utf-8", "replace")
            path = f"{folder}/{name}" if folder else name
            try:
                error = component_error(raw_name.decode("utf-8"))
            except UnicodeDecodeError:
                error = "the name is not valid UTF-8"
            if error:
                errors.append(f"{path!r} is not a valid file name: {error}.")
            elif mode == "160000":
                errors.append(f"{path} is a submodule; the hub stores plain files only.")
            elif mode == "120000":
                new_links = True
    return errors, new_links


def resolve_link(path: str, links: dict[str, str]) -> list[str] | None:
    """Where the symlink at `path` leads, as path components, following every link on the way;
    None if it leaves the repository, enters `.git`, or loops."""
    hops = 0

    def follow(folder: list[str], target: str) -> list[str] | None:
        nonlocal hops
        if target.startswith("/") or "\\" in target:
            return None
        parts = list(folder)
        for segment in target.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                if not parts:
                    return None
                parts.pop()
                continue
            if is_hfs_dotgit(segment) or is_ntfs_dotgit(segment):
                return None
            parts.append(segment)
            here = "/".join(parts)
            if here in links:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return None
                parts = follow(parts[:-1], links[here])
                if parts is None:
                    return None
        return parts

    return follow(path.split("/")[:-1], links[path])


def tip_errors(tip: str, check_links: bool) -> list[str]:
    """Paths over the length and depth bounds at `tip`, and (with `check_links`) its symlinks
    that lead outside the repository."""
    listed = subprocess.run(["git", "ls-tree", "-r", "-z", "--full-tree", f"{tip}^{{tree}}"], capture_output=True)
    if listed.returncode:  # a tag of a blob or tree: nothing is checked out from it
        return []
    listing = listed.stdout
    errors, links = [], {}
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, _, raw_path = item.partition(b"\t")
        mode, _, sha = meta.decode().split(" ")
        path = raw_path.decode("utf-8", "replace")
        if len(raw_path) > 4096 or path.count("/") >= 64:
            error = path_error(path)
            if error:
                errors.append(f"{path[:200]!r}...: {error}.")
        if check_links and mode == "120000":
            links[path] = sha
    if links:
        targets = read_objects(list(links.values()))
        links = {path: target.decode("utf-8", "replace") for path, target in zip(links, targets)}
        for path, target in links.items():
            if resolve_link(path, links) is None:
                errors.append(f"{path} is a symlink to {target!r}, which leads outside the repository "
                              "(or loops); replace it with the file itself.")
    return errors


def ask_hub(address: str, wanted: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """The (oid, size) pairs of `wanted` the hub does not hold, asked through its socket;
    OSError when it does not answer in full."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(CHECK_TIMEOUT)
        conn.connect(address)
        conn.sendall("".join(f"{oid} {size}\n" for oid, size in wanted).encode())
        conn.shutdown(socket.SHUT_WR)
        reply = bytearray()
        while chunk := conn.recv(1 << 16):
            reply += chunk
    lines = reply.decode("ascii", "replace").splitlines()
    if not lines or lines[-1] != "ok":
        raise OSError("the hub's answer was cut short (see its log)")
    return {(oid, int(size)) for oid, size in (line.split() for line in lines[:-1])}


def missing_lfs_objects(blobs: list[tuple[str, str, int]], address: str) -> list[tuple[str, str]]:
    """(path, oid) of new LFS pointers whose object the hub does not hold (OSError: no answer)."""
    small = [(sha, path) for sha, path, size in blobs if size < MAX_POINTER]
    pointers = []
    for (_, path), content in zip(small, read_objects([sha for sha, _ in small])):
        match = POINTER.match(content)
        if match:
            pointers.append((path, match.group(1).decode(), int(match.group(2))))
    if not pointers:
        return []
    absent = ask_hub(address, sorted({(oid, size) for _, oid, size in pointers}))
    return [(path, oid) for path, oid, size in pointers if (oid, size) in absent]


def card_errors(tips: list[str], new_blobs: set[str]) -> list[str]:
    """Why the README.md at branch `tips` cannot be a card, for READMEs this push adds."""
    errors = []
    for tip in tips:
        found = subprocess.run(["git", "rev-parse", "-q", "--verify", f"{tip}:{CARD_PATH}"],
                               capture_output=True, text=True)
        sha = found.stdout.strip()
        if found.returncode or sha not in new_blobs:
            continue
        error = card_error(read_objects([sha])[0])
        if error and error not in errors:
            errors.append(error)
    return errors


def main() -> int:
    limit = int(os.environ.get("HAVEN_MAX_GIT_BLOB", 10 * 1024 * 1024))
    default = os.environ.get("HAVEN_DEFAULT_BRANCH", "main")
    lfs_check = os.environ.get("HAVEN_LFS_CHECK")
    updates = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
    errors = []
    tips = []
    for _old, new, ref in updates:
        if not ref.startswith(ALLOWED_REFS):
            errors.append(f"refusing to update {ref}: only branches (refs/heads/*) and tags can be pushed.")
        elif new != ZERO and ref_name_error(ref.split("/", 2)[2]):
            errors.append(f"refusing to create {ref[:120]}: {ref_name_error(ref.split('/', 2)[2])}.")
        if new != ZERO:
            tips.append(new)
        elif ref == f"refs/heads/{default}":
            errors.append(f"refusing to delete the default branch {default!r}.")
    blobs, trees = new_objects(tips) if tips else ([], [])
    name_errors, new_links = bad_names(trees)
    errors += name_errors
    for tip in dict.fromkeys(tips):
        errors += [e for e in tip_errors(tip, new_links) if e not in errors]
    branch_tips = [new for _old, new, ref in updates if new != ZERO and ref.startswith("refs/heads/")]
    errors += card_errors(branch_tips, {sha for sha, _, _ in blobs})
    big = sorted((path, size) for _, path, size in blobs if size > limit)
    for path, size in big:
        errors.append(f"{path} is {human(size)}; files larger than {human(limit)} must be stored with git-lfs.")
    missing = []
    if lfs_check:
        try:
            missing = missing_lfs_objects(blobs, lfs_check)
        except (OSError, ValueError) as err:
            errors.append(f"the hub could not check that the LFS objects of this push were uploaded ({err}); "
                          "try again.")
    for path, oid in missing:
        errors.append(f"{path} is an LFS pointer to {oid[:12]}..., but that object was never uploaded.")
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
    if missing:
        out += ["", "Upload the LFS objects first (`git lfs install` enables this on push):",
                "  git lfs push --all origin", "  git push"]
    sys.stderr.write("\n".join(out) + "\n\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
