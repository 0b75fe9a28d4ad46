"""The report as a person would use it: headless Chromium (Debian's ``chromium``) via Playwright.

The page of the bundled sample's run loads from disk with no console error and no network
request, shows every section, shows the tooltip of a hovered sentence, recolours the
sentences when the colouring changes, and draws something (a screenshot is not blank).
Skipped, saying so, where Chromium is not installed (CI installs it: ``.ci/run``).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from test_report import SECTIONS, build_sample_run

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def sample_run(tiny_model_dir, tmp_path_factory) -> Path:
    return build_sample_run(tmp_path_factory.getbasetemp(), tiny_model_dir)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def loaded(browser, sample_run):
    """The report page, loaded once (a 5 MB page), with console errors and refused requests."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(180_000)
    seen = {"errors": [], "network": []}

    def route(r):
        url = r.request.url
        if url.startswith("file://"):
            r.continue_()
        else:
            seen["network"].append(url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.goto((sample_run / "report.html").resolve().as_uri())
    page.wait_for_selector("html[data-ready='1']")
    yield page, seen
    page.close()


@pytest.fixture()
def opened(loaded):
    """The page back at its first state: first trace, sentence view, coloured by tag."""
    page, seen = loaded
    first = page.eval_on_selector("#trace-select option", "o => o.value")
    page.select_option("#trace-select", first)
    page.uncheck("#token-view")
    page.select_option("#colour-by", "tag")
    page.mouse.move(2, 2)
    return page, seen


def test_loads_offline_with_every_section(opened):
    page, seen = opened
    assert seen["errors"] == [] and seen["network"] == []
    for ident in SECTIONS:
        assert page.locator(f"section#{ident}").count() == 1
    assert page.locator("#trace-text .sent").count() > 5
    assert page.locator("#fig-probe .plot .main-svg").count() >= 1  # plotly drew it
    assert page.locator("#fig-suppression .plot .main-svg").count() >= 1


def test_hover_shows_the_tooltip(opened):
    page, _ = opened
    sent = page.locator('#trace-text .sent[data-k="1"]')
    sent.scroll_into_view_if_needed()
    sent.hover()
    tip = page.locator("#mg-tooltip")
    assert tip.is_visible()
    text = tip.inner_text()
    want = page.evaluate(
        "() => JSON.parse(document.getElementById('mg-data').textContent).traces[0].sents[1]"
    )
    assert f"sentence {want['i']}" in text and f"node {want['node']}" in text
    assert f"tag: {want['tag']}" in text and "planning score:" in text
    assert "receiver:" in text and "suppression:" in text
    page.mouse.move(2, 2)
    assert not tip.is_visible()


def test_colour_toggle_changes_the_sentence_colours(opened):
    page, _ = opened

    def colours():
        return page.eval_on_selector_all(
            "#trace-text .sent", "els => els.map(e => getComputedStyle(e).backgroundColor)"
        )

    by_tag = colours()
    page.select_option("#colour-by", "ps")
    by_score = colours()
    page.select_option("#colour-by", "imp:suppression")
    by_imp = colours()
    assert by_tag != by_score and by_score != by_imp
    assert len(set(by_tag)) > 1 and len(set(by_imp)) > 1
    page.select_option("#colour-by", "tag")
    assert colours() == by_tag


def test_trace_select_and_token_view(opened):
    page, _ = opened
    ids = page.eval_on_selector_all("#trace-select option", "os => os.map(o => o.value)")
    title = page.locator("#fig-trajectory .gtitle").text_content()
    page.select_option("#trace-select", ids[2])
    assert ids[2] in page.locator("#fig-trajectory .gtitle").text_content() and ids[0] in title
    assert page.locator("#corpus-table tr.sel").get_attribute("data-trace") == ids[2]
    page.check("#token-view")
    assert page.locator("#token-text").is_visible() and not page.locator("#trace-text").is_visible()
    assert page.locator("#token-text .tok.plan").count() > 0
    page.locator("#token-text .tok.plan").first.hover()
    assert "HICRA boost" in page.locator("#mg-tooltip").inner_text()


def test_screenshot_is_not_blank(opened):
    import numpy as np
    from PIL import Image

    page, _ = opened
    png = page.locator("section#graph").screenshot()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    assert img.shape[0] > 200 and img.std() > 10
