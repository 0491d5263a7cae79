"""The hub's rules for names written into a repository: one module, used by the commit API
(`storage.paths`) and by the push hook (`pre_receive.py`, which imports it by file name).

Standard library only, because the push hook runs it outside the package.

A path component (a file or folder name) is refused when it is:
- empty, "." or "..";
- longer than MAX_COMPONENT_BYTES (255) bytes of UTF-8 (the limit of common file systems);
- holding a backslash or a control character (Unicode category Cc: NUL, tab, newline, CR,
  the other C0 codes, DEL and the C1 codes U+0080-U+009F);
- one of git's aliases of ".git", the rules of git's own fsck (`hasDotgit`):
  ".git" in any case; ".git" with HFS+ ignorable code points anywhere in it (U+200C-U+200F,
  U+202A-U+202E, U+206A-U+206F, U+FEFF: ".g\\u200cit"); the NTFS forms, ".git" or its 8.3 short
  name "git~1" followed only by dots and spaces, or by ":" (".git. .", "GIT~1",
  ".git::$INDEX_ALLOCATION").

A path has at most MAX_PATH_DEPTH (64) components and MAX_PATH_BYTES (4096) bytes (git's
PATH_MAX). A short branch or tag name has at most MAX_REF_BYTES (250) bytes, so that git can
write it as a file through "<name>.lock" within the 255-byte file names of common file systems,
and no control character; the rest of `git check-ref-format` is checked by the callers (pygit2
in the API, git itself on push).
"""

from __future__ import annotations

import unicodedata

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_PATH_DEPTH = 64
MAX_REF_BYTES = 250  # + len(".lock") = 255

# Code points HFS+ ignores when comparing names (git: utf8.c, next_hfs_char).
HFS_IGNORABLE = frozenset(
    "\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e"
    "\u206a\u206b\u206c\u206d\u206e\u206f"
    "\ufeff"
)


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (C0, DEL or C1)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _ascii_lower(text: str) -> str:
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


def is_hfs_dotgit(name: str) -> bool:
    """".git" as HFS+ sees it: ignorable code points dropped, ASCII letters in any case."""
    visible = "".join(ch for ch in name if ch not in HFS_IGNORABLE)
    return visible.isascii() and visible.lower() == ".git"


def is_ntfs_dotgit(name: str) -> bool:
    """".git" as NTFS sees it: ".git" or "git~1", then only dots and spaces, or a ":" stream."""
    lowered = _ascii_lower(name)
    if lowered.startswith(".git"):
        rest = name[4:]
    elif lowered.startswith("git~1"):
        rest = name[5:]
    else:
        return False
    for ch in rest:
        if ch == ":":
            return True
        if ch not in ". ":
            return False
    return True


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") from JSON
        return True
    return False


def component_error(name: str) -> str | None:
    """Why `name` cannot be a file or folder name in a hub repository, or None if it can."""
    if _not_utf8(name):
        return "the name is not valid Unicode (lone surrogate)"
    if name in ("", ".", ".."):
        return "empty, '.' and '..' names are not allowed; paths must stay inside the repository"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
        return f"a file or folder name is longer than {MAX_COMPONENT_BYTES} bytes"
    if "\\" in name:
        return "use '/' as separator, never '\\'"
    if has_control(name):
        return "control characters (NUL, tab, newline, DEL, U+0080-U+009F ...) are not allowed"
    if is_hfs_dotgit(name) or is_ntfs_dotgit(name):
        return f"{name!r} is '.git' to some file systems, which git reserves"
    return None


def path_error(path: str) -> str | None:
    """Why `path` ("a/b/c.txt", no leading "./") cannot be a file path in a hub repository."""
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        return f"the path is {size} bytes long, at most {MAX_PATH_BYTES} are allowed"
    parts = path.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        return f"the path is {len(parts)} folders deep, at most {MAX_PATH_DEPTH} components are allowed"
    for part in parts:
        error = component_error(part)
        if error:
            return error
    return None


def ref_name_error(name: str) -> str | None:
    """Why `name` cannot be a short branch or tag name (length and characters only)."""
    if not name:
        return "the name is empty"
    if _not_utf8(name):
        return "the name is not valid Unicode (lone surrogate)"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_REF_BYTES:
        return f"the name is longer than {MAX_REF_BYTES} bytes"
    if has_control(name):
        return "control characters (NUL, tab, newline, DEL, U+0080-U+009F ...) are not allowed"
    return None
