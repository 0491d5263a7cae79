"""The hub on PostgreSQL: a real server (initdb + postgres on 127.0.0.1), Alembic migrations,
and a representative flow through the real `huggingface_hub` client.

PostgreSQL refuses to run as root, so under root the server runs as `nobody` with a data dir
it owns. The test skips (with the reason) only when the PostgreSQL binaries are absent: the
Makefile's `system` target installs them (apt package `postgresql`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from fixtures.server import start_server, stop_server, unique_name


def _pg_bin() -> Path | None:
    for d in ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if all(os.access(Path(d) / b, os.X_OK) for b in ("initdb", "postgres")):
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("postgres") else None


PG_BIN = _pg_bin()
pytestmark = pytest.mark.skipif(
    PG_BIN is None, reason="PostgreSQL binaries (initdb, postgres) not found: apt-get install postgresql"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_db_user(cmd: list[str]) -> list[str]:
    """Run `cmd` as an unprivileged user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1; yields the SQLAlchemy URL of a new database."""
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="haven-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chmod(root, 0o755)
        shutil.chown(data, "nobody", "nogroup")
    subprocess.run(
        _as_db_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "haven", "--auth=trust", "-E", "UTF8",
                     "--no-sync"]),
        check=True, capture_output=True, timeout=120,
    )
    port = _free_port()
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 - kept open while the server runs
    proc = subprocess.Popen(
        _as_db_user([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                     "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
                     "-c", "fsync=off"]),
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        admin_url = f"host=127.0.0.1 port={port} user=haven dbname=postgres"
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute("CREATE DATABASE hub")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "postgres.log").read_text(errors="replace")) from None
                time.sleep(0.2)
        yield f"postgresql+psycopg://haven@127.0.0.1:{port}/hub"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_migrations_run_on_postgres(postgres):
    """Alembic brings an empty PostgreSQL database to head; the tables are there, twice is a no-op."""
    from sqlalchemy import create_engine, inspect, text

    from haven.server import db

    db.upgrade(postgres)
    db.upgrade(postgres)
    engine = create_engine(postgres)
    try:
        names = set(inspect(engine).get_table_names())
        assert {"users", "orgs", "memberships", "tokens", "repos", "repo_lfs_objects"} <= names
        with engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalar() == _head()
    finally:
        engine.dispose()


def test_hub_flow_on_postgres(postgres, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    server = start_server(tmp_path, db_url=postgres)
    try:
        alice, eve = unique_name("alice"), unique_name("eve")
        token, eve_token = server.create_user(alice), server.create_user(eve)
        api = HfApi(endpoint=server.url, token=token)
        assert api.whoami()["name"] == alice

        repo_id = api.create_repo(f"{alice}/pg-model").repo_id
        api.create_repo(repo_id, exist_ok=True)  # the 409 path on PostgreSQL's unique constraint
        weights = os.urandom(200_000)
        readme = "---\nlicense: mit\npipeline_tag: fill-mask\ntags: [postgres]\n---\n# pg\n"
        api.upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=repo_id)
        api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_id)
        private_id = api.create_repo(f"{alice}/pg-private", private=True).repo_id
        api.upload_file(path_or_fileobj=b"hidden", path_in_repo="a.txt", repo_id=private_id)

        # listing and search read the index kept in PostgreSQL (JSON columns included)
        found = list(api.list_models(search="pg-model", author=alice))
        assert [m.id for m in found] == [repo_id]
        assert [m.id for m in api.list_models(filter="postgres", author=alice)] == [repo_id]
        info = api.model_info(repo_id)
        assert info.pipeline_tag == "fill-mask" and "license:mit" in info.tags
        sib = {s.rfilename: s for s in api.model_info(repo_id, files_metadata=True).siblings}
        assert sib["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()

        # downloads: LFS object through resolve, and a snapshot
        path = hf_hub_download(repo_id, "model.safetensors", endpoint=server.url, cache_dir=tmp_path / "c1")
        assert Path(path).read_bytes() == weights
        snap = snapshot_download(repo_id, endpoint=server.url, cache_dir=tmp_path / "c2")
        assert (Path(snap) / "README.md").read_text() == readme

        # private access: owner sees it; another user and anonymous get RepositoryNotFound
        assert api.model_info(private_id).private
        for other in (HfApi(endpoint=server.url, token=eve_token), HfApi(endpoint=server.url, token=False)):
            with pytest.raises(RepositoryNotFoundError):
                other.model_info(private_id)
        assert {m.id for m in api.list_models(author=alice)} == {repo_id, private_id}
        assert {m.id for m in HfApi(endpoint=server.url, token=eve_token).list_models(author=alice)} == {
            repo_id
        }
        downloads = api.model_info(repo_id).downloads
        assert isinstance(downloads, int)
    finally:
        stop_server(server)
    assert "Traceback" not in server.log(), server.log()[-3000:]


def _head() -> str:
    """The newest migration, read from the migration scripts themselves."""
    from pathlib import Path

    from alembic.script import ScriptDirectory

    import haven.server

    return ScriptDirectory(str(Path(haven.server.__file__).parent / "migrations")).get_current_head()
