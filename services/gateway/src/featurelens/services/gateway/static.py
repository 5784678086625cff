"""The explorer's static files at /, with index.html for any other path outside /api (the explorer
routes its pages in the browser, so /features/12 must load the app, not a 404)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: Types some systems' mime tables lack or get wrong (a module script served as text/plain is refused).
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".ico": "image/x-icon",
}


def register_content_types() -> None:
    for suffix, content_type in CONTENT_TYPES.items():
        mimetypes.add_type(content_type, suffix)


class ExplorerFiles(StaticFiles):
    """Files of ``directory``; index.html for a path that names no file, except under api/."""

    def __init__(self, directory: Path) -> None:
        register_content_types()
        super().__init__(directory=directory, html=True)

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as error:
            if error.status_code != 404 or path == "api" or path.startswith("api/"):
                raise
            if scope["method"] not in ("GET", "HEAD"):
                raise
            return await super().get_response("index.html", scope)
