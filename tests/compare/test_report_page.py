"""The report page in a real browser: headless Chromium driven by Selenium (Debian's chromium and chromium-driver).

The page is opened with networking switched off; each interaction is checked in the DOM and in
screenshots of the elements it should change: sorting a table by a header click, hover values on
a plot, the case browser's keyboard stepping, overlay and error-map toggles. No console errors.
"""
from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unetfamily.compare.results import CompareResults

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1300,1000", "--force-device-scale-factor=1"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, chromedriver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("no chromium and chromedriver on PATH (CI installs Debian's chromium and chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                                      "downloadThroughput": -1, "uploadThroughput": -1})
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def page(driver: Any, binary_report: tuple[CompareResults, dict[str, Path]]) -> Any:
    """The binary fixture's report.html, opened offline; console errors checked when the module's tests end."""
    driver.get(binary_report[1]["report.html"].resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    yield driver
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"


def _pixels(element: Any) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"), dtype=np.int16)


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or bool((np.abs(a - b) > 16).any(axis=-1).mean() > 0.002)


def _by(name: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, name)


def _press(driver: Any, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def _table_after(driver: Any, heading: str) -> Any:
    return driver.find_element(_by("XPATH"), f"//h2[normalize-space()='{heading}']/following::table[1]")


def test_page_loads_offline_with_contents_and_no_requests(page: Any) -> None:
    assert page.execute_script("return performance.getEntriesByType('resource').length") == 0
    toc = [a.text for a in page.find_elements(_by("CSS_SELECTOR"), "nav.toc a")]
    assert toc[:3] == ["Verdict", "Results", "Case-level statistics"] and "Case browser" in toc
    assert page.execute_script("return document.querySelectorAll('svg.plot').length") == 2


def test_clicking_a_header_sorts_the_table(page: Any) -> None:
    table = _table_after(page, "Results")
    headers = table.find_elements(_by("CSS_SELECTOR"), "thead th")
    column = next(i for i, th in enumerate(headers) if th.text.startswith("Params"))
    cells = lambda: [r.find_elements(_by("TAG_NAME"), "td")[column].text  # noqa: E731
                     for r in table.find_elements(_by("CSS_SELECTOR"), "tbody tr")]
    before, shot = cells(), _pixels(table)
    page.execute_script("arguments[0].scrollIntoView()", table)
    headers[column].click()
    values = [float(re.sub(r"[^\d.]", "", c)) for c in cells()]
    assert values == sorted(values) and cells() != before  # ranked by Dice, the fixture's params are not ascending
    assert headers[column].get_attribute("aria-sort") == "ascending" and _differs(_pixels(table), shot)
    headers[column].click()
    assert [float(re.sub(r"[^\d.]", "", c)) for c in cells()] == sorted(values, reverse=True)


def test_plot_points_show_their_values_on_hover(page: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    tip = page.find_element(_by("ID"), "tip")
    assert not tip.is_displayed()
    point = page.find_element(_by("CSS_SELECTOR"), "svg.plot[aria-label='cost'] .tip")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    ActionChains(page).move_to_element(point).perform()
    assert tip.is_displayed() and tip.text == point.get_attribute("data-tip")
    assert re.match(r"^(U-Net|UNet\+\+ \(DS\)|U-Net depth 2): [\d.]+ G MACs, Dice [\d.]+", tip.text)


def test_case_browser_keyboard_overlay_and_error_maps(page: Any) -> None:
    data = json.loads(page.find_element(_by("ID"), "cb-data").get_attribute("textContent"))
    browser = page.find_element(_by("ID"), "cb")
    page.execute_script("arguments[0].scrollIntoView()", browser)
    name = page.find_element(_by("ID"), "cb-name")
    order = [int(r.get_attribute("data-case")) for r in browser.find_elements(_by("CSS_SELECTOR"), "#cb-table tbody tr")]
    assert name.text == data["cases"][order[0]]["name"]
    panels = lambda: browser.find_elements(_by("CSS_SELECTOR"), "#cb-panels figure")  # noqa: E731
    assert len(panels()) == 2 + len(data["models"])
    first = [_pixels(p) for p in panels()]
    _press(page, "\ue014")  # the right arrow: the next case in the table's order
    assert name.text == data["cases"][order[1]]["name"]
    assert page.find_element(_by("ID"), "cb-pos").text == f"2 / {len(order)}"
    shown = [_pixels(p) for p in panels()]
    assert _differs(shown[0], first[0])
    image, truth, model = shown[0], shown[1], shown[2]
    assert _differs(truth, image) and _differs(model, image)  # the masks are laid over the image
    _press(page, "o")
    plain = [_pixels(p) for p in panels()]
    figure = slice(0, plain[0].shape[0] - 30)  # the picture, above the caption
    assert not _differs(plain[1][figure], plain[0][figure]) and not _differs(plain[2][figure], plain[0][figure])
    _press(page, "o")
    _press(page, "e")
    errors = [_pixels(p) for p in panels()]
    layer = browser.find_elements(_by("CSS_SELECTOR"), "#cb-panels figure img.layer")[1]
    assert layer.get_attribute("src") == data["cases"][order[1]]["err"][0]
    assert _differs(errors[2], model) and not _differs(errors[1], truth)  # predictions swap, the truth stays
    _press(page, "e")
    _press(page, "\ue012")  # the left arrow: back to the first case
    assert name.text == data["cases"][order[0]]["name"]


def test_case_browser_sorts_by_score_and_disagreement(page: Any) -> None:
    data = json.loads(page.find_element(_by("ID"), "cb-data").get_attribute("textContent"))
    page.find_element(_by("CSS_SELECTOR"), "#cb [data-order='mean']").click()
    means = [c["mean"] for c in data["cases"] if c["mean"] is not None]
    worst = min(range(len(data["cases"])), key=lambda k: data["cases"][k]["mean"] if data["cases"][k]["mean"]
                is not None else np.inf)
    assert page.find_element(_by("ID"), "cb-name").text == data["cases"][worst]["name"] and means
    page.find_element(_by("CSS_SELECTOR"), "#cb [data-order='spread']").click()
    rows = page.find_elements(_by("CSS_SELECTOR"), "#cb-table tbody tr")
    spreads = [data["cases"][int(r.get_attribute("data-case"))]["spread"] for r in rows]
    known = [s for s in spreads if s is not None]
    assert known == sorted(known, reverse=True) and spreads[:len(known)] == known  # unknown spreads last
    page.find_element(_by("CSS_SELECTOR"), "#cb-table tbody tr:nth-child(3)").click()
    assert page.find_element(_by("ID"), "cb-name").text == data["cases"][int(rows[2].get_attribute("data-case"))]["name"]
