"""GET /docs: Swagger UI from the installed package, usable without the internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from swagger_ui_bundle import swagger_ui_path

URL = re.compile(rb"https?://")


class References(HTMLParser):
    """Every src/href of a page, and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)


@pytest.fixture(scope="module")
def page(api_daemon) -> References:
    reply = api_daemon.get("/docs")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert not URL.search(reply.body), "the page names an external URL"
    references = References()
    references.feed(reply.body.decode())
    return references


def test_the_page_loads_only_local_assets_and_this_daemons_document(page):
    assert page.urls, "the page references no assets"
    assert all(url.startswith("/docs/static/") for url in page.urls), page.urls
    (script,) = page.scripts
    assert 'url: "/openapi.json"' in script
    # Swagger UI would otherwise send the document to an online validator for its badge.
    assert "validatorUrl: null" in script


def test_every_asset_is_served_from_the_package(page, api_daemon):
    kinds = {".css": "text/css", ".js": "application/javascript", ".png": "image/png"}
    for url in page.urls:
        reply = api_daemon.get(url)
        assert reply.status == 200, url
        filename = url.rsplit("/", 1)[1]
        assert reply.headers["Content-Type"].split(";")[0] == kinds[filename[filename.rindex("."):]]
        assert reply.body == (swagger_ui_path / filename).read_bytes()


def test_the_stylesheet_fetches_nothing_from_outside(api_daemon):
    css = api_daemon.get("/docs/static/swagger-ui.css").body
    assert not re.search(rb"@import|url\(\s*['\"]?https?:", css)


def test_the_bundled_swagger_ui_renders_openapi_3_1():
    # Swagger UI reads OpenAPI 3.1 from version 5 on; the document is 3.1.
    major = int(swagger_ui_path.name.removeprefix("swagger-ui-").split(".")[0])
    assert major >= 5, swagger_ui_path.name


@pytest.mark.parametrize("name", ["index.html", "swagger-initializer.js", "..%2F..%2F__init__.py", "nope.js"])
def test_other_files_are_not_served(api_daemon, name):
    reply = api_daemon.get(f"/docs/static/{name}")
    assert reply.status == 404
    assert reply.json()["error"]["code"] in ("not_found", "no_such_endpoint")
