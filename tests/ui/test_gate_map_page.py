"""The gate-map page in a real browser against a real server: what it shows for an input is
what the API answers for the same numbers (class, probabilities, blocks on, saving), for a
drawn stroke, a recorded example and typed numbers; switching models; the live panel after
traffic; the model card; a phone-width screen and the keyboard."""

from __future__ import annotations

import time

import httpx
import pytest

from .browser import wait_for_text
from .conftest import EXAMPLES, IMAGE_SIDE

pytestmark = pytest.mark.browser


def api_answer(server, model: str, numbers: list[float]) -> dict:
    response = httpx.post(f"{server.url}/v1/models/{model}/versions/1:predict?gates=true",
                          json={"instances": [numbers]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def sent_numbers(page) -> list[float]:
    """What the page sends: exactly the numbers in its input field."""
    return [float(text) for text in page.input_value("#numbers").split()]


def predicted(page) -> None:
    """Press Predict and wait for the answer to be shown."""
    page.click("#predict")
    wait_for_text(page, "#status", "predicts")


def check_page_shows(page, answer: dict) -> None:
    """The class, every probability, each gated layer's blocks on and the saving shown are the
    API's, figure for figure."""
    assert page.text_content("#predicted-class") == str(answer["class"])
    shown = page.eval_on_selector_all(
        "#probabilities li", "items => items.map(i => Number(i.dataset.probability))")
    assert shown == answer["probabilities"]
    report = answer["compute"]
    on = page.eval_on_selector_all(
        "figure.layer", "layers => layers.map(layer => Array.from("
        "layer.querySelectorAll('.block[data-on=true]'), b => Number(b.dataset.block)))")
    assert on == report["active_block_indices"]
    blocks = page.eval_on_selector_all(
        "figure.layer", "layers => layers.map(layer => layer.querySelectorAll('.block').length)")
    assert blocks == report["blocks"]
    saved = page.get_attribute("dd[data-field=saved_fraction]", "data-value")
    assert float(saved) == report["saved_fraction"]
    assert page.get_attribute("dd[data-field=executed_macs]", "data-value") == \
        str(report["executed_macs"])


def choose(page, model: str) -> None:
    page.select_option("#model-select", label=f"{model} (version 1)")
    wait_for_text(page, "#status", f"Ready: {model}")


def test_a_drawn_stroke_shows_what_the_api_answers_for_its_pixels(open_page, ui_server):
    page = open_page("/")  # a browser asking for / lands on the page
    assert "/ui/" in page.url
    choose(page, "digits8")
    pad = page.locator("#draw-pad").bounding_box()
    page.mouse.move(pad["x"] + pad["width"] * 0.3, pad["y"] + pad["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(pad["x"] + pad["width"] * 0.6, pad["y"] + pad["height"] * 0.8, steps=12)
    page.mouse.up()  # the end of a stroke predicts at once, and so does the button: one
    # after the other, as two requests at once would share a forward, and the API's answer
    # below is for one example alone
    wait_for_text(page, "#status", "predicts")
    predicted(page)
    numbers = sent_numbers(page)
    assert len(numbers) == IMAGE_SIDE ** 2 and 3 <= sum(v > 0 for v in numbers) < 40
    assert max(numbers) <= 1 and min(numbers) >= 0
    check_page_shows(page, api_answer(ui_server, "digits8", numbers))
    # The grid shows some blocks on and some off: the gates did choose.
    assert 0 < page.locator(".block.on").count() < page.locator(".block").count()


def test_a_recorded_example_runs_as_it_is_with_its_label(open_page, ui_server):
    page = open_page("/ui/?model=digits8&version=1")
    examples = httpx.get(f"{ui_server.url}/v1/models/digits8/examples").json()["examples"]
    buttons = page.locator("#examples button")
    buttons.first.wait_for()
    assert buttons.count() == EXAMPLES
    buttons.nth(2).click()
    wait_for_text(page, "#status", "label")
    assert sent_numbers(page) == examples[2]["input"]
    assert f"label is {examples[2]['label']}" in page.text_content("#status")
    check_page_shows(page, api_answer(ui_server, "digits8", examples[2]["input"]))


def test_switching_to_a_model_of_numbers_takes_typed_input(open_page, ui_server):
    page = open_page("/ui/")
    choose(page, "numbers")
    assert page.is_hidden("#draw-area") and page.is_visible("#paste-note")
    wait_for_text(page, "#examples-note", "no examples")
    page.fill("#numbers", "1 2 3")
    page.click("#predict")
    page.wait_for_selector("#status[data-kind=error]")
    assert "takes 12 numbers" in page.text_content("#status")
    numbers = [0.5, -1.25, 2, 0, 0.75, 1, -0.5, 3, 0.25, -2, 1.5, 0.125]
    page.fill("#numbers", ", ".join(map(str, numbers)))
    page.focus("#numbers")
    page.keyboard.press("Control+Enter")  # the keyboard's way to predict
    wait_for_text(page, "#status", "predicts")
    check_page_shows(page, api_answer(ui_server, "numbers", numbers))
    assert page.url.endswith("?model=numbers&version=1")  # the choice is in the address


def test_the_live_panel_counts_new_traffic(open_page, ui_server):
    page = open_page("/ui/")
    cell = "#live-rows tr[data-model=numbers] td[data-field=requests]"
    page.wait_for_selector(cell)
    before = int(page.text_content(cell))
    for _ in range(5):
        api_answer(ui_server, "numbers", [0.0] * 12)
    deadline = time.monotonic() + 10
    while int(page.text_content(cell)) < before + 5:
        assert time.monotonic() < deadline, "the live panel did not update"
        page.wait_for_timeout(250)
    summary = httpx.get(f"{ui_server.url}/v1/metrics/summary").json()
    numbers = {m["name"]: m for m in summary["models"]}["numbers"]
    assert numbers["latency_ms"] is not None
    assert page.text_content("#live-rows tr[data-model=numbers] td[data-field=p50]") != "–"


def test_the_model_card_shows_the_card(open_page, ui_server):
    page = open_page("/ui/?model=digits8&version=1")
    page.click("#card-link")
    page.wait_for_selector("dd[data-field=training_command] code")
    card = httpx.get(f"{ui_server.url}/v1/models/digits8/versions/1/card").json()
    assert page.text_content("dd[data-field=name]") == card["name"]
    assert page.text_content("dd[data-field=training_command]") == card["training_command"]
    assert page.text_content("dd[data-field=test_error]") == "12.5 %"
    assert page.text_content("dd[data-field=block_weights]") == card["block_weights"] \
        == "float32"
    assert page.text_content("dd[data-field=test_density]") == "30.0 %, 40.0 %"
    assert page.locator("#layers-rows tr").count() == len(card["architecture"]["layers"])
    page.click("#try-link")
    wait_for_text(page, "#status", "Ready")
    assert page.input_value("#model-select") == "0"  # digits8 is listed first


def test_a_phone_screen_and_the_keyboard(open_page, ui_server):
    page = open_page("/ui/?model=digits8&version=1", viewport={"width": 375, "height": 740},
                     is_mobile=True, has_touch=True)
    wait_for_text(page, "#status", "Ready")
    page.focus("#model-select")
    page.keyboard.press("Tab")  # the pad takes no focus: the next stop is Predict
    assert page.evaluate("document.activeElement.id") == "predict"
    assert page.evaluate(
        "getComputedStyle(document.activeElement).outlineStyle") == "solid"  # focus shows
    page.keyboard.press("Enter")
    wait_for_text(page, "#status", "predicts")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing sideways
    for control in ("#model-select", "#numbers"):  # every control has its label
        assert page.evaluate(f"document.querySelector('{control}').labels.length") == 1
