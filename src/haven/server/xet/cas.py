"""The Xet routes: access tokens under /api, and the CAS service the client talks to, under
`/cas` (the `casUrl` handed out; `--cas-url` points clients at a separate process instead).

Tokens: `GET /api/{models|datasets}/{ns}/{name}/xet-{read|write}-token/{rev}` answers
`{"accessToken", "exp", "casUrl"}` and the same in `X-Xet-Access-Token`, `X-Xet-Token-Expiration`,
`X-Xet-Cas-Url`. A read token needs read access (a private repo is 404 to outsiders, as
everywhere) and an existing revision, a write token write access.

CAS (Bearer: a Xet token; 401 without a valid one, or once the access it was issued for has ended,
403 for a read token on an upload):
- `POST /cas/v1/xorbs/default/{hash}`: the body streams into the blob store while every chunk is
  decoded and hashed; the Merkle root must equal `{hash}` (400 otherwise, nothing stored).
  Idempotent (`was_inserted`).
- `POST /cas/v1/shards`: every xorb named must be stored, every term's verification hash and size
  must match the xorb's chunks, the file hash and the sha256 must match the bytes (400 with
  nothing recorded otherwise). Each file's sha256 becomes servable by the token's repository.
- `GET /cas/v1/reconstructions/{file_id}` (`Range: bytes=a-b`): terms and signed, expiring fetch
  URLs for byte ranges of xorbs; only for files the token's repository may serve (404 otherwise).
- `GET /cas/v1/fetch/{xorb}?range=a-b&exp=..&sig=..`: the bytes a fetch URL names (no token: the
  URL authorises itself). With an S3 blob store the fetch URL is a presigned GET instead.
- `GET /cas/v1/chunks/{default|default-merkledb}/{chunk}`: the global dedup query: a shard listing
  the xorb holding that chunk and the other xorbs of files using it, chunk hashes keyed with a
  fresh key per answer (so only a client holding a chunk can recognise it), or 404.
Any other `/cas` path (the v2 routes, xorb grants ...) is a plain 404: the client falls back to v1.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from starlette.responses import StreamingResponse

from .. import auth
from ..api.common import ApiError, NoSuchRoute
from ..api.deps import ReadableRepo, SessionDep, WritableRepo
from ..db import Repo, RepoLfsObject, Token, User
from . import tokens
from .hashing import HashStringError, from_hex, to_hex
from .shard import MAX_SHARD_BYTES, ShardError, dedup_shard
from .store import XetStore, xorb_key
from .xorb import MAX_XORB_BYTES, XorbError

log = logging.getLogger("haven.server.xet")
router = APIRouter()
CAS = "/cas"  # the CAS service's base path (casUrl): its /v1 never meets the inference /v1 routes
RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")
_FLUSH = 4 << 20
_TOO_BIG = "a xorb holds at most 64 MiB of chunks: split it"


def _store(request: Request) -> XetStore:
    return request.app.state.xet


def _token_answer(request: Request, session, repo: Repo, scope: str) -> Response:
    _only_params(request)
    settings = request.app.state.settings
    raw = auth.token_from_headers(request.headers.get("authorization"))
    caller = session.scalar(select(Token.id).where(Token.token_hash == auth.hash_token(raw))) if raw else None
    token = tokens.issue(settings.secret, repo.id, scope, caller or 0)
    exp = tokens.check(settings.secret, token).expires
    cas_url = settings.cas_url or settings.public_url + CAS
    headers = {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp),
               "Cache-Control": "no-store"}
    body = json.dumps({"accessToken": token, "exp": exp, "casUrl": cas_url})
    return Response(body, media_type="application/json", headers=headers)


@router.get("/api/{plural}/{ns}/{name}/xet-read-token/{rev:path}")
def read_token(request: Request, repo: ReadableRepo, session: SessionDep, rev: str) -> Response:
    """A read token for the repository; the revision must exist (404 RevisionNotFound)."""
    request.app.state.repos.resolve(repo.type, repo.repo_id, rev)
    return _token_answer(request, session, repo, "read")


@router.get("/api/{plural}/{ns}/{name}/xet-write-token/{rev:path}")
def write_token(request: Request, repo: WritableRepo, session: SessionDep, rev: str) -> Response:
    """A write token for the repository. The branch need not exist yet (a new repository's first
    upload, or `None` for a pull request): the commit that follows names and checks it."""
    return _token_answer(request, session, repo, "write")


# -- CAS ------------------------------------------------------------------------------------------


def _only_params(request: Request, allowed: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
        raise ApiError(400, f"unknown query parameter {unknown[0]!r} for {request.url.path}: {takes}")


def cas_grant(request: Request) -> tokens.XetGrant:
    """The request's Xet token, checked, with the access behind it (401 once it is gone: the client
    refreshes, and the hub answers that). Its own short session: an upload route must not hold a
    database connection while the body streams in."""
    _only_params(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "this CAS route needs a Xet token (Authorization: Bearer ...): get one from "
                       "/api/{models|datasets}/{ns}/{name}/xet-read-token/{rev}")
    try:
        grant = tokens.check(request.app.state.settings.secret, token.strip())
    except tokens.TokenError as err:
        raise ApiError(401, str(err)) from None
    with _store(request).sessions() as session:
        repo = session.get(Repo, grant.repo_pk)
        if repo is None:
            raise ApiError(401, "the Xet token's repository no longer exists")
        caller = _caller(session, grant)
        allowed = auth.can_read(caller, repo) and (not grant.can_write or auth.can_write_namespace(caller, repo.namespace))
        if not allowed:
            raise ApiError(401, "the access this Xet token was issued for has ended: ask the hub for a new token")
    return grant


def _caller(session, grant: tokens.XetGrant) -> auth.Principal:
    """Who the Xet token was issued to, as of now; 401 if their hub token or account is gone."""
    if not grant.token_pk:
        return auth.Principal()
    row = session.get(Token, grant.token_pk)
    user = session.get(User, row.user_id) if row is not None else None
    if user is None or user.disabled:
        raise ApiError(401, "the hub token this Xet token was issued for was revoked, or its account disabled")
    return auth.principal_for(session, user, role=row.role, token_name=row.name)


Grant = Annotated[tokens.XetGrant, Depends(cas_grant)]


def _writer(grant: tokens.XetGrant) -> None:
    if not grant.can_write:
        raise ApiError(403, "this Xet token may only read: ask for a write token (xet-write-token)")


def _hash(text: str, what: str) -> str:
    try:
        from_hex(text)
    except HashStringError as err:
        raise ApiError(400, f"{what}: {err}") from None
    return text


_END, _ABORT = object(), object()
_DEPTH = 4  # batches the event loop may read ahead of the worker consuming them
# The workers that consume uploads: a pool of their own, since each waits on its request's body.
# Nothing on the event loop's side waits for one (the body is handed over without a thread), so
# more uploads than workers queue instead of blocking each other.
_INGEST = ThreadPoolExecutor(32, thread_name_prefix="haven-xet-ingest")


class _Pipe:
    """Batches of a request body, from the event loop to the worker thread consuming them, at
    most `_DEPTH` ahead: the loop awaits room, it never blocks, and needs no thread to hand over."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._room = asyncio.Semaphore(_DEPTH)
        self.closed = False  # the worker is done: it takes nothing more

    async def put(self, item) -> None:
        await self._room.acquire()
        self.end(item)

    def end(self, item) -> None:
        """Hand over `item` without waiting for room (the last one: `_END` or `_ABORT`)."""
        with self._ready:
            self._items.append(item)
            self._ready.notify()

    def get(self):
        with self._ready:
            while not self._items:
                self._ready.wait()
            item = self._items.popleft()
        self._wake(1)
        return item

    def close(self) -> None:
        self.closed = True
        self._wake(_DEPTH)  # a loop awaiting room sees `closed` instead

    def _wake(self, n: int) -> None:
        def release():
            for _ in range(n):
                self._room.release()

        try:
            self._loop.call_soon_threadsafe(release)
        except RuntimeError:  # the loop has closed (shutdown): nobody is waiting
            pass


