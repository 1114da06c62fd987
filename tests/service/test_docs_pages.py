"""/docs and /redoc load nothing from other hosts (no CDN, no web fonts): every script,
stylesheet and image they name is served by the server itself, so they work offline and run
only what was installed. --no-docs turns them off; the schema stays."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.app import create_app

from .conftest import settings

# Every URL a page names: src/href attributes, and the url: ... that Swagger UI fetches.
URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


def named_urls(html: str) -> list[str]:
    return [a or b for a, b in URL.findall(html)]


@pytest.mark.parametrize("page, scripts", [
    ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]), ("/redoc", ["redoc.standalone.js"])])
def test_doc_pages_load_only_files_the_server_serves(client, page, scripts):
    response = client.get(page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    html = response.text
    urls = named_urls(html)
    assert all(script in " ".join(urls) for script in scripts), urls
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from another host"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000 or url.endswith(".json"), url
    for outside in ("cdn.", "jsdelivr", "unpkg", "googleapis", "fastapi.tiangolo.com"):
        assert outside not in html


def test_swagger_ui_is_version_5_which_reads_openapi_3_1(client):
    # Swagger UI 4 refuses FastAPI's OpenAPI 3.1 schema ("does not specify a valid version").
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', bundle)
    assert '"validatorUrl": null' in client.get("/docs").text


def test_no_docs_turns_the_pages_off_and_keeps_the_schema(repository):
    with TestClient(create_app(settings(repository, docs=False))) as client:
        for path in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"):
            assert client.get(path).status_code == 404, path
        assert client.get("/openapi.json").status_code == 200
