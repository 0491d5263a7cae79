"""File downloads: `HEAD`/`GET /{[datasets/]}{ns}/{name}/resolve/{rev}/{path}`.

Headers the client reads: `X-Repo-Commit` (the resolved sha), `ETag` (git blob sha1, or the
sha256 for LFS files), `X-Linked-Etag` and `X-Linked-Size` for LFS files, `Content-Length`.
`Range: bytes=N-` answers 206 with `Content-Range`. LFS content streams from disk
(`FileResponse`, sendfile-style chunks), never through memory; with an S3 blob store a GET is a
302 to a presigned URL of the bucket (the bytes do not pass through Haven, the client sends its
Range there); objects only an object source holds (Xet files) stream from it.

User content never runs on the hub's origin: every file response carries
`Content-Security-Policy: default-src 'none'; sandbox` and `X-Content-Type-Options: nosniff`,
and only types a browser shows without running anything (`INLINE_TYPES`) are served inline;
everything else (HTML, SVG, JavaScript, XML ...) is an attachment. The file name goes into
`Content-Disposition` per RFC 6266 / 5987: an ASCII fallback and the UTF-8 name percent-encoded.

The routes are plain `def` (git reads and the database run in FastAPI's threadpool); the download
counter is bumped in the request's session, committed before the response starts.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import storage
from ..db import Repo
from ..xet.cas import xet_headers
from . import lfsrefs
from .common import SANDBOX, ApiError, BigFileResponse, raw_tail
from .deps import ReadableDataset, ReadableModel, SessionDep

router = APIRouter()
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
URL_TTL = 15 * 60  # seconds a presigned download URL (S3 blob store) stays valid
# types a browser displays without running scripts; any other type is served as an attachment
INLINE_TYPES = frozenset({
    "text/plain", "text/markdown", "text/csv", "application/json",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "audio/mpeg", "audio/wav",
    "audio/x-wav", "audio/ogg", "audio/flac", "video/mp4", "video/webm",
})


def content_disposition(filename: str, media_type: str) -> str:
    """`inline` or `attachment`, with an ASCII `filename` fallback and the exact name in
    `filename*` (RFC 6266 / 5987), so no byte outside printable ASCII reaches the header."""
    kind = "inline" if media_type in INLINE_TYPES else "attachment"
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in ascii_name).strip()
    return f"{kind}; filename=\"{ascii_name or 'download'}\"; filename*=UTF-8''{quote(filename, safe='')}"


def byte_range(rng: str, size: int, headers: dict) -> tuple[int, int]:
    """(start, end inclusive) of a `Range: bytes=...` header over `size` bytes; 416 (with
    `Content-Range: bytes */size` in `headers`) for a range Haven does not serve."""
    m = RANGE_RE.fullmatch(rng.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise ApiError(416, f"unsupported Range {rng!r}: use bytes=START-[END]")
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    else:  # suffix range: the last N bytes
        start, end = max(0, size - int(m.group(2))), size - 1
    if start >= size or start > end:
        headers["Content-Range"] = f"bytes */{size}"
        raise ApiError(416, f"Range {rng!r} is outside the file ({size} bytes)", headers=headers)
    return start, end


def stream_object(request: Request, oid: str, headers: dict, media_type: str) -> Response:
    """An LFS object's bytes (honouring Range): a local file as a FileResponse, else streamed from
    the LFS store (a source, or a blob store without local files)."""
    lfs = request.app.state.lfs
    path = lfs.local_path(oid)
    if path is not None:
        return BigFileResponse(path, headers=headers, media_type=media_type)
    size = lfs.size(oid)
    rng = request.headers.get("range")
    if rng and size:
        start, end = byte_range(rng, size, headers)
        headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}", "Content-Length": str(end + 1 - start)}
        return StreamingResponse(lfs.read(oid, start, end + 1), 206, headers=headers, media_type=media_type)
    headers = {**headers, "Content-Length": str(size)}
    return StreamingResponse(lfs.read(oid), headers=headers, media_type=media_type)


def _counted(repo_type: str, path: str) -> bool:
    """One download per model fetch (its config.json), as the Hub counts; every file for datasets."""
    return path == "config.json" if repo_type == "model" else True


def _resolve(request: Request, session: Session, repo: Repo):
    """(sha, path, entry, headers, content type) for a resolve URL, raising the right 404s."""
    repo_id = repo.repo_id
    rev, path = raw_tail(request, repo_id, "resolve")
    st = request.app.state.repos
    sha = st.resolve(repo.type, repo_id, rev)
    headers = {
        "X-Repo-Commit": sha,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private" if repo.private else "public",
    }
    try:
        entry = st.entry(repo.type, repo_id, sha, path)
    except (storage.EntryNotFound, storage.InvalidPathError) as err:
        raise ApiError(404, f"{path} not found in {repo_id} at {rev}", "EntryNotFound", headers=headers) from err
    if entry.type != "file":
        raise ApiError(404, f"{path} is a folder in {repo_id}, not a file", "EntryNotFound", headers=headers)
    if entry.lfs is not None and not lfsrefs.listed(session, repo.id, [entry.lfs.oid]):
        # a pointer pushed to an object never uploaded through this repo serves nothing
        raise ApiError(
            404,
            f"the LFS object of {path} was never uploaded to {repo_id}: push it with "
            "`git lfs push --all` or upload the file again",
            "EntryNotFound",
            headers=headers,
        )
    if entry.lfs is not None:
        headers["ETag"] = f'"{entry.lfs.oid}"'
        headers["X-Linked-Etag"] = f'"{entry.lfs.oid}"'
        headers["X-Linked-Size"] = str(entry.lfs.size)
        headers.update(xet_headers(request, session, repo, sha, entry.lfs.oid))  # only for files the CAS serves
    else:
        headers["ETag"] = f'"{entry.oid}"'
    ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
    headers["Content-Disposition"] = content_disposition(path.rsplit("/", 1)[-1], ctype)
    headers["Content-Security-Policy"] = SANDBOX
    return sha, path, entry, headers, ctype


def _serve(request: Request, session: Session, repo: Repo) -> Response:
    sha, path, entry, headers, ctype = _resolve(request, session, repo)
    lfs = request.app.state.lfs
    if request.method == "HEAD":
        headers["Content-Length"] = str(entry.size)
        return Response(status_code=200, headers=headers, media_type=ctype)
    rng = request.headers.get("range")
    if (not rng or rng.strip() in ("bytes=0-", "bytes=0-0")) and _counted(repo.type, path):
        session.execute(update(Repo).where(Repo.id == repo.id).values(downloads=Repo.downloads + 1))
    if entry.lfs is not None:
        if not lfs.has(entry.lfs.oid):
            raise ApiError(
                404,
                f"the LFS object of {path} is missing from this hub: push it again with git lfs push --all",
                "EntryNotFound",
                headers=headers,
            )
        url = lfs.download_url(entry.lfs.oid, expires=URL_TTL, filename=path.rsplit("/", 1)[-1])
        if url is not None:  # the bucket serves the bytes (and the client's Range) itself
            return RedirectResponse(url, status_code=302, headers=headers)
        return stream_object(request, entry.lfs.oid, headers, ctype)
    data = request.app.state.repos.read_blob(repo.type, repo.repo_id, sha, path)
    if rng:
        size = len(data)
        start, end = byte_range(rng, size, headers)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(data[start : end + 1], status_code=206, headers=headers, media_type=ctype)
    return Response(data, headers=headers, media_type=ctype)


@router.api_route("/datasets/{ns}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_dataset(request: Request, repo: ReadableDataset, session: SessionDep, rest: str) -> Response:
    return _serve(request, session, repo)


@router.api_route("/{ns}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_model(request: Request, repo: ReadableModel, session: SessionDep, rest: str) -> Response:
    return _serve(request, session, repo)
