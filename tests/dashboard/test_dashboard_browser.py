"""The dashboard in a real headless browser (Debian's chromium and chromium-driver through selenium):
a search runs in the background while the page is open; the page lists it, draws one point per
finished generation, shows a new generation without a reload, draws the front with the right number
of points and a point's genome on a click, and logs no JavaScript error. Screenshots are saved
under the test's tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("plotly", reason="the dashboard needs plotly (pip install 'evoforge[dashboard]')")

from dashboard_runs import serve  # noqa: E402,F401  (the fixture)
from dashboard_runs import L_ZDT, cache_rows, compress_like_run, expected_front, front_like_run, opl_run

selenium = pytest.importorskip("selenium", reason="the browser tests need selenium (pip install selenium)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def _find(*names: str) -> str | None:
    for n in names:
        p = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if p:
            return p
    return None


CHROMIUM = _find("chromium", "chromium-browser", "google-chrome", "/usr/lib/chromium/chromium")
DRIVER = _find("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no chromium / chromedriver found (Debian: apt-get install chromium chromium-driver; .ci/run does)")

GENERATIONS = 14
SEARCH = textwrap.dedent("""
    import sys, time
    import numpy as np
    from evoforge.search import NSGA2
    from evoforge.search.problems import zdt1

    def slow(X):
        time.sleep(float(sys.argv[2]))
        return zdt1(X)

    e = NSGA2(np.zeros({L}), np.ones({L}), n_objectives=2, pop_size=16, seed=5, run_dir=sys.argv[1],
              progress=False, ref_point=[11.0, 11.0])
    e.run(slow, generations={G})
    e.close()
