"""Issue 12's attacks replayed against a real hub, with `/api/health` timed while each runs: it must
answer within 200 ms during every one (H1's validate-yaml and preupload attacks are in
test_hardening_http.py). Each attack also ends quickly, and the hub keeps serving afterwards."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable

import httpx
import pytest
from huggingface_hub import HfApi

from fixtures.server import health_during, unique_name

HEALTH_BUDGET = 0.2


@pytest.fixture(scope="module")
def attacker(hub_server):
    name = unique_name("attacker")
    token = hub_server.create_user(name)
    return hub_server.url, token, HfApi(endpoint=hub_server.url, token=token), name


def _timed(attack: Callable[[], None]) -> tuple[Callable[[], None], list[float]]:
    """`attack` wrapped to record how long it took (seconds) in the returned list."""
    elapsed: list[float] = []

    def run():
        start = time.perf_counter()
        try:
            attack()
        finally:
            elapsed.append(time.perf_counter() - start)

    return run, elapsed


def test_h2_yaml_alias_bomb_in_a_card(attacker):
    """A 459-byte card whose aliases expand ten-fold over 7 levels (10**7 values) froze the
    indexer for 11.6 s and stored 147 MB. Now it is refused at once and the loop stays free."""
    url, _, api, name = attacker
    repo_id = api.create_repo(f"{name}/bomb").repo_id
    lines = ["a: &a [" + ", ".join(["x"] * 10) + "]"]
    for prev, cur in zip("abcdef", "bcdefg"):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    card = "---\n" + "\n".join(lines) + "\n---\n# bomb\n"
    assert len(card) < 600

    def attack():
        with pytest.raises(Exception, match="(?i)yaml|metadata|alias"):
            api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id)

    run, elapsed = _timed(attack)
    times = health_during(url, run)
    assert max(times) < HEALTH_BUDGET, times
    assert elapsed and elapsed[0] < 5, elapsed
    assert "README.md" not in api.list_repo_files(repo_id)
    assert len(httpx.get(f"{url}/api/models", params={"author": name, "cardData": "true"}).content) < 10_000


def test_h3_backtracking_gitattributes_pattern(attacker):
    """`*a*a*a*a*a*a*a*a*a*a*a*a*b` against a 34-character path took 16 s per match, on the loop."""
    url, token, api, name = attacker
    repo_id = api.create_repo(f"{name}/globs").repo_id
    attrs = "*a*a*a*a*a*a*a*a*a*a*a*a*b filter=lfs diff=lfs merge=lfs -text\n"
    api.upload_file(path_or_fileobj=attrs.encode(), path_in_repo=".gitattributes", repo_id=repo_id)
    files = [{"path": "a" * 33 + str(i % 10), "sample": "", "size": 5} for i in range(200)]

    def attack():
        r = httpx.post(
            f"{url}/api/models/{repo_id}/preupload/main", json={"files": files},
            headers={"authorization": f"Bearer {token}"}, timeout=120,
        )
        assert r.status_code == 200, r.text

    run, elapsed = _timed(attack)
    times = health_during(url, run)
    assert max(times) < HEALTH_BUDGET, times
    assert elapsed and elapsed[0] < 5, elapsed


def _big_header_safetensors(header_bytes: int) -> bytes:
    header = {"__metadata__": {"pad": "x" * header_bytes}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0\0\0\0"


def test_m1_large_safetensors_header_referenced_three_times(attacker, tmp_path):
    """An LFS object with an 87 MB header under three paths made every later commit take 17.9 s.
    Headers are read once per object (cached by content) and at most 10 MB of one is read."""
    url, _, api, name = attacker
    repo_id = api.create_repo(f"{name}/headers").repo_id
    from huggingface_hub import CommitOperationAdd

    big = tmp_path / "big.safetensors"
    big.write_bytes(_big_header_safetensors(9 << 20))  # under the 10 MB bound: read, once
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(_big_header_safetensors(20 << 20))  # over it: indexed as unreadable, not read

    def first():
        ops = [CommitOperationAdd(f"m{i}.safetensors", str(big)) for i in range(3)]
        ops.append(CommitOperationAdd("huge.safetensors", str(huge)))
        api.create_commit(repo_id, ops, commit_message="three paths, one big header")

    run, elapsed = _timed(first)
    times = health_during(url, run)
    assert max(times) < HEALTH_BUDGET, times

    def later():
        api.upload_file(path_or_fileobj=b"hello", path_in_repo="notes.txt", repo_id=repo_id)

    run, later_elapsed = _timed(later)
    times = health_during(url, run)
    assert max(times) < HEALTH_BUDGET, times
    assert later_elapsed and later_elapsed[0] < 3, later_elapsed
    info = api.model_info(repo_id)
    assert {"m0.safetensors", "m1.safetensors", "m2.safetensors", "huge.safetensors", "notes.txt"} <= {
        s.rfilename for s in info.siblings
    }
