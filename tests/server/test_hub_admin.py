"""`haven admin` commands, settings precedence, migrations, and the repo index helpers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from haven.server import auth, db
from haven.server.api import index
from haven.server.settings import Settings


def _haven(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "haven.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_admin_commands_on_a_data_dir(tmp_path, capsys):
    from haven.cli import main

    data = str(tmp_path / "data")
    assert main(["admin", "create-user", "zoe", "--data", data]) == 0
    made = _haven("admin", "create-token", "zoe", "--role", "read", "--data", data)  # the real command line
    assert made.returncode == 0
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("hv_")  # the token alone on stdout
    assert main(["admin", "create-org", "labs", "--member", "zoe", "--data", data]) == 0
    capsys.readouterr()
    assert main(["admin", "create-user", "zoe", "--data", data]) == 1
    assert "already taken" in capsys.readouterr().err
    assert main(["admin", "create-token", "nobody", "--data", data]) == 1
    assert "create-user" in capsys.readouterr().err
    engine = db.make_engine(f"sqlite:///{data}/haven.db")
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        stored = conn.execute(sa.text("SELECT token_hash, role FROM tokens")).one()
    assert stored == (auth.hash_token(token), "read")  # only the hash is kept
    with db.make_sessionmaker(engine)() as session:
        p = auth.authenticate(session, f"Bearer {token}")
        assert p.name == "zoe" and p.role == "read" and p.orgs == {"labs": "write"}
        with pytest.raises(auth.AuthError):
            auth.authenticate(session, "Bearer hv_nope")


def test_migrations_run_on_any_sqlalchemy_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    db.upgrade(url)
    db.upgrade(url)  # idempotent
    tables = set(sa.inspect(db.make_engine(url)).get_table_names())
    assert {"users", "orgs", "memberships", "tokens", "repos", "alembic_version"} <= tables


def test_migrations_make_the_tables_the_models_declare(tmp_path):
    """Head of the migrations and the models agree: tables, columns, types, indexes, keys."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import haven.server.xet.models  # noqa: F401  (its tables join db.Base's metadata)

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    db.upgrade(url)
    with db.make_engine(url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.Base.metadata) == []


def test_xorbs_stored_before_0008_count_as_referenced_when_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    db.upgrade(url, "0007")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO xet_xorbs (hash, size, chunk_count, unpacked_bytes, chunk_index, "
                             "created_at) VALUES ('ab', 1, 1, 1, x'00', '2026-01-02 03:04:05.000000')"))
    db.upgrade(url)
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT referenced_at FROM xet_xorbs WHERE hash = 'ab'")).scalar()
    assert str(got).startswith("2026-01-02 03:04:05")


def test_settings_flags_over_env_over_defaults(tmp_path, monkeypatch):
    for key in ("HAVEN_HOST", "HAVEN_PORT", "HAVEN_DATA", "HAVEN_PUBLIC_URL", "HAVEN_DB_URL", "HAVEN_SECRET"):
        monkeypatch.delenv(key, raising=False)
    s = Settings.load(data_dir=tmp_path)
    assert (s.host, s.port, s.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'haven.db'}"
    monkeypatch.setenv("HAVEN_PORT", "9000")
    monkeypatch.setenv("HAVEN_PUBLIC_URL", "https://hub.example/")
    monkeypatch.setenv("HAVEN_DB_URL", "postgresql://h@db/haven")
    s = Settings.load(data_dir=tmp_path)
    assert (s.port, s.public_url, s.db_url) == (9000, "https://hub.example", "postgresql://h@db/haven")
    assert Settings.load(data_dir=tmp_path, port=7000).port == 7000
    s.prepare()
    secret = (tmp_path / "secret").read_text()
    assert len(secret) == 64 and s.secret == secret
    assert oct(os.stat(tmp_path / "secret").st_mode & 0o777) == "0o600"
    for sub in ("repos/models", "repos/datasets", "lfs/objects", "tmp"):
        assert (tmp_path / sub).is_dir()


def test_signed_links():
    q = auth.signed_query("k", "upload", "a" * 64, 5, repo=7)
    repo, exp, sig = (part.split("=")[1] for part in q.split("&"))
    assert repo == "7"
    assert auth.check_signature("k", "upload", "a" * 64, 5, exp, sig, repo="7")
    assert not auth.check_signature("k", "upload", "a" * 64, 5, exp, sig, repo="8")  # other repo
    assert not auth.check_signature("k", "upload", "a" * 64, 6, exp, sig, repo="7")  # other size
    assert not auth.check_signature("k", "download", "a" * 64, 5, exp, sig, repo="7")  # other action
    assert not auth.check_signature("other", "upload", "a" * 64, 5, exp, sig, repo="7")  # other secret
    assert not auth.check_signature("k", "upload", "a" * 64, 5, "1", sig, repo="7")  # expired
    assert not auth.check_signature("k", "upload", "a" * 64, 5, exp, sig, repo="x")  # malformed


