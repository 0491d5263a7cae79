"""Uploads: `POST /api/validate-yaml`, `/preupload/{rev}` and the NDJSON `/commit/{rev}`.

The commit route is the one `async` route here: it parses its NDJSON body line by line as it
arrives (up to 256 MB, regular files base64 inside), which a whole-body JSON route cannot do. The
caller and the repository are checked (dependencies) before a byte of the body is read; the
work after the body runs in a worker thread. Once the branch has moved, nothing fails the
request: LFS objects are listed for the repository before, and the index is refreshed in a
session of its own after (`index.refresh_apart`).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from .. import auth, storage
from ..db import Repo
from ..storage.attributes import is_lfs_tracked
from ..storage.hooks.card_metadata import CARD_PATH, card_error
from . import index, lfsrefs
from .bodies import PreuploadBody, SafeJsonRoute, ValidateYamlBody, parse_json
from .common import ApiError, raw_ref, repo_url
from .deps import CallerDep, SessionDep, WritableRepo

router = APIRouter(prefix="/api", route_class=SafeJsonRoute)
LFS_THRESHOLD = 10 * 1024 * 1024  # files at least this large go through LFS, as on the Hub
MAX_REGULAR_FILE = LFS_THRESHOLD  # a larger regular file in an NDJSON commit is refused
MAX_LINE = (MAX_REGULAR_FILE + 2) // 3 * 4 + 64 * 1024  # base64 of the largest file + JSON
MAX_COMMIT_BODY = 256 << 20  # regular files travel base64 inside the NDJSON body, held in memory


@router.post("/validate-yaml")
def validate_yaml(body: ValidateYamlBody):
    """Check a README's YAML front matter (in a worker thread; the body is at most 1 MB)."""
    error = card_error(body.content.encode())
    if error:
        return JSONResponse({"errors": [{"message": error}], "warnings": []}, status_code=400)
    return {"errors": [], "warnings": []}


# -- preupload ------------------------------------------------------------------------------------


def looks_binary(sample: bytes) -> bool:
    if b"\x00" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(sample) - 4  # a multi-byte character cut at the end is fine
    return False


def gitattributes_at(st, repo: Repo, sha: str | None) -> str:
    """The text of `.gitattributes` at commit `sha` ("" when there is none, or no commit yet)."""
    if not sha:
        return ""
    try:
        return st.read_blob(repo.type, repo.repo_id, sha, ".gitattributes").decode("utf-8", "replace")
    except storage.EntryNotFound:
        return ""


def upload_mode(attrs: str, path: str, size: int, sample: bytes) -> str:
    """'lfs' or 'regular' for a file about to be uploaded, as the Hub decides: empty files are
    regular; large files, files `.gitattributes` tracks with LFS and binary files go to LFS."""
    if size == 0:
        return "regular"
    if size >= LFS_THRESHOLD or is_lfs_tracked(attrs, path) or looks_binary(sample[:512]):
        return "lfs"
    return "regular"


@router.post("/{plural}/{ns}/{name}/preupload/{rest:path}")
def preupload(request: Request, repo: WritableRepo, rest: str, body: PreuploadBody) -> dict:
    rev = raw_ref(request, repo.repo_id, "preupload")
    st = request.app.state.repos
    try:
        sha = st.resolve(repo.type, repo.repo_id, rev)
    except storage.RevisionNotFound:
        sha = None  # a branch about to be created: nothing to compare against
    attrs = gitattributes_at(st, repo, sha)
    out = []
    for f in body.files:
        path, size = f.path, f.size or 0
        try:
            sample = base64.b64decode(f.sample)
        except (binascii.Error, ValueError) as err:
            raise ApiError(400, f"'sample' of {path!r} is not valid base64") from err
        mode = upload_mode(attrs, path, size, sample)
        item = {"path": path, "uploadMode": mode, "shouldIgnore": False}
        if sha:
            try:
                entry = st.entry(repo.type, repo.repo_id, sha, path)
            except (storage.EntryNotFound, storage.InvalidPathError):
                entry = None
            if entry is not None and entry.type == "file":
                item["oid"] = entry.lfs.oid if entry.lfs else entry.oid
        out.append(item)
    return {"files": out, "commitOid": sha}


# -- commit ---------------------------------------------------------------------------------------


