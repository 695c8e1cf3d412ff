"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium opens a report built from a small fixture run.

Checked on the summary page and on every experiment page: no console errors, every image
loads (natural width > 0), every internal link resolves (files exist, anchors exist), the
verdict filter hides rows. A screenshot of the summary is saved as a test artifact
(``test-artifacts/report-summary.png``, or ``$KEXUE_ARTIFACTS``). Skipped, saying why,
where no browser is installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from kexue.evidence import plots, suite
from kexue.evidence.base import Claim, Experiment, Run, Skip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("KEXUE_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))

CLAIM = Claim("一个帖子", "2021-01-11", "https://kexue.fm/archives/8069",
              "Whitening <b>raises</b> the Spearman score.", "whitening > raw beyond noise",
              reported="BERT-base 59.04 -> 71.20", fidelity="substituted",
              post_setting="BERT-base on STS-B", our_setting="a tiny encoder",
              substitution="no BERT-base here", reported_values={"whitening": 71.2, "raw": 59.04})


class Plotted(Experiment):
    name, techniques, claim, seeds = "fixture-plotted", ("T12",), CLAIM, 3

    def run(self, ctx):
        return Run({"raw": 60.0 + ctx.seed, "whitening": 70.0 + 0.5 * ctx.seed},
                   tables=["| pooling | raw |\n|---|---|\n| cls | 73.5 |"],
                   samples=["床前明月光 <script>alert(1)</script>"], notes=["a *note*"])

    def summarize(self, stats, runs, ctx):
        path = ctx.figure("bars.png")
        plots.grouped_bars({"cls": {k: stats[k].mean for k in ("raw", "whitening")}}, path,
                           errors={"cls": {k: stats[k].std for k in ("raw", "whitening")}},
                           reference={"cls": {"raw": 59.04, "whitening": 71.2}})
        return Run({}, figures=[path.name])

    def checks(self, stats):
        return [stats.greater("whitening", "raw")]


class Skipped(Plotted):
    name, techniques = "fixture-skipped", ("T33",)

    def run(self, ctx):
        raise Skip("data not available: stsb-zh")


class Broken(Plotted):
    name, techniques = "fixture-broken", ("T7",)

    def run(self, ctx):
        raise RuntimeError("boom")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium / chromedriver on this machine (Debian: apt-get install "
                    "chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--allow-file-access-from-files",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    os.environ["KEXUE_CACHE"] = str(root / "cache")
    out, _ = suite.reproduce([Plotted, Skipped, Broken], "quick", None, root / "r",
                             use_cache=False, log=lambda s: None)
    return out


def _open(driver, page: Path) -> None:
    driver.get(page.as_uri())
    driver.get_log("browser")  # clear


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _check_page(driver, page: Path) -> None:
    driver.get(page.as_uri())
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,"
        " i.naturalWidth]);")
    for src, complete, width in images:
        assert complete and width > 0, f"{page}: image {src} did not load"
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")
    for href in links:
        url = urlparse(href)
        if url.scheme in ("http", "https"):
            continue
        target = Path(unquote(url.path))
        assert target.exists(), f"{page}: link {href} points to a missing file"
        if url.fragment and target == page:
            assert driver.find_elements("id", url.fragment), f"{page}: no #{url.fragment}"
    assert _errors(driver) == [], f"{page}: console errors"


def test_report_pages_load_cleanly_in_chromium(browser, report):
    pages = [report / "index.html"] + sorted(report.glob("*/index.html"))
    assert len(pages) == 4
    for page in pages:
        _check_page(browser, page)
    # the summary lists all 34 techniques, and the fixture's three experiments
    _open(browser, report / "index.html")
    rows = browser.find_elements("css selector", "#summary tbody tr")
    assert len(rows) >= 34
    # injected markup stays text
    _open(browser, report / "fixture-plotted" / "index.html")
    assert "<script>alert(1)</script>" in browser.find_element("tag name", "pre").text
    assert _errors(browser) == []


def test_summary_filter_and_sort_work_and_a_screenshot_is_kept(browser, report):
    _open(browser, report / "index.html")
    browser.find_element("css selector", "button[data-verdict='reproduced']").click()
    visible = [r for r in browser.find_elements("css selector", "#summary tbody tr")
               if r.is_displayed()]
    assert [r.get_attribute("data-verdict") for r in visible] == ["reproduced"]
    browser.find_element("css selector", "button[data-verdict='all']").click()
    browser.find_element("css selector", "th[data-key='4']").click()  # sort by verdict
    assert _errors(browser) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-summary.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    _open(browser, report / "fixture-plotted" / "index.html")
    assert browser.save_screenshot(str(ARTIFACTS / "report-experiment.png"))
