"""Request bodies: bounded, depth-checked JSON, and the Pydantic models of the JSON routes.

Every JSON body is parsed by `parse_json`, off the event loop: a nesting deeper than
`MAX_JSON_DEPTH` is refused (400) before `json.loads` sees it, so 100,000 nested brackets cost a
linear scan, not a stack overflow. Routes with a Pydantic body get this through `SafeJsonRoute`
(set as each router's `route_class`); routes that read their body themselves call `read_json`.
Pydantic validation errors become the 400s clients read (see the app's handler).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import HTTPException, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .common import ApiError, read_body

MAX_JSON_DEPTH = 64  # the Hub's request bodies nest 3 or 4 levels
MAX_YAML_BODY = 1 << 20  # validate-yaml: model cards are far under 1 MB

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


async def read_json(request: Request, limit: int | None = None) -> Any:
    """The request's JSON body (any JSON value), bounded in size and depth, parsed off the loop."""
    raw = await (read_body(request) if limit is None else read_body(request, limit))
    return await run_in_threadpool(parse_json, raw)


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
    files: list[PreuploadFile]


class CreateBranchBody(BaseModel):
    startingPoint: str | None = Field(default=None, description="the revision to branch from (default main)")


class CreateTagBody(BaseModel):
    tag: str = Field(min_length=1, description="the name of the tag to create")
    message: str | None = Field(default=None, description="makes an annotated tag")


__all__ = [
    "MAX_JSON_DEPTH", "MAX_YAML_BODY", "json_depth", "parse_json", "read_json", "read_json_object",
    "SafeJsonRoute", "ValidateYamlBody", "PreuploadFile", "PreuploadBody", "CreateBranchBody", "CreateTagBody",
]
