"""Organisation pages (filled in below)."""

from __future__ import annotations

from fastapi import APIRouter

from .render import WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
