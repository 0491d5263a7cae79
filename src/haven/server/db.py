"""The server's database: accounts, tokens and the repository index (SQLAlchemy 2).

SQLite in WAL mode by default; any SQLAlchemy URL works (PostgreSQL for scale). The schema is
owned by Alembic (`haven/server/migrations`); `upgrade(url)` brings a database up to date.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    fullname: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)  # no sign-in, tokens refused; repos stay
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # "scrypt$n$r$p$salt$hash" (auth.hash_password); None: no password, the user signs in with tokens only
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)


class Org(Base):
    __tablename__ = "orgs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    fullname: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="write")  # "admin" | "write" | "read"


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    prefix: Mapped[str] = mapped_column(String(16), default="")  # first characters, for display
    role: Mapped[str] = mapped_column(String(8), default="write")  # "read" | "write"
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random id, the table only its sha256."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Like(Base):
    """A user likes a repository; `repos.likes` is the count of these rows."""

    __tablename__ = "likes"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Repo(Base):
    """One repository and its index (refreshed after every commit or push)."""

    __tablename__ = "repos"
    # (type, private): a list's count of every visible repo reads this index alone
    __table_args__ = (UniqueConstraint("type", "namespace", "name"), Index("ix_repos_type_private", "type", "private"))
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(16), index=True)  # "model" | "dataset"
    namespace: Mapped[str] = mapped_column(String(96), index=True)
    name: Mapped[str] = mapped_column(String(96))
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    sha: Mapped[str] = mapped_column(String(40), default="")
    downloads: Mapped[int] = mapped_column(Integer, default=0, index=True)
    likes: Mapped[int] = mapped_column(Integer, default=0, index=True)
    pipeline_tag: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    library_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    card_data: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    config: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    safetensors: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {"parameters", "total"}
    # files of the head the indexer could not read, and why: {"README.md": "...", "model.safetensors": ...}
    index_errors: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # the card's body as lowercase plain text (Markdown stripped, bounded): what the web search reads,
    # in SQL only; deferred, so the rows every request loads (find_repo) leave it out
    card_text: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"


class RepoFacet(Base):
    """One filter value that selects a repository, per list facet (`index.facet_values`): written
    with the index, so the lists count facets with one GROUP BY instead of reading every repo."""

    __tablename__ = "repo_facets"
    __table_args__ = (Index("ix_repo_facets_count", "type", "facet", "value", "repo_id"),)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    facet: Mapped[str] = mapped_column(String(16), primary_key=True)  # pipeline_tag, library, license ...
    value: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))  # the repo's type (it never changes)


class RepoLfsObject(Base):
    """An LFS object a repository may serve: uploaded through it, committed to it by someone who
    could already read the object elsewhere, or found in it when the table was first filled."""

    __tablename__ = "repo_lfs_objects"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    oid: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)  # sha256 hex


class SafetensorsFacts(Base):
    """What the indexer learnt from one safetensors file's header, by content: the LFS object's
    sha256, or the git blob's sha1 for a file kept in git. Written once, never changes."""

    __tablename__ = "safetensors_facts"
    oid: Mapped[str] = mapped_column(String(64), primary_key=True)
    parameters: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # dtype -> elements; None: unreadable
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)  # why it is unreadable


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(url: str, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` (the newest by default) on the database at `url`."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)
