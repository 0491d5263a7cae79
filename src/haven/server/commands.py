"""`haven serve` and `haven admin create-user | create-token | create-org | storage`.

`create-user NAME --password-stdin` reads the user's web password from stdin (never from the
command line, where other users of the machine could read it).

The admin commands work on the data directory (or `--db-url`) directly; no server needs to run.
`create-token` prints the token alone on stdout so scripts can capture it.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

# What `pip install 'haven[server]'` brings (import names, and those they pull in).
SERVER_PACKAGES = frozenset({
    "fastapi", "starlette", "pydantic", "uvicorn", "sqlalchemy", "alembic", "pygit2", "markdown_it", "multipart",
    "python_multipart", "jinja2",
})


def needs_server_extra(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Without the server's packages, say which extra to install (one line, exit 2) instead of a traceback."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ModuleNotFoundError as err:
            missing = (err.name or "").partition(".")[0]
            if missing not in SERVER_PACKAGES:
                raise
            print(f"haven {args.command}: the hub server needs packages this install lacks ({missing}); install "
                  "them with: pip install 'haven[server]'", file=sys.stderr)
            return 2

    return wrapper


# Connection limits and timeouts of `haven serve` (uvicorn), so slow or many clients cannot
# exhaust the server: flag -> (environment variable, default, help).
LIMITS = {
    "limit-concurrency": (
        "HAVEN_LIMIT_CONCURRENCY", 512, "most connections and requests at once; more are answered 503",
    ),
    "timeout-keep-alive": ("HAVEN_TIMEOUT_KEEP_ALIVE", 15, "seconds an idle keep-alive connection stays open"),
    "max-header-bytes": (
        "HAVEN_MAX_HEADER_BYTES", 64 * 1024, "largest request line plus headers, in bytes; larger is refused",
    ),
    "backlog": ("HAVEN_BACKLOG", 2048, "connections the OS queues before the server accepts them"),
    "timeout-graceful-shutdown": (
        "HAVEN_TIMEOUT_GRACEFUL_SHUTDOWN", 30, "seconds running requests get to finish on shutdown",
    ),
}


def server_limits(args: argparse.Namespace) -> dict[str, int | str]:
    """uvicorn keyword arguments from the LIMITS flags (flag over environment over default)."""
    import os

    out = {}
    for flag, (env, default, _) in LIMITS.items():
        value = getattr(args, flag.replace("-", "_"), None)
        if value is None:
            raw = os.environ.get(env, "")
            try:
                value = int(raw) if raw else default
            except ValueError:
                raise SystemExit(f"haven serve: {env}={raw!r} is not an integer") from None
        if value < 1:
            raise SystemExit(f"haven serve: --{flag} must be a positive integer, not {value}")
        out[flag] = value
    return {
        "http": "h11",  # the parser that enforces max-header-bytes (httptools buffers any header size)
        "limit_concurrency": out["limit-concurrency"],
        "timeout_keep_alive": out["timeout-keep-alive"],
        "h11_max_incomplete_event_size": out["max-header-bytes"],
        "backlog": out["backlog"],
        "timeout_graceful_shutdown": out["timeout-graceful-shutdown"],
    }


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the hub server")
    serve.add_argument("--host", default=None, help="address to bind (HAVEN_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (HAVEN_PORT, default 8080)")
    _data_args(serve)
    serve.add_argument("--public-url", default=None, help="base URL clients use (HAVEN_PUBLIC_URL)")
    serve.add_argument(
        "--max-lfs-object", default=None,
        help="largest LFS object accepted, e.g. 500MB or 2GiB (HAVEN_MAX_LFS_OBJECT, default 50GB); larger: 413",
    )
    serve.add_argument(
        "--no-signup", dest="signup", action="store_false", default=None,
        help="nobody may create an account at /join; admins create users (HAVEN_SIGNUP=0)",
    )
    serve.add_argument(
        "--no-inference", dest="inference", action="store_false", default=None,
        help="serve no inference API (/models, /v1) from this process (HAVEN_INFERENCE=0)",
    )
    serve.add_argument(
        "--inference-memory", default=None,
        help="bytes of model weights the inference API keeps loaded, e.g. 2GB; the least recently used "
        "model is dropped first (HAVEN_INFERENCE_MEMORY, default 4GB)",
    )
    serve.add_argument(
        "--inference-queue", type=int, default=None,
        help="inference requests that may wait per model; more are answered 429 (HAVEN_INFERENCE_QUEUE, default 256)",
    )
    serve.add_argument(
        "--inference-timeout", type=float, default=None, metavar="SECONDS",
        help="seconds an inference request may take (queueing and computing) before it is answered 504 "
        "(HAVEN_INFERENCE_TIMEOUT, default 120)",
    )
    serve.add_argument(
        "--inference-worker", action="append", default=None, metavar="URL",
        help="hand inference requests to this `haven worker` (repeatable; HAVEN_INFERENCE_WORKERS, comma-separated); "
        "both need the same HAVEN_WORKER_SECRET",
    )
    _model_flags(serve)
    serve.add_argument(
        "--blob-store", default=None,
        help="where LFS objects and Xet xorbs live: a directory (default: the data directory) or "
        "s3://bucket/prefix, with endpoint and credentials from the standard AWS settings "
        "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID ...) (HAVEN_BLOB_STORE)",
    )
    serve.add_argument(
        "--cas-url", default=None,
        help="send Xet clients to the CAS at this URL: another `haven serve` on the same database, secret and "
        "blob store, reached at its PUBLIC_URL/cas (HAVEN_CAS_URL; default this process)",
    )
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    for flag, (env, default, text) in LIMITS.items():
        serve.add_argument(f"--{flag}", type=int, default=None, help=f"{text} ({env}, default {default})")
    serve.add_argument(
        "--demo", action=argparse.BooleanOptionalAction, default=True,
        help="on a hub with no repositories, publish the demo organisation (one small model per task) "
        "once it is up, and print the demo login (default: on; --no-demo turns it off)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run the inference API for a hub, in a process of its own")
    worker.add_argument("--hub", required=True, help="the hub's URL (it forwards requests here and serves the files)")
    worker.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    worker.add_argument("--port", type=int, default=None, help="port (default 8081)")
    worker.add_argument("--data", default=None, help="folder for downloaded models (HAVEN_DATA, default ./haven-worker)")
    worker.add_argument("--inference-memory", default=None, help="as for haven serve (HAVEN_INFERENCE_MEMORY)")
    worker.add_argument("--inference-queue", type=int, default=None, help="as for haven serve (HAVEN_INFERENCE_QUEUE)")
    worker.add_argument("--inference-timeout", type=float, default=None, metavar="SECONDS",
                        help="as for haven serve (HAVEN_INFERENCE_TIMEOUT)")
    _model_flags(worker)
    worker.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    worker.set_defaults(func=cmd_worker)

    admin = sub.add_parser("admin", help="manage users, tokens and organizations of a hub's data dir")
    admin_sub = admin.add_subparsers(dest="admin_command", metavar="ACTION")
    cu = admin_sub.add_parser("create-user", help="create a user")
    cu.add_argument("name")
    cu.add_argument("--admin", action="store_true", help="the user administers the whole hub")
    cu.add_argument("--fullname", default="")
    cu.add_argument(
        "--password-stdin", action="store_true",
        help="read the user's web password from stdin (one line), so they can sign in at /login",
    )
    _data_args(cu)
    cu.set_defaults(func=cmd_create_user)
    ct = admin_sub.add_parser("create-token", help="create an access token (printed alone on stdout)")
    ct.add_argument("user")
    ct.add_argument("--role", choices=["read", "write"], default="write")
    ct.add_argument("--name", default="", help="a label for the token")
    _data_args(ct)
    ct.set_defaults(func=cmd_create_token)
    co = admin_sub.add_parser("create-org", help="create an organization (or add members to it)")
    co.add_argument("name")
    co.add_argument("--member", action="append", default=[], help="a user to add (repeatable)")
    _data_args(co)
    co.set_defaults(func=cmd_create_org)
    for action, text in (("disable", "turn a user's account off: sign-in, sessions, tokens and git refused at "
                          "once; their repositories stay"), ("enable", "turn a disabled user's account on again")):
        du = admin_sub.add_parser(f"{action}-user", help=text)
        du.add_argument("name")
        _data_args(du)
        du.set_defaults(func=cmd_set_disabled, disable=action == "disable")
    st = admin_sub.add_parser("storage", help="logical and stored bytes of large files, per repository and hub")
    _data_args(st)
    st.add_argument("--blob-store", default=None, help="the hub's --blob-store, if it has one (HAVEN_BLOB_STORE)")
    st.set_defaults(func=cmd_storage)
    gc = admin_sub.add_parser("gc", help="remove large files no repository can serve any more (after deletions)")
    _data_args(gc)
    gc.add_argument("--blob-store", default=None, help="the hub's --blob-store, if it has one (HAVEN_BLOB_STORE)")
    gc.add_argument("--grace", type=float, default=24.0, metavar="HOURS",
                    help="keep what is younger than this, e.g. uploads whose commit has not landed (default 24)")
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    gc.set_defaults(func=cmd_gc)
    admin.set_defaults(func=lambda args: admin.print_help() or 2)


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="data directory (HAVEN_DATA, default ./haven-data)")
    parser.add_argument("--db-url", default=None, help="SQLAlchemy database URL (HAVEN_DB_URL)")


def _model_flags(parser: argparse.ArgumentParser) -> None:
    """How the inference API loads every model: `haven run`'s flags of the same names, prefixed."""
    parser.add_argument("--inference-device", default=None,
                        help="cpu (default), auto (cuda if this machine has it), cuda, cuda:N (HAVEN_INFERENCE_DEVICE)")
    parser.add_argument("--inference-dtype", default=None,
                        help="float32 (default), bfloat16, float16, auto: the checkpoint's (HAVEN_INFERENCE_DTYPE)")
    quantize = parser.add_mutually_exclusive_group()
    quantize.add_argument("--inference-load-in-8bit", dest="inference_quantization", action="store_const",
                          const="8bit", default=None, help="int8 weights, quantized at load (HAVEN_INFERENCE_QUANTIZATION=8bit)")
    quantize.add_argument("--inference-load-in-4bit", dest="inference_quantization", action="store_const",
                          const="4bit", default=None, help="int4 weights, quantized at load (HAVEN_INFERENCE_QUANTIZATION=4bit)")


