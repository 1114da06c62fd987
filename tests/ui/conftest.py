"""A real `sparsegate-serve` on loopback with two small models, and a headless Chromium to
open its gate-map page: `digits8` takes 8 x 8 images (drawn on the page's pad) and records
labelled examples; `numbers` takes 12 numbers that are no image, and records none (as
artifacts written before examples existed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.gated_artifact import save_gated_network
from training.calibrate import calibrate_thresholds

from ..service.conftest import Server, recorded_examples
from ..service.conftest import tiny_network as numbers_network
from ..tiny_networks import tiny_network
from .browser import launch, missing

IMAGE_SIDE = 8
IMAGE_CLASSES = 10
EXAMPLES = 6


def image_network():
    """8 x 8 inputs, two gated layers (16 blocks of 4, then 8 blocks of 4), ten classes: small
    enough to build at once, with gates that change with what is drawn."""
    model = tiny_network([
        {"blocks": 16, "block_size": 4, "gater_hidden": 8, "activation": "relu"},
        {"blocks": 8, "block_size": 4, "gater_hidden": 0, "activation": "relu"}],
        seed=5, input_size=IMAGE_SIDE * IMAGE_SIDE, num_classes=IMAGE_CLASSES, density=0.25)
    # Thresholds for a quarter of the blocks on, over inputs as sparse as drawn strokes.
    generator = torch.Generator().manual_seed(0)
    strokes = torch.rand(512, IMAGE_SIDE ** 2, generator=generator)
    calibrate_thresholds(model, strokes * (strokes > 0.75), density=0.25)
    return model


def write_ui_repository(root: Path) -> Path:
    metadata = {"metrics": {"test_density": [0.3, 0.4], "test_error": 0.125},
                "training": {"command": "sparsegate-train --preset blocks-digits --data digits"},
                "data": {"name": "digits", "sizes": {"train": 1318, "valid": 120, "test": 359}}}
    save_gated_network(image_network(), root, "digits8", 1, metadata,
                       extra_files=recorded_examples(IMAGE_SIDE ** 2, IMAGE_CLASSES, EXAMPLES))
    save_gated_network(numbers_network(3), root, "numbers", 1,
                       {"metrics": {"test_density": [0.5, 0.5]}})
    return root


@pytest.fixture(scope="package")
def ui_server(tmp_path_factory):
    running = Server(write_ui_repository(tmp_path_factory.mktemp("ui") / "repo"))
    yield running
    running.stop()


@pytest.fixture(scope="package")
def browser():
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        running = launch(playwright)
        yield running
        running.close()


class PageProblems(list):
    """What a page reported that a working page never does: script errors, console errors
    (a Content-Security-Policy violation is one)."""

    def watch(self, page) -> None:
        page.on("pageerror", lambda error: self.append(f"page error: {error}"))
        page.on("console", lambda message: message.type == "error"
                and self.append(f"console: {message.text}"))


@pytest.fixture
def open_page(browser, ui_server):
    """open_page(path="/", **context options) -> a page of the server, watched for errors;
    the test fails if any page it opened reported one."""
    contexts, problems = [], PageProblems()

    def opened(path: str = "/", **options):
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        problems.watch(page)
        page.goto(ui_server.url + path)
        return page

    yield opened
    for context in contexts:
        context.close()
    assert not problems, problems
