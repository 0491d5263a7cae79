"""An S3 endpoint for the blob-store tests: moto's standalone server (`python -m moto.server`) on
127.0.0.1, one per test session, with the standard AWS settings pointing at it. No real
S3-compatible server installs here; moto implements the S3 API in Python."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server(log_path, env: dict | None = None) -> Iterator[str]:
    """Run `python -m moto.server` on a free 127.0.0.1 port (with `env` added to its environment);
    yields its URL."""
    port = _free_port()
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=log, env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start (see {log_path})") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """The URL of a running moto S3 server; AWS_* variables of this process point at it."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        saved = {k: os.environ.get(k) for k in AWS_ENV}
        os.environ.update(aws_env(url))
        try:
            yield url
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION")


def aws_env(url: str) -> dict[str, str]:
    """The standard AWS settings for the moto endpoint at `url` (moto accepts any credentials)."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket's name."""
    import boto3

    name = f"haven-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def hub_server(s3_endpoint: str, tmp_path_factory):
    """`haven serve --blob-store s3://<bucket>/hub` against the moto endpoint: the tests in this
    folder (and the hub tests they reuse from elsewhere) run on the S3 backend. `.bucket` names
    the bucket, `.blob_store` is the --blob-store value (for `open_blob_store`)."""
    import boto3

    from fixtures.server import start_server, stop_server

    bucket = f"hub-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    server = start_server(tmp_path_factory.mktemp("s3hub"), args=("--blob-store", f"s3://{bucket}/hub"))
    server.bucket, server.blob_store = bucket, f"s3://{bucket}/hub"
    try:
        yield server
    finally:
        stop_server(server)