def _model_settings(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name, None) for name in ("inference_device", "inference_dtype", "inference_quantization")}


def _settings(args: argparse.Namespace):
    from .settings import Settings

    return Settings.load(
        data_dir=args.data,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        public_url=getattr(args, "public_url", None),
        db_url=args.db_url,
        max_lfs_object=getattr(args, "max_lfs_object", None),
        signup=getattr(args, "signup", None),
        blob_store=getattr(args, "blob_store", None),
        inference=getattr(args, "inference", None),
        inference_memory=getattr(args, "inference_memory", None),
        cas_url=getattr(args, "cas_url", None),
        inference_queue=getattr(args, "inference_queue", None),
        inference_timeout=getattr(args, "inference_timeout", None),
        inference_workers=getattr(args, "inference_worker", None),
        **_model_settings(args),
    )


def open_db(args: argparse.Namespace):
    """Settings, prepared data dir and a migrated database's sessionmaker."""
    from . import db

    settings = _settings(args)
    settings.prepare()
    db.upgrade(settings.db_url)
    return settings, db.make_sessionmaker(db.make_engine(settings.db_url))


@needs_server_extra
def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .storage.blobs import BlobStoreError

    limits = server_limits(args)
    settings, sessionmaker = open_db(args)
    try:
        app = create_app(settings)
    except BlobStoreError as err:
        print(f"haven serve: {err}", file=sys.stderr)
        return 2
    print(f"haven hub at {settings.public_url} (data: {settings.data_dir})", file=sys.stderr, flush=True)
    if args.demo:
        from . import demo

        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        demo.seed_in_background(sessionmaker, settings.data_dir, f"http://{host}:{settings.port}")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, **limits)
    return 0