def test_valid_names():
    for ok in ("bert-base", "A1", "x.y_z", "a" * 96):
        assert auth.valid_name(ok), ok
    for bad in ("", "-a", ".a", "a b", "a--b", "a..b", "m.git", "a" * 97, "é"):
        assert not auth.valid_name(bad), bad


def test_front_matter_and_pipeline_tag():
    card = "---\nlicense: mit\nlanguage:\n- en\npipeline_tag: text-classification\n---\n# Title\n"
    assert index.parse_front_matter(card) == {
        "license": "mit",
        "language": ["en"],
        "pipeline_tag": "text-classification",
    }
    assert index.parse_front_matter("# no metadata") is None
    assert index.parse_front_matter("---\n---\nbody") == {}
    with pytest.raises(ValueError):
        index.parse_front_matter("---\n- a list\n---\n")
    with pytest.raises(ValueError):
        index.parse_front_matter("---\nkey: [unclosed\n---\n")
    # The Hub's tasks for the reference library's head classes
    cases = {
        "BertForMaskedLM": "fill-mask",
        "GPT2LMHeadModel": "text-generation",
        "LlamaForCausalLM": "text-generation",
        "DistilBertForSequenceClassification": "text-classification",
        "RobertaForTokenClassification": "token-classification",
        "BertForQuestionAnswering": "question-answering",
        "BertModel": "feature-extraction",
    }
    for arch, task in cases.items():
        assert index.pipeline_from_architectures([arch]) == task, arch
    assert index.pipeline_from_architectures(["Mystery"]) is None
    tags = index.build_tags(
        {"tags": ["x"], "license": "mit", "datasets": ["wiki"], "language": "en"},
        {"model_type": "bert"},
        ["model.safetensors"],
        "transformers",
        "fill-mask",
    )
    assert tags == [
        "transformers",
        "safetensors",
        "bert",
        "x",
        "en",
        "license:mit",
        "dataset:wiki",
        "fill-mask",
    ]


def test_validate_yaml_endpoint(hub_server):
    import httpx

    ok = httpx.post(
        f"{hub_server.url}/api/validate-yaml",
        json={"content": "---\nlicense: mit\n---\n", "repoType": "model"},
    )
    assert ok.status_code == 200 and ok.json() == {"errors": [], "warnings": []}
    bad = httpx.post(
        f"{hub_server.url}/api/validate-yaml", json={"content": "---\n: [\n---\n", "repoType": "model"}
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["message"]


def test_create_user_password_stdin(tmp_path):
    data = str(tmp_path / "data")
    made = subprocess.run(
        [sys.executable, "-m", "haven.cli", "admin", "create-user", "pat", "--password-stdin", "--data", data],
        input="a long enough secret\n", capture_output=True, text=True, timeout=120,
    )
    assert made.returncode == 0, made.stderr
    short = subprocess.run(
        [sys.executable, "-m", "haven.cli", "admin", "create-user", "kim", "--password-stdin", "--data", data],
        input="short\n", capture_output=True, text=True, timeout=120,
    )
    assert short.returncode == 1 and "too short" in short.stderr and "short\n" not in short.stdout
    assert _haven("admin", "create-user", "lee", "--data", data).returncode == 0  # no password: tokens only
    engine = db.make_engine(f"sqlite:///{data}/haven.db")
    with db.make_sessionmaker(engine)() as session:
        users = {u.name: u for u in session.scalars(sa.select(db.User))}
    assert set(users) == {"pat", "lee"}
    stored = users["pat"].password_hash
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**15, 8, 1)
    # the stored hash is scrypt of the password under the stored salt, recomputed here with hashlib
    import base64
    import hashlib

    expected = hashlib.scrypt(b"a long enough secret", salt=base64.b64decode(salt), n=2**15, r=8, p=1,
                              maxmem=64 << 20, dklen=len(base64.b64decode(digest)))
    assert base64.b64decode(digest) == expected
    assert auth.verify_password(stored, "a long enough secret") and not auth.verify_password(stored, "a long enough")
    assert users["lee"].password_hash is None and not auth.verify_password(None, "anything at all")
    other = subprocess.run(
        [sys.executable, "-m", "haven.cli", "admin", "create-user", "max", "--password-stdin", "--data", data],
        input="a long enough secret\n", capture_output=True, text=True, timeout=120,
    )
    assert other.returncode == 0
    with db.make_sessionmaker(engine)() as session:
        max_hash = session.scalar(sa.select(db.User.password_hash).where(db.User.name == "max"))
    assert max_hash.split("$")[4] != salt  # a salt per user