async def _streamed(request: Request, consume):
    """`consume(parts)` in a worker thread, `parts` iterating the request body as it arrives (in
    batches of about 4 MB, at most a few batches ahead); its result, or its exception. A body over
    the xorb limit is 413; a client gone mid-upload makes `parts` raise, so nothing is kept."""
    pipe = _Pipe(asyncio.get_running_loop())

    def parts():
        while (item := pipe.get()) is not _END:
            if item is _ABORT:
                raise XorbError("the upload was interrupted")
            yield b"".join(item)  # one write and one parse per batch

    def run():
        try:
            return consume(parts())
        finally:
            pipe.close()

    task = asyncio.wrap_future(_INGEST.submit(run))
    batch, batched, total, last = [], 0, 0, _ABORT
    try:
        async for part in request.stream():
            if pipe.closed:
                break
            total += len(part)
            if total > MAX_XORB_BYTES:
                raise ApiError(413, _TOO_BIG)
            batch.append(part)
            batched += len(part)
            if batched >= _FLUSH:
                await pipe.put(batch)
                batch, batched = [], 0
        if batch:
            await pipe.put(batch)
        last = _END
    finally:
        pipe.end(last)
        if last is _ABORT:
            await asyncio.wait([task])
            task.exception()  # retrieved: the request's own error is the answer
    return await task