@needs_server_extra
def cmd_worker(args: argparse.Namespace) -> int:
    """`haven worker --hub URL`: HAVEN_WORKER_SECRET (shared with the hub) and HAVEN_WORKER_TOKEN (a
    hub token that may read the served repositories: an admin's, for private ones) come from the
    environment, never from flags other users could read."""
    import os

    import uvicorn

    from .inference.worker import create_worker_app
    from .settings import Settings

    settings = Settings.load(
        data_dir=args.data or os.environ.get("HAVEN_DATA") or "./haven-worker", host=args.host,
        port=args.port or 8081, inference_memory=args.inference_memory, inference_queue=args.inference_queue,
        inference_timeout=args.inference_timeout, **_model_settings(args),
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_worker_app(settings, args.hub, os.environ.get("HAVEN_WORKER_TOKEN") or None)
    print(f"haven inference worker at http://{settings.host}:{settings.port} for {args.hub}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, **server_limits(args))
    return 0


def _run(args: argparse.Namespace, action) -> int:
    _, Session = open_db(args)
    with Session() as session:
        try:
            result = action(session)
        except ValueError as err:
            print(f"haven admin: {err}", file=sys.stderr)
            return 1
        session.commit()
    if result:
        print(result)
    return 0


@needs_server_extra
def cmd_create_user(args: argparse.Namespace) -> int:
    from . import auth

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            auth.check_password_rules(password)
        except auth.PasswordError as err:
            print(f"haven admin: {err} (read from stdin)", file=sys.stderr)
            return 1

    def action(session):
        auth.create_user(session, args.name, admin=args.admin, fullname=args.fullname, password=password)
        print(f"created user {args.name}{' (admin)' if args.admin else ''}", file=sys.stderr)

    return _run(args, action)


@needs_server_extra
def cmd_create_token(args: argparse.Namespace) -> int:
    from . import auth

    return _run(args, lambda session: auth.create_token(session, args.user, args.role, args.name))


@needs_server_extra
def cmd_storage(args: argparse.Namespace) -> int:
    from .storage import open_blob_store
    from .xet.accounting import format_usage, storage_usage

    settings, Session = open_db(args)
    blobs = open_blob_store(settings.blob_store or None, settings.data_dir)
    with Session() as session:
        print(format_usage(storage_usage(session, blobs)))
    return 0


@needs_server_extra
def cmd_gc(args: argparse.Namespace) -> int:
    from .storage import open_blob_store
    from .xet.accounting import format_usage, storage_usage
    from .xet.collect import collect

    if not args.grace >= 0:
        print("haven admin gc: --grace must be a number of hours, 0 or more", file=sys.stderr)
        return 2
    settings, Session = open_db(args)
    blobs = open_blob_store(settings.blob_store or None, settings.data_dir)
    done = collect(Session, blobs, grace=args.grace * 3600, dry_run=args.dry_run)
    print(f"{'would remove' if args.dry_run else 'removed'} {done}")
    with Session() as session:
        print(format_usage(storage_usage(session, blobs)))
    return 0


@needs_server_extra
def cmd_set_disabled(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from . import auth
    from .db import User

    def action(session):
        user = session.scalar(select(User).where(User.name == args.name))
        if user is None:
            raise ValueError(f"no user {args.name!r}: list users at /admin/users, or create one with create-user")
        auth.set_disabled(session, user, args.disable)
        print(f"user {args.name} {'disabled' if args.disable else 'enabled'}", file=sys.stderr)

    return _run(args, action)


@needs_server_extra
def cmd_create_org(args: argparse.Namespace) -> int:
    from . import auth

    def action(session):
        auth.create_org(session, args.name, args.member)
        members = f" with {', '.join(args.member)}" if args.member else ""
        print(f"organization {args.name}{members}", file=sys.stderr)

    return _run(args, action)