""").format(L=L_ZDT, G=GENERATIONS)


@pytest.fixture(scope="module")
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,2300",
              "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    d.set_script_timeout(20)
    yield d
    d.quit()


def _wait(fn, timeout: float, what: str, step: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def _lines(run: Path) -> int:
    try:
        return sum(1 for x in run.joinpath("history.jsonl").read_text().splitlines() if x.strip())
    except FileNotFoundError:
        return 0


def _js_trace(driver, div: str, name: str | None, key: str):
    """Column ``key`` of the trace ``name`` (None: the first) of the plot ``div``, or None."""
    return driver.execute_script("""
        var d = document.getElementById(arguments[0]), n = arguments[1], k = arguments[2];
        if (!d || !d.data) { return null; }
        for (var i = 0; i < d.data.length; i++) {
            if (n === null || d.data[i].name === n) { return d.data[i][k]; }
        }
        return null;""", div, name, key)


def _severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_live_run_in_the_browser(tmp_path, serve, driver):
    run = tmp_path / "nsga2-zdt1"
    log = tmp_path / "search.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", SEARCH, str(run), "0.6"], stderr=err)
    try:
        _wait(lambda: _lines(run) >= 2 or proc.poll() is not None, 60, "the search's first generations")
        assert proc.poll() is None, log.read_text()[-2000:]
        port = serve([run], stale_after=2.0)
        driver.get(f"http://127.0.0.1:{port}/")
        _wait(lambda: "nsga2-zdt1" in driver.find_element(By.ID, "runs").text, 10, "the run in the table")
        assert "running" in driver.find_element(By.ID, "runs").text
        # one point per finished generation: generations 1..n, no gap, no repeat, caught up with the file
        seen = _lines(run)
        x = _wait(lambda: (lambda v: v if v and len(v) >= seen else None)(_js_trace(driver, "hv", None, "x")), 5,
                  "the hypervolume chart to catch up with history.jsonl")
        assert x == list(range(1, len(x) + 1)) and len(x) <= _lines(run)
        driver.save_screenshot(str(tmp_path / "dashboard-live.png"))
        n0 = len(x)
        _wait(lambda: len(_js_trace(driver, "hv", None, "x") or []) > n0, 10, "a new generation on the page")
        assert proc.wait(timeout=90) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the finished run: every generation, the state, the front of every evaluation
    _wait(lambda: _js_trace(driver, "hv", None, "x") == list(range(1, GENERATIONS + 1)), 5, "every generation")
    # stopped (its cache closed) or stale (the writer closed it while a read held it open)
    _wait(lambda: any(w in driver.find_element(By.ID, "runs").text for w in ("stopped", "stale")), 10,
          "the run shown as no longer running")
    want = expected_front(run)
    ids = _wait(lambda: (lambda v: v if v and set(v) == want else None)(_js_trace(driver, "front", "front", "customdata")),
                5, "the final front")
    assert len(ids) == len(want) == len(_js_trace(driver, "front", "front", "x"))
    assert f"{len(want)} non-dominated point(s)" in driver.find_element(By.ID, "front-note").text
    # click a point of the front: its genome is drawn
    k = len(ids) // 2
    xy = driver.execute_script("""
        var d = document.getElementById('front'), L = d._fullLayout, t = d.data.filter(function (t) { return t.name === 'front'; })[0];
        var r = d.getBoundingClientRect();
        return [L._size.l + L.xaxis.l2p(t.x[arguments[0]]) - r.width / 2, L._size.t + L.yaxis.l2p(t.y[arguments[0]]) - r.height / 2];
    """, k)
    ActionChains(driver).move_to_element_with_offset(driver.find_element(By.ID, "front"), int(xy[0]), int(xy[1])).click().perform()
    title = _wait(lambda: (lambda t: t if t.startswith("r") and ":" in t else None)(
        driver.find_element(By.ID, "genome-title").text), 5, "the clicked point's genome")
    pid = title.split(":")[0]
    assert pid in ids
    rowids, F, genomes = cache_rows(run)
    row = list(rowids).index(int(pid[1:]))
    y = _wait(lambda: _js_trace(driver, "genome", None, "y"), 5, "the genome chart")
    assert y == pytest.approx(genomes[row]) and len(y) == L_ZDT
    driver.save_screenshot(str(tmp_path / "dashboard-genome.png"))
    errors = _severe(driver)
    driver.get("about:blank")  # stop polling before the server stops
    assert errors == []


def test_compression_runs_and_export_in_the_browser(tmp_path, serve, driver):
    comp = compress_like_run(tmp_path / "compress-sparsity")
    front = front_like_run(tmp_path / "compress-front")
    opl, _ = opl_run(tmp_path / "oneplus-onemax", generations=12)
    port = serve([comp, front, opl])
    driver.get("about:blank")
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(f"http://127.0.0.1:{port}/")
    _wait(lambda: _js_trace(driver, "conv", None, "x"), 10, "the convergence chart")
    names = _js_trace(driver, "conv", None, "name")
    assert names is not None
    traces = driver.execute_script("return document.getElementById('conv').data.map(function (t) { return t.name; });")
    assert "compress-sparsity: best" in traces and "oneplus-onemax: best" in traces
    assert "compress-sparsity: stage 2 best" in traces and "oneplus-onemax: median" in traces
    # the front run is shown first (several objectives): parallel coordinates, the uniform point
    _wait(lambda: _js_trace(driver, "parcoords", None, "type") == "parcoords", 10, "parallel coordinates")
    assert len(_js_trace(driver, "front", "front", "x")) == 7 and len(_js_trace(driver, "front", "uniform", "x")) == 1
    driver.execute_script("return window.evoforgeDashboard.showGenome(1, 'p3');")
    _wait(lambda: driver.find_element(By.ID, "genome-title").text.startswith("p3:"), 5, "p3's genome")
    assert driver.execute_script("return document.getElementById('genome').data.map(function (t) { return t.name; });") \
        == ["sparsity", "bits"]
    driver.save_screenshot(str(tmp_path / "dashboard-front.png"))
    # the sparsity run: levels over generations and the report table
    driver.find_element(By.LINK_TEXT, "compress-sparsity").click()
    _wait(lambda: _js_trace(driver, "heatmap", None, "type") == "heatmap", 5, "the levels heatmap")
    assert "evoforge" in driver.find_element(By.ID, "report").text and "owl" in driver.find_element(By.ID, "report").text
    driver.save_screenshot(str(tmp_path / "dashboard-compress.png"))
    assert _severe(driver) == []
    driver.get("about:blank")
    # the export: the same views from one file, nothing fetched
    from evoforge.dashboard import export_html

    out = export_html([comp, front, opl], tmp_path / "report.html")
    driver.get(out.as_uri())
    _wait(lambda: _js_trace(driver, "front", "front", "x"), 10, "the exported front")
    assert "exported" in driver.find_element(By.ID, "status").text
    driver.execute_script("return window.evoforgeDashboard.showGenome(1, 'p3');")
    _wait(lambda: driver.find_element(By.ID, "genome-title").text.startswith("p3:"), 5, "p3's genome, exported")
    driver.save_screenshot(str(tmp_path / "dashboard-export.png"))
    assert _severe(driver) == []
