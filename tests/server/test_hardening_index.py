"""The indexer and the card validator are bounded, and never fail a request (issue 12: M1, M5, H2).

- A commit whose safetensors header is hostile (4,000-digit integers) lands, is downloadable and
  `model_info` answers 200 without a parameter count (real huggingface_hub client).
- Header facts are cached by content id: an object referenced by three paths is read once, a
  later unrelated commit reads no header, a header over 10 MB is not read at all.
- Card metadata: alias bombs, self-referencing aliases, deep nesting, oversized blocks are refused
  by the one validator (commit API, push hook, indexer), in well under a second; YAML values JSON
  cannot hold (date keys, .nan) are stored as strings instead of breaking the index.

Expected parameter counts come from the safetensors library (`safe_open`), not from Haven.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import time

import httpx
import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download
from safetensors import safe_open
from safetensors.torch import save

from fixtures.server import unique_name
from haven.server import db, storage
from haven.server.api import index
from haven.server.storage.hooks.card_metadata import card_error, parse_front_matter

HUGE = int("9" * 4000)


def _hostile_safetensors() -> bytes:
    raw = json.dumps({"w": {"dtype": "F32", "shape": [HUGE, HUGE], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * 8


def _weights(pad: int = 0, seed: int = 0) -> bytes:
    """A real safetensors file (written by the safetensors library) with a `pad`-byte metadata
    value, which makes its header that large."""
    g = torch.Generator().manual_seed(seed)
    tensors = {"a": torch.randn(4, 3, generator=g), "b": torch.zeros(5, dtype=torch.int64)}
    return save(tensors, metadata={"pad": "x" * pad} if pad else None)


def _reference_counts(blob: bytes, tmp_path) -> dict[str, int]:
    path = tmp_path / f"ref-{hashlib.sha256(blob).hexdigest()[:8]}.safetensors"
    path.write_bytes(blob)
    counts: dict[str, int] = {}
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            sl = f.get_slice(name)
            n = 1
            for d in sl.get_shape():
                n *= d
            counts[sl.get_dtype()] = counts.get(sl.get_dtype(), 0) + n
    return counts


def _bomb(levels: int = 7, width: int = 10) -> str:
    """The issue's README: nested aliases, `levels` deep and `width` wide (10**7 strings)."""
    lines = ["---", "a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join([*lines, "---", "", "a card"]) + "\n"


# -- in-process: the indexer against a real store and database --------------------------------------


class Hub:
    """A data dir with a migrated database, an LFS store and a repo store, and one model repo."""

    def __init__(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'haven.db'}"
        db.upgrade(url)
        self.sessionmaker = db.make_sessionmaker(db.make_engine(url))
        self.lfs = storage.LfsStore(tmp_path / "lfs")
        self.store = storage.RepoStore(tmp_path / "repos", self.lfs)
        self.repo_id = "alice/model"
        self.store.create("model", self.repo_id, author="alice")
        with self.sessionmaker() as session:
            session.add(db.Repo(type="model", namespace="alice", name="model", tags=[]))
            session.commit()

    def lfs_op(self, path: str, data: bytes) -> storage.AddLfsFile:
        oid = hashlib.sha256(data).hexdigest()
        self.lfs.put(oid, len(data), [data])
        return storage.AddLfsFile(path=path, oid=oid, size=len(data))

    def commit(self, *ops) -> None:
        self.store.commit("model", self.repo_id, "main", list(ops), message="c", author="alice")

    def refresh(self) -> db.Repo:
        with self.sessionmaker() as session:
            repo = session.query(db.Repo).one()
            index.refresh(session, self.store, repo)
            session.commit()
            return repo


class Reads:
    """Counts header reads (`index.read_header`) and the bytes read from opened files."""

    def __init__(self, monkeypatch, store):
        self.headers: list[str] = []
        self.bytes = 0
        real_read, real_open = index.read_header, store.open_file

        def read_header(f, size, source, max_header):
            self.headers.append(source)
            return real_read(f, size, source, max_header=max_header)

        def open_file(*args):
            entry, content = real_open(*args)
            f = io.BytesIO(content) if isinstance(content, bytes) else content
            return entry, _Counting(f, self)

        monkeypatch.setattr(index, "read_header", read_header)
        monkeypatch.setattr(store, "open_file", open_file)


class _Counting(io.RawIOBase):
    def __init__(self, f, reads: Reads):
        self.f, self.reads = f, reads

    def read(self, n=-1):
        data = self.f.read(n)
        self.reads.bytes += len(data)
        return data

    def close(self):
        self.f.close()
        super().close()


@pytest.fixture
def hub(tmp_path):
    return Hub(tmp_path)


def test_shared_large_header_read_once_and_never_again(hub, monkeypatch, tmp_path):
    big = _weights(pad=3_000_000)  # a 3 MB header
    hub.commit(*(hub.lfs_op(p, big) for p in ("a.safetensors", "b/a.safetensors", "c/a.safetensors")))
    reads = Reads(monkeypatch, hub.store)
    repo = hub.refresh()
    assert len(reads.headers) == 1
    expected = {k: 3 * v for k, v in _reference_counts(big, tmp_path).items()}
    assert repo.safetensors == {"parameters": expected, "total": sum(expected.values())}

    hub.commit(storage.AddFile(path="notes.txt", content=b"unrelated"))
    reads.headers.clear()
    reads.bytes = 0
    repo = hub.refresh()
    assert repo.sha == hub.store.resolve("model", hub.repo_id, "main")
    assert reads.headers == [] and reads.bytes < 1_000_000
    assert repo.safetensors["total"] == sum(expected.values())


def test_only_new_objects_are_read(hub, monkeypatch, tmp_path):
    first, second = _weights(seed=1), _weights(seed=2)
    hub.commit(hub.lfs_op("one.safetensors", first))
    hub.refresh()
    reads = Reads(monkeypatch, hub.store)
    hub.commit(hub.lfs_op("two.safetensors", second), storage.AddFile(path="small.safetensors", content=first))
    repo = hub.refresh()
    # two.safetensors is new; small.safetensors (kept in git) has new content id too
    assert sorted(reads.headers) == ["small.safetensors", "two.safetensors"]
    counts = _reference_counts(first, tmp_path)
    assert repo.safetensors["total"] == 3 * sum(counts.values())


def test_header_over_the_bound_is_unreadable_and_not_read(hub, monkeypatch):
    blob = _weights(pad=11 * 1024 * 1024)  # an 11 MB header: over the indexer's 10 MB bound
    hub.commit(hub.lfs_op("model.safetensors", blob))
    reads = Reads(monkeypatch, hub.store)
    repo = hub.refresh()
    assert reads.bytes <= 8 + 1024
    assert repo.safetensors is None
    assert "over the limit" in repo.index_errors["model.safetensors"]


def test_hostile_header_indexed_as_unreadable_and_others_not_counted(hub):
    hub.commit(hub.lfs_op("bad.safetensors", _hostile_safetensors()), hub.lfs_op("good.safetensors", _weights()))
    repo = hub.refresh()
    assert repo.safetensors is None  # a partial count would mislead
    assert "bad.safetensors" in repo.index_errors and "good.safetensors" not in repo.index_errors
    json.dumps(repo.index_errors)  # storable and servable


def test_refresh_never_raises(hub, monkeypatch):
    hub.commit(storage.AddFile(path="README.md", content=b"---\nlicense: mit\n---\n"))

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the indexer")

    monkeypatch.setattr(index, "build_tags", broken)
    repo = hub.refresh()
    assert repo.sha == hub.store.resolve("model", hub.repo_id, "main")
    assert "RuntimeError" in repo.index_errors[""]


def test_alias_bomb_in_the_index_is_bounded(hub):
    """A card written before the validator existed (committed straight to storage)."""
    hub.commit(storage.AddFile(path="README.md", content=_bomb().encode()))
    start = time.monotonic()
    repo = hub.refresh()
    assert time.monotonic() - start < 2
    assert repo.card_data is None
    assert "aliases" in repo.index_errors["README.md"]


@pytest.mark.parametrize(
    "yaml_text, stored",
    [
        # YAML's own types JSON cannot hold are kept as their text (dates as ISO dates)
        ("when: 2024-01-31\n2024-02-01: dated key", {"when": "2024-01-31", "2024-02-01": "dated key"}),
        ("score: .nan\nbig: .inf", {"score": "nan", "big": "inf"}),
    ],
    ids=["date-key", "nan"],
)
def test_yaml_json_cannot_hold_is_stored_as_text(hub, yaml_text, stored):
    hub.commit(storage.AddFile(path="README.md", content=f"---\n{yaml_text}\n---\n".encode()))
    repo = hub.refresh()
    assert repo.card_data == stored
    json.dumps(repo.card_data, allow_nan=False)  # what a JSON response needs


def test_a_self_referencing_alias_is_indexed_as_unreadable(hub):
    hub.commit(storage.AddFile(path="README.md", content=b"---\na: &a [*a]\n---\n"))
    repo = hub.refresh()
    assert repo.card_data is None
    assert "refers to" in repo.index_errors["README.md"]


def test_config_over_bound_is_not_indexed(hub):
    config = {"model_type": "bert", "architectures": ["BertModel"], "tokenizer_config": {"x": "y" * 100_000}}
    hub.commit(storage.AddFile(path="config.json", content=json.dumps(config).encode()))
    repo = hub.refresh()
    assert repo.config == {} and "config.json" in repo.index_errors


# -- the card validator ------------------------------------------------------------------------------


def test_alias_bomb_refused_fast():
    text = _bomb()
    assert len(text.encode()) < 500
    start = time.monotonic()
    error = card_error(text.encode())
    assert time.monotonic() - start < 0.5
    assert error and "aliases" in error


def test_a_few_aliases_are_fine():
    meta = parse_front_matter("---\nbase: &b {lr: 0.1}\nrun1: *b\nrun2: *b\n---\n")
    assert meta == {"base": {"lr": 0.1}, "run1": {"lr": 0.1}, "run2": {"lr": 0.1}}


@pytest.mark.parametrize(
    "yaml_text,words",
    [
        ("a: &a [*a]", "refers to"),
        ("a: " + "[" * 5000 + "]" * 5000, "nest"),
        ("a: " + "[" * 80 + "]" * 80, "nested deeper than 64"),
        ("x: " + "a" * (300 * 1024), "256 KB limit"),
        ("\n".join(f"k{i}: {'v' * 60}" for i in range(1500)), "64 KB limit"),
        ("a: [" + ",".join(["1"] * 120_000) + "]", "over 20000 values"),
    ],
    ids=["self-alias", "very-deep", "deep", "block-over-256KB", "json-over-64KB", "many-values"],
)
def test_bounds_refused_with_a_message(yaml_text, words):
    start = time.monotonic()
    error = card_error(f"---\n{yaml_text}\n---\nbody\n".encode())
    assert time.monotonic() - start < 1.5
    assert error and words in error and error.startswith("README.md has invalid metadata")


def test_huge_readme_judged_fast():
    """A 15 MB README (the size limit of a regular file is 10 MB; validate-yaml takes a body)."""
    start = time.monotonic()
    error = card_error(("---\n" + "a: b\n" * 3_000_000 + "---\n").encode())
    assert error and "256 KB limit" in error
    assert card_error(("---\n" + "x" * 15_000_000).encode()) is None  # no closing line: no metadata
    assert time.monotonic() - start < 1


def test_many_unreadable_files_named_up_to_a_bound(hub):
    bad = _hostile_safetensors()
    hub.commit(*(storage.AddFile(path=f"w{i:03}.safetensors", content=bad + bytes([i % 256])) for i in range(60)))
    repo = hub.refresh()
    assert len(repo.index_errors) == index.MAX_ERRORS + 1 and "10 more" in repo.index_errors["..."]


def test_long_body_without_front_matter_is_fine():
    assert card_error(("# title\n" + "text\n" * 2_000_000).encode()) is None
    # an opening line without a closing one is not metadata, however long the file
    assert parse_front_matter("---\n" + "text\n" * 200_000) is None


# -- end to end: the real client against `haven serve` ---------------------------------------------


@pytest.fixture(scope="module")
def client(hub_server):
    user = unique_name("idx")
    api = HfApi(endpoint=hub_server.url, token=hub_server.create_user(user))
    return api, user, hub_server


def test_hostile_header_commit_lands_and_info_answers(client, tmp_path):
    api, user, server = client
    repo_id = api.create_repo(f"{user}/hostile").repo_id
    blob = _hostile_safetensors()
    api.upload_file(path_or_fileobj=blob, path_in_repo="model.safetensors", repo_id=repo_id)
    path = hf_hub_download(repo_id, "model.safetensors", endpoint=server.url, token=api.token, cache_dir=tmp_path)
    assert open(path, "rb").read() == blob
    info = api.model_info(repo_id)
    assert info.safetensors is None
    assert "model.safetensors" in [s.rfilename for s in info.siblings]
    assert any(m.id == repo_id for m in api.list_models(author=user, full=True))


def test_good_weights_still_counted_end_to_end(client, tmp_path):
    api, user, _ = client
    repo_id = api.create_repo(f"{user}/good").repo_id
    blob = _weights()
    api.upload_file(path_or_fileobj=blob, path_in_repo="model.safetensors", repo_id=repo_id)
    expected = _reference_counts(blob, tmp_path)
    info = api.model_info(repo_id)
    assert info.safetensors.parameters == expected and info.safetensors.total == sum(expected.values())


def test_alias_bomb_card_refused_by_the_commit_api(client):
    api, user, server = client
    repo_id = api.create_repo(f"{user}/bomb").repo_id
    start = time.monotonic()
    # the client asks validate-yaml first (ValueError), the commit API refuses it too (400)
    with pytest.raises(ValueError, match="aliases"):
        api.upload_file(path_or_fileobj=_bomb().encode(), path_in_repo="README.md", repo_id=repo_id)
    lines = [
        {"key": "header", "value": {"summary": "bomb"}},
        {"key": "file", "value": {"path": "README.md", "encoding": "base64",
                                  "content": base64.b64encode(_bomb().encode()).decode()}},
    ]
    r = httpx.post(
        f"{server.url}/api/models/{repo_id}/commit/main",
        content="\n".join(json.dumps(line) for line in lines),
        headers={"authorization": f"Bearer {api.token}", "content-type": "application/x-ndjson"},
        timeout=30,
    )
    assert r.status_code == 400 and "aliases" in r.json()["error"]
    assert time.monotonic() - start < 5


def test_card_values_json_cannot_hold_are_served(client):
    api, user, _ = client
    repo_id = api.create_repo(f"{user}/odd-card").repo_id
    card = "---\nlicense: mit\n2024-02-01: dated key\nscore: .nan\n---\n# card\n"
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id)
    info = api.model_info(repo_id)
    assert info.card_data["license"] == "mit" and info.card_data["2024-02-01"] == "dated key"
    listed = list(api.list_models(author=user, cardData=True))
    assert any(m.id == repo_id for m in listed)
