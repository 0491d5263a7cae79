"""Publishing from the browser: /new, upload, edit and delete files, repository settings."""

from __future__ import annotations

from fastapi import APIRouter

from .render import WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
