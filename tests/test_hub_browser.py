"""The hub's pages in a real browser (issue 7): headless Chromium driven by Playwright
against ``gpubench hub serve`` on loopback (``hub_live.LiveHub``) holding a few runs of
different GPUs.

Playwright's own browser downloads are not used: the system Chromium is
(``chromium`` on PATH or /usr/bin/chromium; CI installs it with apt). Without it the
tests skip and say so.

Every page visited is watched for console errors, uncaught exceptions, failed
requests and JavaScript dialogs: a dialog would mean that markup from an upload ran.
"""

from __future__ import annotations

import os
import re
import shutil
from urllib.parse import urljoin, urlsplit

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")
pytest.importorskip("playwright")

from hub_live import API, LiveHub, dumps, make_result_doc
from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium; CI installs it)", allow_module_level=True)

pytestmark = pytest.mark.slow

# Markup in an uploaded host name: it must show as text, and never run.
HOSTILE = "<img src=x onerror=\"window.__pwned=1;alert('img')\"><script>window.__pwned=2;alert('script')</script>"

# (i, GPU, host, scale): make_result_doc(i) has 1 + i % 3 records, distinct matmul cases
# (m = 128, 256, 384), so runs with different i lack some of each other's cases ("missing"
# on the compare page); its TFLOP/s are multiplied by scale, so the GPUs rank differently.
RUNS = {
    "h100-a": (0, "NVIDIA H100 80GB HBM3", "node-a", 3.0),      # 1 record
    "h100-b": (2, "NVIDIA H100 80GB HBM3", "node-b", 2.5),      # 3 records
    "a100": (4, "NVIDIA A100-SXM4-80GB", HOSTILE, 2.0),        # 2 records
    "l40s": (5, "NVIDIA L40S", "node-c", 1.0),                  # 3 records
}
# Best first, as the leaderboard ranks them.
GPU_MODELS = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-browser")
    with LiveHub(f"sqlite:///{d / 'hub.db'}", log_dir=d) as h:
        client = h.client()
        h.ids = {}
        h.docs = {}
        for name, (i, gpu, host, scale) in RUNS.items():
            doc = make_result_doc(i, gpu=gpu, host=host)
            for rec in doc["records"]:
                rec["metrics"]["tflops"] *= scale
            status, answer, raw = client.upload(dumps(doc))
            assert status == 201, raw
            h.ids[name] = answer["id"]
            h.docs[name] = doc
        client.close()
        yield h
        assert "Traceback" not in h.log_tail(100_000)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page with everything that should not happen recorded."""

    def __init__(self, browser, hub):
        self.hub = hub
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        p = self.page
        p.on("console", lambda m: m.type == "error"
             and self.problems.append(f"console: {m.text} at {m.location.get('url')}"))
        p.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        p.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        p.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        p.on("dialog", self._dialog)

    def _dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def goto(self, path: str):
        r = self.page.goto(self.hub.url + path)
        assert r is not None and r.status == 200, (path, r and r.status)
        return r

    def check_clean(self):
        assert self.dialogs == [], self.dialogs
        assert self.problems == [], self.problems
        assert self.page.evaluate("typeof window.__pwned") == "undefined"

    def close(self):
        self.context.close()


@pytest.fixture
def page(browser, hub):
    w = Watched(browser, hub)
    yield w
    w.close()


def _table_rows(table) -> list[list[str]]:
    return [[c.inner_text().strip() for c in row.locator("th, td").all()] for row in table.locator("tr").all()]


def _svg_labels(svg) -> list[str]:
    """The visible label of each bar (the text node, not its <title> tooltip)."""
    return svg.locator("text.chart-label").evaluate_all(
        "els => els.map(e => [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.data).join(''))")


def test_leaderboard_has_a_row_and_a_bar_per_gpu_model(page, hub):
    page.goto("/")
    # The index lists the leaderboard; its link leads there.
    page.page.get_by_role("link", name="matmul", exact=True).first.click()
    page.page.wait_for_load_state()
    assert urlsplit(page.page.url).path == "/leaderboard"
    assert "benchmark=matmul" in page.page.url
    assert page.page.locator("h1").inner_text().startswith("matmul · tflops")
    rows = _table_rows(page.page.locator("main table").first)
    assert rows[0] == ["GPU", "best", "median", "min", "max", "uploads", "best run"]
    # One row per GPU model, best first; both H100 uploads count in one row.
    assert [r[0].rsplit(" ", 1)[0] for r in rows[1:]] == GPU_MODELS
    assert [r[5] for r in rows[1:]] == ["2", "1", "1"]
    assert rows[1][6] == hub.ids["h100-a"]          # the better of the two H100 runs
    best = [float(r[1]) for r in rows[1:]]
    assert best[0] > best[1] > best[2] > 0
    # The chart: one SVG with one bar per GPU model, labelled with it, drawn to scale.
    svg = page.page.locator("svg.chart")
    assert svg.count() == 1 and svg.is_visible()
    assert _svg_labels(svg) == GPU_MODELS
    widths = [float(w) for w in svg.locator("rect.chart-bar").evaluate_all(
        "els => els.map(e => e.getAttribute('width'))")]
    assert len(widths) == len(GPU_MODELS)
    for w, b in zip(widths, best):
        assert w / widths[0] == pytest.approx(b / best[0], rel=0.02)
    # Each label links to the GPU model's best run.
    hrefs = svg.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert hrefs == [f"/runs/{r[6]}" for r in rows[1:]]
    page.check_clean()


def test_click_through_to_a_run_page(page, hub):
    page.goto("/leaderboard?benchmark=matmul")
    row = page.page.locator("tr", has_text="NVIDIA L40S")
    link = row.locator("a[href*='/runs/']")
    rid = link.inner_text().strip()
    assert rid == hub.ids["l40s"]
    link.click()
    page.page.wait_for_load_state()
    assert urlsplit(page.page.url).path == f"/runs/{rid}"
    assert page.page.locator("h1").inner_text() == f"Run {rid}"
    # Environment table: the device and host of the upload.
    env = dict(r[:2] for r in _table_rows(page.page.locator("h2:has-text('Environment') + table")) if len(r) >= 2)
    assert env["GPU / device"] == "NVIDIA L40S"
    assert env["host"] == "node-c"
    assert env["started"] == hub.docs["l40s"]["started_at"]
    # Records: one row per record of the file, with its value.
    records = _table_rows(page.page.locator("h2:has-text('Records') + table"))
    assert records[0] == ["benchmark", "case", "status", "metric", "value", "% of peak"]
    assert len(records) - 1 == len(hub.docs["l40s"]["records"]) == 3
    assert all(r[0] == "matmul" and r[2] == "ok" and r[3] == "tflops" and "TFLOP/s" in r[4] for r in records[1:])
    # A chart of the run's main metric, one bar per case.
    svg = page.page.locator("svg.chart")
    assert svg.count() == 1 and svg.locator("rect.chart-bar").count() == 3
    # The JSON link gives the file as uploaded.
    api = page.page.locator("a", has_text="JSON").get_attribute("href")
    r = page.page.request.get(urljoin(hub.url, api))
    assert r.status == 200 and r.json()["document"] == hub.docs["l40s"]
    page.check_clean()


@pytest.mark.parametrize("names", [("h100-a", "l40s"), ("h100-b", "h100-a", "a100"),
                                   ("l40s", "h100-a", "a100", "h100-b")])
def test_compare_side_by_side_with_missing_cells(page, hub, names):
    ids = [hub.ids[n] for n in names]
    page.goto("/compare")
    page.page.locator("input[name=ids]").fill(", ".join(ids))
    page.page.get_by_role("button", name="compare").click()
    page.page.wait_for_load_state()
    assert urlsplit(page.page.url).path == "/compare"
    tables = page.page.locator("main table")
    assert tables.count() == 2
    head = _table_rows(tables.nth(0))
    runs = [f"run {k + 1}" for k in range(len(ids))]
    assert head[0] == ["", *runs]
    assert head[1] == ["id", *ids]
    assert head[2] == ["GPU", *[RUNS[n][1] for n in names]]
    assert head[3] == ["host", *[RUNS[n][2] for n in names]]     # the hostile one as plain text
    rows = tables.nth(1).locator("tr")
    assert _table_rows(tables.nth(1))[0] == ["benchmark", "case", "metric", *runs]
    # One row per case found in any run; a run without the case has a "missing" cell.
    n_cases = max(len(hub.docs[n]["records"]) for n in names)
    assert rows.count() - 1 == n_cases
    for j in range(1, rows.count()):
        row = rows.nth(j)
        m = int(re.search(r"\bm=(\d+)", row.locator("td").nth(1).get_attribute("title")).group(1))
        cells = row.locator("td")
        assert cells.count() == 3 + len(ids)
        for k, n in enumerate(names):
            cell = cells.nth(3 + k)
            text = cell.inner_text().strip()
            if m <= 128 * len(hub.docs[n]["records"]):
                value = float(text.split(" ")[0])
                assert value > 0, text
                if k == 0:
                    base = value
                elif "missing" not in cells.nth(3).get_attribute("class"):
                    # in brackets: the ratio to run 1, i.e. the ratio of the scales
                    ratio = float(re.search(r"\(([\d.]+)×\)", text).group(1))
                    assert ratio == pytest.approx(RUNS[n][3] / RUNS[names[0]][3], rel=0.01), text
                    assert value == pytest.approx(base * ratio, rel=0.01)
            else:
                assert text == "missing" and cell.get_attribute("class") == "missing", (j, k, text)
    expected_missing = sum(n_cases - len(hub.docs[n]["records"]) for n in names)
    assert expected_missing > 0 and page.page.locator("td.missing").count() == expected_missing
    # The run ids link to their pages.
    for rid in ids:
        href = tables.nth(0).locator(f"a:text-is('{rid}')").get_attribute("href")
        assert page.page.request.get(urljoin(hub.url, href)).status == 200
    page.check_clean()


def test_hostile_host_name_is_shown_as_text(page, hub):
    rid = hub.ids["a100"]
    for path in (f"/runs/{rid}", "/", "/runs", "/runs?gpu=a100", f"/compare?ids={rid},{hub.ids['l40s']}"):
        page.goto(path)
        # The markup is text in the page, and no element came out of it.
        assert page.page.get_by_text(HOSTILE, exact=True).count() >= 1, path
        assert page.page.locator("main img, main script").count() == 0, path
    page.goto(f"/runs/{rid}")
    host_cell = page.page.locator("tr", has=page.page.locator("th", has_text=re.compile("^host$"))).locator("td")
    assert host_cell.inner_text() == HOSTILE
    page.check_clean()


def test_every_link_works(page, hub):
    """Every link on every page reachable from the index (same site) answers 200; the
    HTML pages among them load in the browser with no errors."""
    seen: set[str] = set()
    queue = ["/"]
    pages = 0
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        r = page.page.request.get(hub.url + path)
        assert r.status == 200, (path, r.status)
        html = r.headers.get("content-type", "").startswith("text/html")
        # /docs and /redoc are FastAPI's; they load their scripts from a CDN, which CI cannot reach.
        if not html or path.startswith(("/docs", "/redoc")):
            continue
        page.goto(path)
        pages += 1
        for href in page.page.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))"):
            u = urlsplit(urljoin(hub.url + path, href))
            assert u.netloc == urlsplit(hub.url).netloc, (path, href)     # no link leaves the hub
            target = u.path + (f"?{u.query}" if u.query else "")
            if target not in seen and len(seen) < 200:
                queue.append(target)
    assert pages >= 8 and len(seen) >= 15, (pages, sorted(seen))
    assert all(f"/runs/{rid}" in seen for rid in hub.ids.values())
    assert f"{API}/runs/{hub.ids['a100']}" in seen
    page.check_clean()
