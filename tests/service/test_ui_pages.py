"""The gate-map page's files: served from the package only, by name, with their content types
and a strict Content-Security-Policy; no inline script, nothing from other hosts; `GET /`
sends browsers to the page and answers API clients as before."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.ui_pages import CONTENT_TYPES, load_ui_files, prefers_html

from .conftest import settings

ROOT = Path(__file__).resolve().parents[2]
UI_FOLDER = ROOT / "service" / "ui"
BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                  "image/webp,image/apng,*/*;q=0.8")
PAGES = ("index.html", "model.html")
# What a page's markup or a script loads: src and href attributes, and module imports.
LOADED = re.compile(r"""(?:src|href)="([^"]+)"|from "(\./[^"]+)"|import "(\./[^"]+)\"""")


@pytest.mark.parametrize("accept, browser", [
    (BROWSER_ACCEPT, True),
    ("text/html", True),
    ("application/json, text/html;q=0.9", False),
    ("text/html, application/json", False),  # a tie: the API's answer
    ("text/html;q=0", False),
    ("*/*", False),
    ("application/json", False),
    ("", False),
    (None, False),
    ("text/html;q=nonsense, */*", False),
])
def test_who_counts_as_a_browser(accept, browser):
    assert prefers_html(accept) is browser


def test_root_sends_browsers_to_the_page_and_api_clients_get_the_liveness_answer(client):
    opened = client.get("/", headers={"Accept": BROWSER_ACCEPT}, follow_redirects=False)
    assert opened.status_code == 307 and opened.headers["location"] == "/ui/"
    assert opened.headers["vary"] == "Accept"
    for accept in ("*/*", "application/json"):
        answer = client.get("/", headers={"Accept": accept})
        assert answer.status_code == 200 and answer.json() == {"status": "alive"}
        assert answer.headers["content-type"] == "application/json"
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"


@pytest.mark.parametrize("page", PAGES)
def test_every_file_a_page_loads_is_served_with_its_type_and_the_policy(client, page):
    path = "/ui/" if page == "index.html" else f"/ui/{page}"
    to_load, seen = [path], set()
    while to_load:
        url = to_load.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = Path(url).suffix or ".html"
        assert response.headers["content-type"] == CONTENT_TYPES[suffix], url
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy and "unsafe" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        for found in LOADED.findall(response.text):
            target = next(t for t in found if t)
            if target.startswith(("../", "#")):  # the API's own pages (/docs), anchors
                continue
            assert not re.match(r"[a-z]+:|//", target), f"{url} loads {target} from elsewhere"
            to_load.append("/ui/" + target.removeprefix("./"))
    assert {"/ui/app.css", "/ui/gate-map-page.js"} <= seen or page == "model.html"


def test_no_inline_script_style_or_html_strings():
    for html in UI_FOLDER.glob("*.html"):
        text = html.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), html.name
        assert not re.search(r"\son[a-z]+=|\sstyle=|<style", text), html.name
    for script in UI_FOLDER.glob("*.js"):
        text = script.read_text()
        for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                       "eval(", "new Function"):
            assert unsafe not in text, (script.name, unsafe)


@pytest.mark.parametrize("path", [
    "/ui/../app.py", "/ui/%2e%2e/app.py", "/ui/..%2fapp.py", "/ui/ui_pages.py",
    "/ui/%2e%2e%2fui_pages.py", "/ui/.hidden.js", "/ui/api.js/", "/ui/API.JS", "/ui/nope.js",
    "/ui/index.html%00.js", "/ui/ui", "/ui//etc/passwd"])
def test_only_the_page_files_are_served(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code in (404, 307, 308), path
    if response.status_code != 404:  # a redirect stays inside /ui/ or goes nowhere else
        assert response.headers["location"].startswith(("/ui/", "http://testserver/ui/"))
    assert "import" not in response.text and "def " not in response.text


def test_a_cached_file_is_answered_304(client):
    first = client.get("/ui/app.css")
    again = client.get("/ui/app.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert first.headers["cache-control"] == "no-cache"


def test_a_page_addressed_by_another_name_is_refused(client):
    assert client.get("/ui/", headers={"Host": "attacker.example"}).status_code == 400


def test_no_ui_turns_the_page_off_and_root_answers_json(repository):
    with TestClient(create_app(settings(repository, ui=False))) as client:
        assert client.get("/ui/").status_code == 404
        answer = client.get("/", headers={"Accept": BROWSER_ACCEPT})
        assert answer.status_code == 200 and answer.json() == {"status": "alive"}


def test_every_page_file_ships_in_the_package():
    # An installed server without one of them would serve a broken page.
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["service"]
    shipped = [path for path in UI_FOLDER.iterdir() if path.is_file()]
    assert {path.name for path in shipped} == set(load_ui_files())
    for path in shipped:
        assert any(fnmatch.fnmatch(f"ui/{path.name}", p) for p in patterns), path.name


def test_the_page_is_a_flag_and_a_setting():
    from service.cli import _parser

    assert vars(_parser().parse_args(["--no-ui"])) == {"ui": False}
    assert vars(_parser().parse_args([])) == {}  # the Settings default: on
