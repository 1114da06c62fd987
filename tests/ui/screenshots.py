"""Screenshots of the gate-map page for the README: `bash scripts/screenshots` (or
`python -m tests.ui.screenshots --out docs/ui`).

Serves the main job's model, `blocks-digits-st`, from `--model-repository` where it holds a
version with labelled examples; otherwise trains one into a temporary repository first (the
`blocks-digits` preset with its recipe, about a minute on 2 cores). Then sends some traffic,
so the live panel has figures, and saves, with Debian's Chromium (tests/ui/browser.py):

    gate-map-desktop.png   the page at 1280 px, one test example run
    gate-map-phone.png     the same at a phone's 390 px, scrolled to what ran
    model-card.png         the model's card
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from benchmarks.server_process import ServerProcess
from models.artifact import artifact_path, list_versions, read_config
from models.labelled_examples import EXAMPLES_FILE

from .browser import launch, missing, wait_for_text

MODEL = "blocks-digits-st"
EXAMPLE = 3  # which recorded example the screenshots run
TRAFFIC_REQUESTS = 200


def has_examples(repository: Path) -> bool:
    versions = list_versions(repository, MODEL) if repository.is_dir() else []
    return bool(versions) and EXAMPLES_FILE in (read_config(
        artifact_path(repository, MODEL, versions[-1])).get("extra_files") or {})


def train(repository: Path) -> None:
    print(f"[screenshots] training {MODEL} into {repository} (about a minute)")
    subprocess.run([sys.executable, "-m", "training.train_cli", "--preset", "blocks-digits",
                    "--data", "digits", "--repository", str(repository), "--name", MODEL,
                    "--run-dir", str(repository.parent / "run"), "--no-progress"], check=True)


def send_traffic(url: str) -> None:
    examples = httpx.get(f"{url}/v1/models/{MODEL}/examples").json()["examples"]
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(TRAFFIC_REQUESTS):
            client.post(f"/v1/models/{MODEL}:predict",
                        json={"instances": [examples[i % len(examples)]["input"]]})


def run_example(page, url: str) -> None:
    page.goto(f"{url}/ui/?model={MODEL}&version=1")
    page.locator("#examples button").nth(EXAMPLE).click()
    wait_for_text(page, "#status", "label")
    page.wait_for_selector("#live-updated[data-count]")  # the live panel has read the server


def take(repository: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with ServerProcess(repository, "--models", MODEL) as server, \
            sync_playwright() as playwright:
        send_traffic(server.url)
        browser = launch(playwright)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        run_example(page, server.url)
        page.screenshot(path=out / "gate-map-desktop.png", full_page=True)
        # A phone's screen, scrolled to what ran: the whole page would be a long strip.
        page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                   device_scale_factor=2).new_page()
        run_example(page, server.url)
        page.evaluate("document.getElementById('result-heading').scrollIntoView()")
        page.screenshot(path=out / "gate-map-phone.png")
        saved += [out / "gate-map-desktop.png", out / "gate-map-phone.png"]
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{server.url}/ui/model.html?model={MODEL}&version=1")
        page.wait_for_selector("dd[data-field=training_command] code")
        page.screenshot(path=out / "model-card.png", full_page=True)
        saved.append(out / "model-card.png")
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, default=Path("model-repository"))
    parser.add_argument("--out", type=Path, default=Path("docs/ui"))
    args = parser.parse_args(argv)
    reason = missing()
    if reason is not None:
        print(f"[screenshots] {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as temporary:
        repository = args.model_repository
        if not has_examples(repository):
            repository = Path(temporary) / "repository"
            train(repository)
        for path in take(repository, args.out):
            print(f"[screenshots] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
