"""Request bodies: bounded, depth-checked JSON, and the Pydantic models of the JSON routes.

Every JSON body is parsed by `parse_json`, off the event loop: a nesting deeper than
`MAX_JSON_DEPTH` is refused (400) before `json.loads` sees it, so 100,000 nested brackets cost a
linear scan, not a stack overflow. Routes with a Pydantic body get this through `SafeJsonRoute`
(set as each router's `route_class`); paths-info, which takes a form or JSON, reads its body in a
dependency (`read_json_object`), and the NDJSON commit parses each line with `parse_json`.
Pydantic validation errors become the 400s clients read (see the app's handler, and
`lfs.LfsRoute` for the LFS-shaped ones of the batch API).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool

from .common import ApiError, read_body

MAX_JSON_DEPTH = 64  # the Hub's request bodies nest 3 or 4 levels
MAX_BODY = 16 << 20  # any request body, except the routes that bound their own (app.BodyLimit)
MAX_YAML_BODY = 1 << 20  # validate-yaml: model cards are far under 1 MB
# preupload: huggingface_hub asks about 256 files at a time (~200 KB with their samples); the body
# is parsed in a worker but validated on the event loop, which a 20,000-file body held for 0.1 s
MAX_PREUPLOAD_FILES = 1000
MAX_PREUPLOAD_BODY = 1 << 20

_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


def json_depth(raw: bytes) -> int:
    """The deepest bracket nesting of JSON text `raw`, brackets inside strings not counted (or,
    when `raw` has at most MAX_JSON_DEPTH opening brackets at all, their count).

    Linear time in numpy: escapes go first (so every quote left delimits a string), a running
    count of quotes marks what is inside strings, and a running sum of the brackets outside
    gives the depth."""
    opening = raw.count(b"[") + raw.count(b"{")
    if opening <= MAX_JSON_DEPTH:
        return opening  # an upper bound, and within the limit: no need to look closer
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")  # escaped backslashes first
    codes = np.frombuffer(unescaped, dtype=np.uint8)
    if not codes.size:
        return 0
    steps = _STEP[codes]
    steps[(np.cumsum(codes == ord('"'), dtype=np.int32) & 1).astype(bool)] = 0  # inside a string
    return max(0, int(np.cumsum(steps, dtype=np.int32).max()))


def too_deep(depth: int) -> str:
    return (
        f"the JSON body nests {depth} levels deep; this hub takes at most {MAX_JSON_DEPTH}: "
        "send flatter JSON"
    )


def parse_json(raw: bytes | str) -> Any:
    """`json.loads(raw)` with the depth bound: ApiError(400) for deep or invalid JSON."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, too_deep(depth))
    try:
        return json.loads(data)
    except RecursionError as err:  # unreachable with the bound above; never a 500
        raise ApiError(400, too_deep(depth)) from err
    except ValueError as err:
        raise ApiError(400, f"the request body is not valid JSON: {err}") from err


async def read_json_object(request: Request) -> dict:
    """The body as a JSON object; an empty body is `{}`."""
    raw = await read_body(request)
    if not raw.strip():
        return {}
    body = await run_in_threadpool(parse_json, raw)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


class _SafeJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                self._json = await run_in_threadpool(parse_json, raw)
            except ApiError as err:
                if err.message.startswith("the request body is not valid JSON"):
                    # FastAPI answers JSONDecodeError as a validation error (our 400 handler)
                    raise json.JSONDecodeError(err.message, raw.decode("utf-8", "replace"), 0) from err
                raise HTTPException(err.status, err.message) from err
        return self._json


def validation_message(errors: list[dict]) -> str:
    """One line naming every field a validation error is about (`name: Field required; ...`)."""
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "invalid request: " + "; ".join(parts)


def validated(model: type[BaseModel], data: Any) -> Any:
    """`model` validated from `data` read by hand (a form, say): a failure is the same 400 as for
    a declared body (RequestValidationError, formatted by the app)."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise RequestValidationError(err.errors(include_url=False)) from err


class SafeJsonRoute(APIRoute):
    """An APIRoute whose JSON body is parsed by `parse_json` in a worker thread."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route_handler(request: Request):
            return await handler(_SafeJsonRequest(request.scope, request.receive))

        return route_handler


# -- the bodies ---------------------------------------------------------------------------------

NonNegative = Annotated[int, Field(ge=0, strict=True)]


class ValidateYamlBody(BaseModel):
    content: str = Field(description="the README.md text whose YAML front matter is checked")
    repoType: str | None = Field(default=None, description="model or dataset")


