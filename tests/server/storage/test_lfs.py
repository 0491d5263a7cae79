"""LfsStore (verified, atomic, streamed) and .gitattributes matching (checked against git itself)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from fixtures.server import temp_files
from haven.server import storage
from haven.server.storage import LfsStore, attributes


def chunks(data: bytes, n: int = 1000):
    for i in range(0, len(data), n):
        yield data[i : i + n]


def test_put_stores_verified_object(tmp_path: Path):
    lfs = LfsStore(tmp_path / "lfs")
    data = os.urandom(123_457)
    oid = hashlib.sha256(data).hexdigest()
    assert not lfs.has(oid)
    lfs.put(oid, len(data), chunks(data))
    assert lfs.path(oid) == tmp_path / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert lfs.path(oid).read_bytes() == data and lfs.has(oid) and lfs.size(oid) == len(data)
    with lfs.open(oid) as f:
        assert f.read() == data
    lfs.put(oid, len(data), iter([]))  # already stored: nothing to read
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("case", ["wrong-hash", "short", "long"])
def test_put_rejects_mismatch_and_stores_nothing(tmp_path: Path, case: str):
    lfs = LfsStore(tmp_path / "lfs")
    data = b"some model weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    body, size = {
        "wrong-hash": (data[:-1] + b"X", len(data)),
        "short": (data[:-10], len(data)),
        "long": (data + b"extra", len(data)),
    }[case]
    with pytest.raises(storage.LfsVerifyError) as err:
        lfs.put(oid, size, chunks(body))
    assert err.value.status == 400
    assert not lfs.has(oid) and not lfs.path(oid).exists()
    assert temp_files(tmp_path) == []  # the temp file is gone too


def test_put_rejects_bad_oid_and_size(tmp_path: Path):
    lfs = LfsStore(tmp_path / "lfs")
    for oid in ("abc", "G" * 64, "A" * 64, "../" + "a" * 61):
        with pytest.raises(storage.LfsVerifyError):
            lfs.put(oid, 1, [b"x"])
    with pytest.raises(storage.LfsVerifyError):
        lfs.put("a" * 64, -1, [])
    with pytest.raises(storage.LfsObjectMissing):
        lfs.size("a" * 64)


def test_put_async(tmp_path: Path):
    lfs = LfsStore(tmp_path / "lfs")
    data = os.urandom(9 << 20)  # crosses the 4 MB write batches
    oid = hashlib.sha256(data).hexdigest()

    async def body(payload: bytes):
        for part in chunks(payload, 65536):
            yield part

    asyncio.run(lfs.put_async(oid, len(data), body(data)))
    assert lfs.path(oid).read_bytes() == data
    other = os.urandom(1000)
    with pytest.raises(storage.LfsVerifyError):
        asyncio.run(lfs.put_async(hashlib.sha256(other).hexdigest(), 1000, body(other[:999] + b"!")))
    assert not lfs.has(hashlib.sha256(other).hexdigest())


def test_pointer_roundtrip_matches_git_lfs_format():
    oid = hashlib.sha256(b"x").hexdigest()
    pointer = storage.format_pointer(oid, 1)
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 1\n".encode()
    assert storage.parse_pointer(pointer) == (oid, 1)
    assert storage.parse_pointer(b"version https://git-lfs.github.com/spec/v1\noid sha256:zz\nsize 1\n") is None
    assert storage.parse_pointer(b"plain text") is None


PATHS = [
    "model.bin", "sub/model.bin", "model.bin.txt", "README.md", "logs/events.out.tfevents.1",
    "saved_model/variables/v.data", "other/saved_model/x", "a.tar.gz", "my file.raw", "dir/my file.raw",
    "x[1].raw", "deep/a/b/c.npy", "data/train.csv", "data/sub/test.csv", "notes.TXT",
]
EXTRA = (
    "/my[[:space:]]file.raw filter=lfs diff=lfs merge=lfs -text\n"
    "x\\[1\\].raw filter=lfs diff=lfs merge=lfs -text\n"
    "data/**/*.csv filter=lfs diff=lfs merge=lfs -text\n"
    "*.TXT filter=lfs\n"
    "data/sub/test.csv -filter\n"
)


def git_says(tmp_path: Path, text: str, paths: list[str]) -> dict[str, bool]:
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / ".gitattributes").write_text(text)
    out = subprocess.run(["git", "-C", str(work), "check-attr", "filter", "--", *paths],
                         capture_output=True, text=True, check=True).stdout
    return {line.rsplit(": filter: ", 1)[0]: line.endswith(": lfs") for line in out.splitlines()}


def test_is_lfs_tracked_agrees_with_git(tmp_path: Path):
    text = attributes.DEFAULT_GITATTRIBUTES.decode() + EXTRA
    expected = git_says(tmp_path, text, PATHS)
    assert {p: attributes.is_lfs_tracked(text, p) for p in PATHS} == expected
    assert expected["model.bin"] and not expected["README.md"]  # the reference sees both kinds


def test_appended_lines_match_exactly_the_path(tmp_path: Path):
    added = ["my file.raw", "weird/[x]*?.dat", "top.raw", "#hash.raw", "!bang.raw"]
    text = attributes.with_lfs_paths(b"", added).decode()
    probes = added + ["sub/top.raw", "weird/xy.dat", "other.raw", "my_file.raw"]
    said = git_says(tmp_path, text, probes)
    assert said == {p: p in added for p in probes}
    # already tracked paths add nothing
    again = attributes.with_lfs_paths(text.encode(), added)
    assert again == text.encode()
    assert attributes.with_lfs_paths(attributes.DEFAULT_GITATTRIBUTES, ["w.safetensors"]) == (
        attributes.DEFAULT_GITATTRIBUTES
    )


def test_interrupted_uploads_leave_no_temp_file(tmp_path: Path):
    """A client that disconnects mid-upload (the body raises), sync or async, with a 4 MB batch
    still being written by the worker: nothing stored, no temp file left in DATA/tmp."""
    lfs = LfsStore(tmp_path / "lfs")
    data = os.urandom(6 << 20)
    oid = hashlib.sha256(data).hexdigest()

    def broken():
        yield from chunks(data[: 5 << 20], 65536)
        raise ConnectionResetError("client went away")

    async def broken_async():
        for part in broken():
            yield part

    with pytest.raises(ConnectionResetError):
        lfs.put(oid, len(data), broken())
    with pytest.raises(ConnectionResetError):
        asyncio.run(lfs.put_async(oid, len(data), broken_async()))
    assert not lfs.has(oid)
    assert temp_files(tmp_path) == []
