"""``GET /docs``: Swagger UI over ``/openapi.json``, served from the installed
``swagger_ui_bundle`` package, so the page works on an air-gapped box: it
references only the daemon's own paths, and the online validator badge (the
one request Swagger UI would make elsewhere) is switched off.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from .errors import NotFound
from .openapi import OPENAPI_PATH, operation

DOCS_PATH = "/docs"
STATIC_PREFIX = f"{DOCS_PATH}/static/"
TAGS = ("Documentation",)
# The files the page uses, and nothing else of the package's folder.
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
ASSET_DIR = Path(str(swagger_ui_path))
# The bundle's version is in its folder name (swagger-ui-5.31.0): the files never
# change under one name, so browsers may keep them.
_CACHE = {"Cache-Control": "public, max-age=604800, immutable"}

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>lstm-predictor API</title>
  <link rel="stylesheet" href="{STATIC_PREFIX}swagger-ui.css">
  <link rel="icon" type="image/png" href="{STATIC_PREFIX}favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{STATIC_PREFIX}favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{STATIC_PREFIX}swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{OPENAPI_PATH}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    }});
  </script>
</body>
</html>
"""

routes = web.RouteTableDef()


@routes.get(DOCS_PATH)
@operation(media_type="text/html", tags=TAGS)
async def docs_page(request: web.Request) -> web.Response:
    """Swagger UI for this daemon's OpenAPI document."""
    return web.Response(text=PAGE, content_type="text/html")


@routes.get(STATIC_PREFIX + "{filename}")
@operation(media_type="*/*", errors=(404,), tags=TAGS)
async def docs_asset(request: web.Request) -> web.StreamResponse:
    """A Swagger UI asset (script, stylesheet, icon) from the local package."""
    filename = request.match_info["filename"]
    if filename not in ASSETS:
        raise NotFound(f"no documentation asset {filename!r}; the assets are {', '.join(ASSETS)}")
    return web.FileResponse(ASSET_DIR / filename, headers=_CACHE)