@router.post(CAS + "/v1/xorbs/{prefix}/{xorb}")
async def upload_xorb(request: Request, prefix: str, xorb: str, grant: Grant) -> dict:
    _writer(grant)
    if prefix != "default":
        raise ApiError(400, f"xorb prefix {prefix!r} is unknown: use 'default'")
    _hash(xorb, "xorb hash")
    store = _store(request)
    with store.sessions() as session:
        if store.has_xorb(session, xorb):
            store.referenced(session, [xorb])  # the client's shard will name it: gc keeps it a while
            received = 0
            async for part in request.stream():  # read (the client sends it all), bounded as below
                received += len(part)
                if received > MAX_XORB_BYTES:
                    raise ApiError(413, _TOO_BIG)
            return {"was_inserted": False}
    try:
        inserted = await _streamed(request, lambda parts: store.put_xorb(xorb, parts, grant.repo_pk))
    except XorbError as err:
        log.warning("xorb %s refused: %s", xorb, err)
        raise ApiError(400, f"xorb {xorb} refused: {err}") from None
    return {"was_inserted": inserted}


@router.head(CAS + "/v1/xorbs/{prefix}/{xorb}")
def head_xorb(request: Request, prefix: str, xorb: str, grant: Grant, session: SessionDep) -> Response:
    from .models import XetXorb

    row = session.get(XetXorb, _hash(xorb, "xorb hash"))
    if prefix != "default" or row is None:
        return Response(status_code=404)
    return Response(status_code=200, headers={"Content-Length": str(row.size)})


@router.post(CAS + "/v1/shards")
async def upload_shard(request: Request, grant: Grant) -> dict:
    _writer(grant)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_SHARD_BYTES:
            raise ApiError(413, f"a shard is at most {MAX_SHARD_BYTES >> 20} MiB: split the upload into several shards")
    store = _store(request)
    try:
        result, records = await asyncio.to_thread(store.register_shard, bytes(body), grant.repo_pk)
    except ShardError as err:
        log.warning("shard refused: %s", err)
        raise ApiError(400, f"shard refused: {err}") from None
    from ..api import lfsrefs

    with store.sessions() as session:
        lfsrefs.grant(session, grant.repo_pk, [r.sha256 for r in records])
        session.commit()
    return {"result": result}


def _servable(session, grant: tokens.XetGrant, sha256: str) -> bool:
    return session.get(RepoLfsObject, (grant.repo_pk, sha256)) is not None


@router.get(CAS + "/v1/reconstructions/{file_id}")
def reconstruction(request: Request, file_id: str, grant: Grant, session: SessionDep) -> dict:
    store = _store(request)
    record = store.file(session, _hash(file_id, "file id"))
    if record is None or not _servable(session, grant, record.sha256):
        raise ApiError(404, f"file {file_id} is not in this repository's Xet store")
    start, end = 0, record.size  # [start, end)
    rng = request.headers.get("range")
    if rng:
        m = RANGE_RE.fullmatch(rng.strip())
        if not m:
            raise ApiError(400, f"unsupported Range {rng!r}: use bytes=START-END")
        start = int(m.group(1))
        end = min(record.size, int(m.group(2)) + 1) if m.group(2) else record.size
        if start >= record.size or start >= end:
            raise ApiError(416, f"Range {rng!r} is outside the file ({record.size} bytes)")
    settings = request.app.state.settings
    terms, fetch_info, offset, first = [], {}, 0, None
    for term in record.terms:
        t_end = offset + term.unpacked_bytes
        if t_end <= start or offset >= end:
            offset = t_end
            continue
        index = store.index(session, to_hex(term.xorb))
        # narrow the term to the chunks that hold [start, end)
        c0, pos = term.start, offset
        while pos + index.unpacked_length(c0, c0 + 1) <= start:
            pos += index.unpacked_length(c0, c0 + 1)
            c0 += 1
        if first is None:
            first = start - pos
        c1, p = c0, pos
        while c1 < term.end and p < end:
            p += index.unpacked_length(c1, c1 + 1)
            c1 += 1
        xh = to_hex(term.xorb)
        terms.append({"hash": xh, "unpacked_length": index.unpacked_length(c0, c1), "range": {"start": c0, "end": c1}})
        b0, b1 = index.packed_range(c0, c1)
        # Haven's own URL signing this exact byte range, on every blob store: a xorb may hold chunks
        # of other repositories' files, and a presigned S3 GET would open the whole xorb.
        url = f"{settings.public_url}{CAS}/v1/fetch/{xh}?{tokens.fetch_query(settings.secret, xh, b0, b1 - 1)}"
        fetch_info.setdefault(xh, []).append(
            {"range": {"start": c0, "end": c1}, "url": url, "url_range": {"start": b0, "end": b1 - 1}}
        )
        offset = t_end
    return {"offset_into_first_range": first or 0, "terms": terms, "fetch_info": fetch_info}


