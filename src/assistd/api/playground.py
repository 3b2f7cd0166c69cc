"""The Playground web page: static files served at /playground, outside /v1 and without auth.

The page itself asks for the API key and sends it with every /v1 call it makes."""

from __future__ import annotations

from pathlib import Path

from litestar import get
from litestar.response import File, Redirect
from litestar.static_files import create_static_files_router

PLAYGROUND_DIR = Path(__file__).resolve().parent.parent / "playground"
NO_CACHE = {"Cache-Control": "no-cache"}


@get("/", include_in_schema=False, sync_to_thread=False)
def root() -> Redirect:
    return Redirect("/playground")


@get("/playground", include_in_schema=False, sync_to_thread=False)
def playground_page() -> File:
    return File(
        PLAYGROUND_DIR / "index.html",
        filename="index.html",
        media_type="text/html",
        content_disposition_type="inline",
        headers=NO_CACHE,
    )


playground_assets = create_static_files_router(
    path="/playground/static",
    directories=[PLAYGROUND_DIR],
    include_in_schema=False,
    cache_control=None,
    name="playground-static",
)

PLAYGROUND_HANDLERS = [root, playground_page, playground_assets]
