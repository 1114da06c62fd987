"""Headless Chromium for the gate-map page's tests and screenshots: Debian's `chromium`
package (which .ci/run installs), driven by Playwright for Python. Playwright's own browser
builds are downloaded from hosts a machine may not reach, so they are never used.

`missing()` says why no browser can be driven here (the tests skip with that message);
`launch(playwright)` starts one.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

# Debian's /usr/bin/chromium is a shell wrapper around this binary; either works.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")


def chromium_executable() -> str | None:
    """SPARSEGATE_CHROMIUM, else the first Chromium found on this machine."""
    chosen = os.environ.get("SPARSEGATE_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    for candidate in CANDIDATES:
        found = candidate if Path(candidate).is_file() else shutil.which(candidate)
        if found:
            return found
    return None


def missing() -> str | None:
    """Why no browser can be driven here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return ("Playwright for Python is not installed: pip install playwright (the dev "
                "extra has it)")
    if chromium_executable() is None:
        return ("no Chromium found: apt-get install chromium (Debian), or set "
                "SPARSEGATE_CHROMIUM to a Chromium executable")
    return None


def launch(playwright):
    """A headless Chromium. --no-sandbox: its sandbox cannot start as root (CI runs as root)
    nor in most containers; the browser only ever opens the test server's pages."""
    return playwright.chromium.launch(
        executable_path=chromium_executable(), headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])


def wait_for_text(page, selector: str, text: str) -> None:
    """Wait until the element `selector` holds `text`. Through a selector, not a script: the
    page's Content-Security-Policy forbids evaluating strings, which Playwright's
    wait_for_function does."""
    page.locator(selector, has_text=text).wait_for()