class PreuploadFile(BaseModel):
    path: str
    sample: str = Field(default="", description="base64 of the file's first 512 bytes")
    size: NonNegative | None = Field(default=None, description="the file's size in bytes")


class PreuploadBody(BaseModel):
    files: list[PreuploadFile] = Field(
        max_length=MAX_PREUPLOAD_FILES, description=f"at most {MAX_PREUPLOAD_FILES} files per request"
    )


class CreateBranchBody(BaseModel):
    startingPoint: str | None = Field(default=None, description="the revision to branch from (default main)")


class CreateTagBody(BaseModel):
    tag: str = Field(min_length=1, description="the name of the tag to create")
    message: str | None = Field(default=None, description="makes an annotated tag")


# -- repositories: the Hub's /api/repos/* and settings bodies. Fields the Hub takes and this hub
# does not (resourceGroupId, region, a Space's sdk/hardware ...) are refused by name (extra="forbid"),
# never ignored.


def _repo_type(value: str | None) -> str | None:
    if value is not None and value not in ("model", "dataset"):
        raise PydanticCustomError(
            "repo_type", "unsupported repository type {value}: this hub serves 'model' and 'dataset'",
            {"value": repr(value)},
        )
    return value


class RepoNameBody(BaseModel):
    """A repository named the Hub's way: `name` (or `namespace/name`) and `organization`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="the repository name, or namespace/name")
    organization: str | None = Field(default=None, description="the namespace (default: the caller)")
    type: str | None = Field(default=None, description="model (default) or dataset")

    _check_type = field_validator("type")(_repo_type)

    def repo_id(self, caller_name: str) -> str:
        ns, name = self.organization or caller_name, self.name
        if "/" in name:
            ns, _, name = name.partition("/")
        return f"{ns}/{name}"


class Visibility(BaseModel):
    """`visibility` ('public'/'private'), or the older boolean `private`; `visibility` wins."""

    private: bool | None = Field(default=None, description="older clients' form of visibility")
    visibility: Literal["public", "private"] | None = None

    def is_private(self) -> bool:
        return self.visibility == "private" if self.visibility is not None else bool(self.private)


class CreateRepoBody(RepoNameBody, Visibility):
    pass


class DeleteRepoBody(RepoNameBody):
    pass


class MoveRepoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fromRepo: str = Field(min_length=1, description="namespace/name of the repository to move")
    toRepo: str = Field(min_length=1, description="its new namespace/name")
    type: str | None = Field(default=None, description="model (default) or dataset")

    _check_type = field_validator("type")(_repo_type)


class RepoSettingsBody(Visibility):
    model_config = ConfigDict(extra="forbid")
    gated: bool | str | None = Field(default=None, description="only false: this hub has no gated repos")


class PathsInfoBody(BaseModel):
    """paths-info: a form (what huggingface_hub sends) or JSON; unknown fields are ignored as the
    Hub does (the client sends none)."""

    paths: list[str] = Field(default_factory=list, description="file paths in the repository")
    expand: bool = Field(default=False, description="add each file's last commit")


# -- Git LFS (batch API and verify): errors are LFS-shaped ({"message"}), see lfs.LfsRoute


class LfsBatchBody(BaseModel):
    """The batch request as git-lfs and huggingface_hub send it. `transfers` and `ref` are
    accepted and need nothing: the answer is always the `basic` transfer, which every client
    speaks, and access is per repository, not per ref."""

    operation: Literal["upload", "download"]
    objects: list[Any] | None = Field(default=None, description="[{oid, size}]; a bad one gets its own error")
    transfers: list[str] | None = None
    ref: dict | None = None
    hash_algo: str = "sha256"


class LfsObjectBody(BaseModel):
    """verify: the object an upload stored."""

    # `$` is the end of the text in pydantic's (Rust) regex engine: no trailing newline passes
    oid: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256, 64 hex digits")
    size: NonNegative


__all__ = [
    "MAX_JSON_DEPTH", "MAX_YAML_BODY", "json_depth", "parse_json", "read_json_object",
    "validation_message", "validated", "SafeJsonRoute", "ValidateYamlBody", "PreuploadFile", "PreuploadBody",
    "CreateBranchBody", "CreateTagBody", "RepoNameBody", "CreateRepoBody", "DeleteRepoBody", "MoveRepoBody",
    "RepoSettingsBody", "PathsInfoBody", "LfsBatchBody", "LfsObjectBody",
]