class NdjsonCommit:
    """An NDJSON commit parsed line by line as the body arrives: `feed(line)`, then `finish()`.

    Only decoded operations are kept, never the raw body; ApiError(400/413/422) on any defect."""

    def __init__(self):
        self.header: dict | None = None
        self.ops: list = []
        self.lineno = 0

    def feed(self, line: bytes) -> None:
        self.lineno += 1
        lineno = self.lineno
        if not line.strip():
            return
        if len(line) > MAX_LINE:
            raise ApiError(
                413,
                f"line {lineno} of the commit is over {MAX_LINE} bytes: files over "
                f"{MAX_REGULAR_FILE // (1 << 20)} MB must be uploaded with LFS (lfsFile)",
            )
        try:
            item = parse_json(line)
        except ApiError as err:
            raise ApiError(400, f"malformed NDJSON at line {lineno}: {err.message}; send one JSON object per line") from err
        if not isinstance(item, dict) or "key" not in item or not isinstance(item.get("value"), dict):
            raise ApiError(400, f'line {lineno} must be an object {{"key": ..., "value": {{...}}}}')
        key, value = item["key"], item["value"]
        if key == "header":
            if self.header is not None:
                raise ApiError(400, "the commit has two header lines")
            self.header = value
            return
        if self.header is None:
            raise ApiError(400, 'the first line of a commit must be {"key": "header", ...}')
        path = value.get("path")
        if not isinstance(path, str) or not path:
            raise ApiError(400, f"line {lineno} ({key}) needs a non-empty 'path'")
        if key == "file":
            self.ops.append(_file_op(path, value, lineno))  # a card is checked in a worker (_commit)
        elif key == "lfsFile":
            oid = value.get("oid")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str):
                raise ApiError(400, f"line {lineno}: lfsFile needs algo 'sha256' and an 'oid'")
            size = value.get("size")  # None: read from the store once the caller may reference it
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                raise ApiError(400, f"line {lineno}: lfsFile 'size' must be a non-negative integer")
            self.ops.append(storage.AddLfsFile(path=path, oid=oid, size=size))
        elif key == "deletedFile":
            self.ops.append(storage.DeleteFile(path=path))
        elif key == "deletedFolder":
            self.ops.append(storage.DeleteFolder(path=path))
        else:
            raise ApiError(
                400,
                f"line {lineno}: unknown operation {key!r} (use file, lfsFile, deletedFile, deletedFolder)",
            )

    def finish(self) -> tuple[dict, list]:
        if self.header is None:
            raise ApiError(400, 'empty commit: send a {"key": "header", "value": {"summary": ...}} line first')
        return self.header, self.ops


def parse_ndjson(raw: bytes) -> tuple[dict, list]:
    """(header, storage operations) from a whole NDJSON commit body; ApiError on any defect."""
    parser = NdjsonCommit()
    for line in raw.split(b"\n"):
        parser.feed(line)
    return parser.finish()


def _file_op(path: str, value: dict, lineno: int) -> storage.AddFile:
    encoding = value.get("encoding", "base64")
    content = value.get("content", "")
    if not isinstance(content, str):
        raise ApiError(400, f"line {lineno}: 'content' of {path!r} must be a string")
    if encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ApiError(400, f"line {lineno}: 'content' of {path!r} is not valid base64") from err
    elif encoding in ("utf-8", "utf8", None):
        data = content.encode()
    else:
        raise ApiError(400, f"line {lineno}: unsupported encoding {encoding!r}; use base64")
    if len(data) > MAX_REGULAR_FILE:
        raise ApiError(
            413,
            f"{path!r} is {len(data) / 1e6:.1f} MB: files over {MAX_REGULAR_FILE // (1 << 20)} MB "
            "must be uploaded with LFS (preupload answers uploadMode 'lfs' for them; with git, "
            "`git lfs track` them)",
        )
    return storage.AddFile(path=path, content=data)


@router.post("/{plural}/{ns}/{name}/commit/{rest:path}")
async def commit(
    request: Request, repo: WritableRepo, session: SessionDep, caller: CallerDep, rest: str
) -> dict:
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        raise ApiError(400, "pull requests are not supported by this hub: commit to a branch instead")
    await run_in_threadpool(session.commit)  # ends the lookup's transaction: no connection held while the body streams
    parser = await _read_ndjson(request)
    return await run_in_threadpool(_commit, request, session, caller, repo, parser)


