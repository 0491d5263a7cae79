"""Review R1: a local put that finds its key published by another put while it streamed keeps the
first bytes (the interface: an existing key is a no-op). A xorb key may hold two encodings of the
same chunks; replacing the first would leave the database's chunk index describing other bytes."""

from __future__ import annotations

from pathlib import Path

from fixtures.server import temp_files
from haven.server.storage.blobs import LocalBlobStore


def test_a_put_that_loses_the_race_keeps_the_first_bytes(tmp_path: Path):
    store = LocalBlobStore(tmp_path)

    def slow_second():
        yield b"second upload, "
        assert store.put("xet/xorbs/abcd", [b"first"]) == 5  # the other put publishes meanwhile
        yield b"another encoding"

    assert store.put("xet/xorbs/abcd", slow_second()) == 5
    assert b"".join(store.read("xet/xorbs/abcd")) == b"first"
    assert temp_files(tmp_path) == []  # the loser's temporary file is gone


def test_a_put_publishes_and_leaves_no_temporary_file(tmp_path: Path):
    store = LocalBlobStore(tmp_path)
    assert store.put("lfs/0123abcd", [b"abc", b"def"]) == 6
    assert b"".join(store.read("lfs/0123abcd")) == b"abcdef"
    assert store.path("lfs/0123abcd").stat().st_mode & 0o777 == 0o444
    assert temp_files(tmp_path) == []