@router.get(CAS + "/v1/fetch/{xorb}")
def fetch_xorb(request: Request, xorb: str, range: str = "", exp: int = 0, sig: str = "") -> Response:
    _only_params(request, ("range", "exp", "sig"))
    _hash(xorb, "xorb hash")
    m = re.fullmatch(r"(\d+)-(\d+)", range)
    if not m or not tokens.check_fetch(request.app.state.settings.secret, xorb, int(m[1]), int(m[2]), exp, sig):
        raise ApiError(403, "this fetch URL is invalid or has expired: ask for the reconstruction again")
    lo, hi = int(m[1]), int(m[2])
    asked = request.headers.get("range")
    if asked:
        r = RANGE_RE.fullmatch(asked.strip())
        if not r or not r[2] or int(r[1]) < lo or int(r[2]) > hi or int(r[1]) > int(r[2]):
            raise ApiError(416, f"Range {asked!r} is not inside the signed range bytes={lo}-{hi}")
        lo, hi = int(r[1]), int(r[2])
    store = _store(request)
    size = store.blobs.size(xorb_key(xorb))
    if hi >= size:
        raise ApiError(416, f"bytes={lo}-{hi} is outside xorb {xorb} ({size} bytes)")
    headers = {"Content-Range": f"bytes {lo}-{hi}/{size}", "Content-Length": str(hi - lo + 1)}
    return StreamingResponse(store.blobs.read(xorb_key(xorb), lo, hi + 1), status_code=206, headers=headers,
                             media_type="application/octet-stream")


@router.get(CAS + "/v1/chunks/{prefix}/{chunk}")
def dedup_query(request: Request, prefix: str, chunk: str, grant: Grant, session: SessionDep) -> Response:
    if prefix not in ("default", "default-merkledb"):
        raise ApiError(400, f"chunk prefix {prefix!r} is unknown: use 'default-merkledb'")
    store = _store(request)
    xorbs = store.dedup_xorbs(session, _hash(chunk, "chunk hash"))
    if not xorbs:
        return Response(status_code=404)
    store.referenced(session, [to_hex(x.xorb) for x in xorbs])  # the client may name them without sending them
    key = secrets.token_bytes(32)
    from .hashing import keyed

    for x in xorbs:
        x.chunks = [(keyed(h, key), s, n) for h, s, n in x.chunks]
    return Response(dedup_shard(xorbs, key), media_type="application/octet-stream")


@router.api_route(CAS + "/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
def no_cas_route() -> None:
    """Any other CAS path (v2 routes, xorb grants ...) is a plain 404: the client falls back to v1."""
    raise NoSuchRoute()


def install(app) -> None:
    """Open the Xet store on `app.state`, let the LFS store serve Xet files by sha256, and add the
    routes (before the API modules: `/api/{plural}/{ns}/{name}/...` routes there are less specific)."""
    from .store import XetObjectSource

    app.state.xet = XetStore(app.state.blobs, app.state.sessionmaker)
    app.state.lfs.add_source(XetObjectSource(app.state.xet))
    app.include_router(router)


def xet_headers(request: Request, session, repo: Repo, sha: str, oid: str) -> dict[str, str]:
    """`X-Xet-Hash` and the token refresh link for an LFS file the CAS can reconstruct (its bytes
    arrived through Xet); nothing for any other file, so clients take the plain download path."""
    record = request.app.state.xet.file_by_sha256(session, oid)
    if record is None:
        return {}
    base = request.app.state.settings.public_url
    plural = "datasets" if repo.type == "dataset" else "models"
    refresh = f"{base}/api/{plural}/{repo.repo_id}/xet-read-token/{sha}"
    return {"X-Xet-Hash": record.hash, "Link": f'<{refresh}>; rel="xet-auth"', "X-Xet-Refresh-Route": refresh}