async def _read_ndjson(request: Request) -> NdjsonCommit:
    parser = NdjsonCommit()
    pending, total = bytearray(), 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_COMMIT_BODY:
            raise ApiError(
                413,
                f"commit body over {MAX_COMMIT_BODY >> 20} MB: split the upload into several "
                "commits, and send big files through LFS",
            )
        pending += chunk
        if b"\n" not in chunk:
            if len(pending) > MAX_LINE:
                parser.feed(pending)  # raises: a line this long is refused
            continue
        *lines, rest = pending.split(b"\n")
        pending = bytearray(rest)
        for line in lines:
            if len(line) > 1 << 20:
                await run_in_threadpool(parser.feed, line)  # big base64 decode off the event loop
            else:
                parser.feed(line)
    parser.feed(pending)
    return parser


def _commit(request: Request, session: Session, p: auth.Principal, repo: Repo, parser: NdjsonCommit) -> dict:
    branch = raw_ref(request, repo.repo_id, "commit")
    header, ops = parser.finish()
    summary = header.get("summary") or ""
    if not isinstance(summary, str):
        summary = ""
    return commit_files(
        request, session, p, repo, branch, ops, summary=summary,
        description=header.get("description") or "", parent=header.get("parentCommit") or None,
    )


def commit_files(
    request: Request, session: Session, p: auth.Principal, repo: Repo, branch: str, ops: list, *,
    summary: str, description: str = "", parent: str | None = None,
) -> dict:
    """One commit of `ops` on `branch`, by `p`, for the API and the web pages alike: the card is
    checked, LFS objects must be ones `p` may reference from `repo`, and with `parent` the branch
    head must still be that commit (StaleParentError otherwise). Returns the API's answer."""
    st = request.app.state.repos
    for op in ops:
        if isinstance(op, storage.AddFile) and op.path.strip("/") == CARD_PATH:
            error = card_error(op.content)
            if error:
                raise ApiError(400, error)
    ops = _with_lfs_sizes(session, p, repo, ops, request.app.state.lfs)
    lfs_oids = {op.oid for op in ops if isinstance(op, storage.AddLfsFile)}
    if not summary.strip():
        summary = "Upload files with haven"
    branches, _ = st.refs(repo.type, repo.repo_id)
    if not any(b.name == branch for b in branches):
        raise ApiError(
            404,
            f"branch {branch!r} not found in {repo.repo_id}: create it first (create_branch), "
            "commits go to branches only",
            "RevisionNotFound",
        )
    # Listed before the branch moves, so no database failure can follow the ref update. Should the
    # commit then fail, the repository lists objects its writer could reference anyway (grantable).
    lfsrefs.grant(session, repo.id, lfs_oids)
    session.commit()
    oid = st.commit(
        repo.type,
        repo.repo_id,
        branch,
        ops,
        message=summary,
        description=description,
        author=p.name,
        author_email=p.user.email or f"{p.name}@users.noreply.haven",
        parent=parent,
    )
    if branch == "main":
        index.refresh_apart(request.app.state.sessionmaker, st, repo.type, repo.repo_id)
    url = f"{repo_url(request, repo.type, repo.repo_id)}/commit/{oid}"
    return {"commitOid": oid, "commitUrl": url, "commitMessage": summary, "branch": quote(branch)}


def _with_lfs_sizes(session, p, repo, ops: list, lfs) -> list:
    """`ops` with every lfsFile checked: its object must be one the caller may reference from
    this repository (uploaded through it, or readable through another). Any other oid gets the
    same 422 whether the hub stores it elsewhere or never saw it, so a commit reveals nothing
    about other repositories. A missing size is read from the store."""
    oids = {op.oid for op in ops if isinstance(op, storage.AddLfsFile)}
    allowed = lfsrefs.grantable(session, p, repo.id, oids) if oids else set()
    out = []
    for op in ops:
        if isinstance(op, storage.AddLfsFile):
            if op.oid not in allowed or not lfs.has(op.oid):
                raise ApiError(
                    422,
                    f"LFS object {op.oid} of {op.path!r} was not uploaded to {repo.repo_id}: upload it "
                    "through this repository's LFS batch API first",
                )
            if op.size is None:
                op = storage.AddLfsFile(path=op.path, oid=op.oid, size=lfs.size(op.oid))
        out.append(op)
    return out
