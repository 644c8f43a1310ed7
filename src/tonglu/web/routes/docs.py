"""`/docs`: the Swagger UI for the API, served from this host only.

FastAPI's built-in page loads Swagger UI's JavaScript and CSS from a public CDN (a third party
could serve script into a page that holds an admin's session, and an offline site has no docs).
Here the assets come from the pinned `swagger-ui-py` wheel (Swagger UI 5, which reads the
OpenAPI 3.1 that FastAPI writes; `swagger-ui-bundle`'s 4.15 cannot) and the page runs under a CSP
that allows scripts from this origin only (the start-up code is a static file, not inline).
`/openapi.json` is unchanged.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
INIT_JS = Path(__file__).resolve().parent.parent / "static" / "docs.js"
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>同录 Tonglu API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body></html>
"""


def _register_rules() -> None:
    from tonglu.web import rbac

    rbac.MATRIX.setdefault(("GET", "/docs/assets/{}"), rbac.public())


_register_rules()


def assets_dir() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("swagger_ui") / "static"))


@router.get("/docs")
def docs() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-store"})


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> FileResponse:
    if name == "init.js":
        return FileResponse(INIT_JS, media_type="text/javascript; charset=utf-8")
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"no such asset {name!r}")
    return FileResponse(assets_dir() / name, media_type=ASSETS[name])
