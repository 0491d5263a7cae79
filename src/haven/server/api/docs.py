"""Interactive API docs at `/api/docs`, served entirely by the hub (no CDN: hubs often run offline).

The Swagger UI files come from the `swagger-ui-bundle-v2` package (Swagger UI's dist folder,
Apache-2.0; it imports as `swagger_ui_bundle`). Without it, `/api/docs` answers 501 saying what
to install; the OpenAPI schema at `/api/openapi.json` needs nothing.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from .common import ApiError, NoSuchRoute

router = APIRouter()
ASSETS = {  # file of Swagger UI's dist folder -> media type
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
PACKAGE = "swagger-ui-bundle-v2"


def swagger_folder() -> Path | None:
    """Swagger UI's dist folder from the installed package, or None."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    folder = Path(str(swagger_ui_path))
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def _missing() -> ApiError:
    return ApiError(
        501,
        f"the API docs page needs the {PACKAGE} package (Swagger UI, served by this hub so the page "
        f"works offline): pip install {PACKAGE}. The OpenAPI schema is at /api/openapi.json.",
    )


@router.get("/api/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    if swagger_folder() is None:
        raise _missing()
    root = urlsplit(request.app.state.settings.public_url).path.rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}/api/openapi.json",
        title="Haven hub API",
        swagger_js_url=f"{root}/api/docs/assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/api/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/api/docs/assets/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # else Swagger UI asks an outside validator
    )


@router.get("/api/docs/assets/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NoSuchRoute()
    folder = swagger_folder()
    if folder is None:
        raise _missing()
    return FileResponse(folder / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})
