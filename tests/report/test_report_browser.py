"""`sweep report` pages opened in a real browser: Debian's Chromium, driven by Playwright.

Playwright's own browser download cannot work on the CI machines, so the tests drive the system
binary (.ci/setup.d/chromium.sh installs it) and skip, saying so, where it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sweep.report import report_html, write_report
from tests.report.test_report import XSS, make_study

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (.ci/setup.d/chromium.sh)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (starting it takes seconds on 2 cores)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


class Watched:
    """A page with its console errors, uncaught exceptions and requests recorded."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1366, "height": 768})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, path: Path, plots: int) -> None:
        """Load the file and wait until `plots` figures have drawn their SVG."""
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function(
            "n => document.querySelectorAll('div.js-plotly-plot .main-svg').length >= n "
            "&& document.querySelectorAll('div.js-plotly-plot').length >= n",
            arg=plots,
            timeout=60_000,
        )

    def plot_count(self) -> int:
        """Rendered plots: divs plotly.js has drawn into (they get the js-plotly-plot class)."""
        return self.page.locator("div.js-plotly-plot").count()


def test_report_renders_offline_with_every_plot(browser: Any, tmp_path: Path) -> None:
    study = make_study(
        f"sqlite:///{tmp_path / 'r.db'}",
        name=f"study {XSS}",
        label_names=[XSS, "positive"],
        model_sizes=(f"tiny{XSS}", "micro"),
    )
    report = tmp_path / "report.html"
    write_report(report, report_html([study]))
    watched = Watched(browser)
    watched.open(report, 7)

    assert watched.plot_count() == 7
    # Every figure has drawn something: axes or a parallel-coordinates canvas.
    assert watched.page.locator("div.js-plotly-plot .main-svg").count() >= 7
    assert watched.errors == []
    assert watched.requests == [report.resolve().as_uri()]  # nothing but the file itself
    # The study's strings are shown as text, and none of their markup ran.
    assert watched.page.evaluate("window.__xss") is None
    assert watched.page.evaluate("document.querySelectorAll('main img').length") == 0
    assert XSS in watched.page.locator("h1").inner_text()
    assert XSS in watched.page.locator("dl.header").inner_text()
    assert "RuntimeError: CUDA <boom>" in watched.page.locator("table.sortable").inner_text()

    # The table sorts by a column when its header is clicked: best val_loss first.
    watched.page.locator("table.sortable th", has_text="val_loss").click()
    first = watched.page.locator("table.sortable tbody tr").first
    assert first.locator("td").first.inner_text() == "3"
    assert "best" in (first.get_attribute("class") or "")

    shot = tmp_path / "report.png"
    watched.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    watched.page.close()


def test_report_of_several_studies(browser: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    report = tmp_path / "compare.html"
    write_report(report, report_html([make_study(url, "one"), make_study(url, "two")]))
    watched = Watched(browser)
    watched.open(report, 1 + 2 * 7)
    assert watched.plot_count() == 15
    assert watched.errors == []
    assert watched.requests == [report.resolve().as_uri()]
    # The overlay has one best-so-far line per study.
    legend = watched.page.locator("#fig-compare .legendtext").all_text_contents()
    assert legend == ["one", "two"]
    compare = watched.page.locator("table.compare").inner_text()
    assert "one" in compare and "two" in compare and "0.4" in compare
    watched.page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    watched.page.close()
