"""The two browser pages: the student chat (/app, also /chat) and the counselor review console (/console).

Plain HTML + vanilla JS + CSS from assistant/api/static (no build step), served under /static. The pages are
public; every API call they make carries the API key the user typed (Authorization: Bearer …). No inline
script or style, so the pages get a strict Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/app")
@router.get("/chat")
def chat_page() -> FileResponse:
    """The student chat page."""
    return _page("chat.html")


@router.get("/console")
def console_page() -> FileResponse:
    """The counselors' review console."""
    return _page("console.html")


def install(app: FastAPI) -> None:
    """Add the page routes and serve the static files (JS, CSS) under /static."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
