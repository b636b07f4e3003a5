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

import copy
import math
import os
import re
import shutil
from urllib.parse import parse_qs, urljoin, urlsplit

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
# The h100-b record of this case has a high CoV: compare pages leave it out of the geometric mean.
NOISY_M = 384
# A run on a CPU (env.device.type "cpu"): kept off the GPU leaderboards.
CPU_RUN = (7, "AMD EPYC 9654 96-Core Processor", "cpu-node")
# A GPU run of collectives swept over message sizes (busbw against size), plus a benchmark
# whose case labels are long (the hub falls back to its case id for a benchmark it does not know).
COLL_OPS, COLL_DTYPES, COLL_SIZES = ("all_reduce", "all_gather"), ("bf16", "fp32"), [2**k for k in range(10, 31, 2)]
LONG_LABEL = "a fused kernel whose variant name is long enough to be cut at the left edge by a fixed label column"


def _busbw(op: str, dtype: str, size: int) -> float:
    """A made-up nccl-tests-like curve: latency-bound small messages, saturating large ones."""
    peak = (360.0 if op == "all_reduce" else 300.0) * (1.1 if dtype == "bf16" else 1.0)
    return peak * size / (size + 2**22)


def _collectives_doc() -> dict:
    doc = make_result_doc(8, gpu="NVIDIA H100 80GB HBM3", host="comm-node")
    template = doc["records"][0]
    records = []
    for op in COLL_OPS:
        for dtype in COLL_DTYPES:
            for size in COLL_SIZES:
                rec = copy.deepcopy(template)
                rec["benchmark"] = op
                rec["params"] = {"size_bytes": size, "dtype": dtype, "inplace": op == "all_reduce", "world_size": 8}
                bw = _busbw(op, dtype, size)
                rec["metrics"] = {"algbw_gbps": bw / 1.75, "busbw_gbps": bw, "latency_us": size / bw / 1e3}
                records.append(rec)
    for j in range(3):
        rec = copy.deepcopy(template)
        rec["benchmark"] = "custom-kernel"
        rec["params"] = {"variant": f"{LONG_LABEL} #{j}"}
        rec["metrics"] = {"gbps": 100.0 * (j + 1)}
        records.append(rec)
    for rec in records:
        rec["case_id"] = f"{rec['benchmark']}[" + ",".join(
            f"{k}={rec['params'][k]}" for k in sorted(rec["params"])) + "]"
    doc["records"] = records
    return doc


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
                # A little faster for larger shapes, so a run's chart is not flat; too little
                # to change which run is a GPU's best.
                rec["metrics"]["tflops"] *= scale * (1 + rec["params"]["m"] / 2048)
                rec["timing"]["high_cov"] = name == "h100-b" and rec["params"]["m"] == NOISY_M
            h.docs[name] = doc
        cpu = make_result_doc(CPU_RUN[0], gpu=CPU_RUN[1], host=CPU_RUN[2])
        cpu["env"]["device"].update(type="cpu", label="cpu", index=None, total_memory_bytes=None)
        for rec in cpu["records"]:
            rec["device"] = "cpu"
        h.docs["cpu"] = cpu
        h.docs["coll"] = _collectives_doc()
        for name, doc in h.docs.items():
            status, answer, raw = client.upload(dumps(doc))
            assert status == 201, raw
            h.ids[name] = answer["id"]
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
    """The visible label of each bar (its text, and the lines it was wrapped onto, joined
    by spaces; not its <title> tooltip)."""
    return svg.locator("text.chart-label").evaluate_all(
        "els => els.map(e => [...e.childNodes].filter(n => n.nodeName !== 'title')"
        ".map(n => n.textContent).join(' '))")


# Every text of every chart on the page, and whether its box lies inside its SVG and the
# SVG inside the window's width: a label the server reserved too little room for is cut.
_CUT_TEXT = """() => {
  const out = [], vw = document.documentElement.clientWidth;
  for (const svg of document.querySelectorAll('svg.chart')) {
    const b = svg.getBoundingClientRect();
    if (b.left < -0.5 || b.right > vw + 0.5) out.push(['svg', svg.getAttribute('aria-label'), b.left, b.right, vw]);
    for (const t of svg.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      if (r.left < b.left - 0.5 || r.right > b.right + 0.5 || r.top < b.top - 0.5 || r.bottom > b.bottom + 0.5)
        out.push([t.textContent, r.left - b.left, b.right - r.right, r.top - b.top, b.bottom - r.bottom]);
    }
  }
  return out;
}"""


def _assert_nothing_cut(page):
    assert page.locator("svg.chart text").count() > 0
    assert page.evaluate(_CUT_TEXT) == []


def _attrs(locator, *names) -> list:
    """Each element's attributes (numbers as floats), one list per element."""
    got = locator.evaluate_all("(els, names) => els.map(e => names.map(n => e.getAttribute(n)))", list(names))
    return [[float(v) if re.fullmatch(r"-?[\d.]+", v or "") else v for v in row] for row in got]


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
    # Matmul's chart: TFLOP/s against shape, the shapes in order of work, a point per case.
    svg = page.page.locator("svg.chart")
    assert svg.count() == 1
    recs = sorted(hub.docs["l40s"]["records"], key=lambda r: r["params"]["m"] * r["params"]["n"] * r["params"]["k"])
    shapes = ["×".join(str(r["params"][d]) for d in "mnk") for r in recs]
    assert svg.locator("text.chart-tick").all_text_contents()[-len(shapes):] == shapes
    assert any("(TFLOP/s)" in t for t in svg.locator("text.chart-axis-title").all_text_contents())
    assert svg.locator("text.chart-legend").all_text_contents() == ["fp32"]
    points = sorted(_attrs(svg.locator("circle.chart-point"), "cx", "cy"))
    assert len(points) == len(recs) == 3
    _assert_linear([cy for _, cy in points], [r["metrics"]["tflops"] for r in recs])
    _assert_nothing_cut(page.page)
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
    HTML pages among them load in the browser with no errors. Links that differ only in
    their query's values (the boards of each case, on GPUs or CPUs) are followed for at
    most three of each kind: the rest are the same page with other data."""
    seen: set[str] = set()
    kinds: dict[tuple, int] = {}
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
        if not html:
            continue
        page.goto(path)
        pages += 1
        for href in page.page.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))"):
            u = urlsplit(urljoin(hub.url + path, href))
            assert u.netloc == urlsplit(hub.url).netloc, (path, href)     # no link leaves the hub
            target = u.path + (f"?{u.query}" if u.query else "")
            kind = (u.path, tuple(sorted(parse_qs(u.query))))
            if target not in seen and target not in queue and kinds.get(kind, 0) < 3 and len(seen) < 200:
                kinds[kind] = kinds.get(kind, 0) + 1
                queue.append(target)
    assert pages >= 8 and len(seen) >= 15, (pages, sorted(seen))
    assert all(f"/runs/{rid}" in seen for rid in hub.ids.values())
    assert f"{API}/runs/{hub.ids['a100']}" in seen
    assert "/docs" in seen and "/openapi.json" in seen
    page.check_clean()


def _assert_linear(ys: list[float], values: list[float]):
    """The drawn positions are a linear function of the values (a fit through the first
    and last point passes through every other within half a pixel)."""
    (y0, v0), (y1, v1) = (ys[0], values[0]), (ys[-1], values[-1])
    assert v1 != v0 and abs(y1 - y0) > 10
    for y, v in zip(ys, values):
        assert y == pytest.approx(y0 + (v - v0) * (y1 - y0) / (v1 - v0), abs=0.6), (ys, values)


def test_run_page_charts_every_benchmark_and_collectives_as_busbw_curves(page, hub):
    """Guards issue 13 item 10: a run page charted only its first metric (one chart), drew
    collectives as a bar per case, and cut long labels at the left edge. Now: a chart per
    benchmark; collectives as busbw (GB/s) against message size on a log2 axis labelled in
    KiB/MiB/GiB, one line per op and dtype; long labels whole and inside the chart."""
    page.goto(f"/runs/{hub.ids['coll']}")
    charts = page.page.locator("svg.chart")
    assert charts.count() == 2              # the collectives together, and custom-kernel
    coll = page.page.locator("svg.chart[aria-label*='busbw']")
    assert coll.count() == 1
    axis = coll.locator("text.chart-axis-title").all_text_contents()
    assert any("busbw" in t and "(GB/s)" in t for t in axis), axis
    assert any("message size" in t and "bytes" in t and "log2" in t for t in axis), axis
    ticks = coll.locator("text.chart-tick").all_text_contents()
    sizes = [t for t in ticks if re.fullmatch(r"[\d.]+ (B|KiB|MiB|GiB)", t)]
    scale = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    in_bytes = [float(t.split()[0]) * scale[t.split()[1]] for t in sizes]
    assert len(sizes) >= 3 and in_bytes == sorted(in_bytes)
    assert {"1 KiB", "1 MiB", "1 GiB"} <= set(sizes), sizes
    legend = coll.locator("text.chart-legend").all_text_contents()
    assert sorted(tuple(t.split()[:2]) for t in legend) == sorted((o, d) for o in COLL_OPS for d in COLL_DTYPES)
    series = coll.locator("g.chart-series")
    assert series.count() == len(COLL_OPS) * len(COLL_DTYPES) and coll.locator("polyline").count() == series.count()
    for i in range(series.count()):
        g = series.nth(i)
        op, dtype = g.locator("> title").text_content().split()[:2]
        points = sorted(_attrs(g.locator("circle"), "cx", "cy"))
        assert len(points) == len(COLL_SIZES)
        # Sizes grow ×4 a step: equal steps on a log2 axis.
        steps = [b[0] - a[0] for a, b in zip(points, points[1:])]
        assert max(steps) - min(steps) < 0.5 and steps[0] > 5, steps
        _assert_linear([cy for _, cy in points], [_busbw(op, dtype, size) for size in COLL_SIZES])
    # The benchmark with long case labels: bars, each label whole (wrapped, not cut).
    bars = page.page.locator("svg.chart[aria-label^='custom-kernel']")
    expected = [r["case_id"] for r in hub.docs["coll"]["records"] if r["benchmark"] == "custom-kernel"]
    assert len(expected[0]) > 60 and _svg_labels(bars) == expected
    assert any("(GB/s)" in t for t in bars.locator("text.chart-axis-title").all_text_contents())
    _assert_nothing_cut(page.page)
    page.check_clean()


def test_compare_page_charts_ratios_with_intervals_and_geometric_mean(page, hub):
    """Guards issue 13 item 10: the compare page was a table only, without the geometric
    mean the CLI prints. Now a ratio chart on a log axis (a dot per case and run, at its
    ratio, with its 90% interval; noisy cases marked) and per run the geometric mean with
    its interval, its number of cases and the noisy cases it left out."""
    names = ("l40s", "h100-b", "a100")
    ids = ",".join(hub.ids[n] for n in names)
    data = page.page.request.get(f"{hub.url}{API}/compare?ids={ids}").json()
    page.goto(f"/compare?ids={ids}")
    svg = page.page.locator("svg.chart")
    assert svg.count() == 1
    ref = _attrs(svg.locator("line.chart-ref"), "x1")[0][0]
    drawn = [(row, j) for row in data["rows"] for j in (1, 2) if row["ratios"][j] is not None]
    dots = _attrs(svg.locator("circle.chart-point"), "cx", "class")
    assert len(dots) == len(drawn) > 0
    # The runs' ratios differ (their scales), so one log scale for all is a real check.
    assert {round(row["ratios"][j], 3) for row, j in drawn} == {
        round(RUNS[n][3] / RUNS["l40s"][3], 3) for n in names[1:]}

    def scale(x, v):
        return (x - ref) / math.log(v)

    k = scale(dots[0][0], drawn[0][0]["ratios"][drawn[0][1]])
    for (cx, cls), (row, j) in zip(dots, drawn):
        assert scale(cx, row["ratios"][j]) == pytest.approx(k, rel=0.01)
        assert ("chart-noisy" in cls) == bool(row["noisy"][j])
    # The intervals: a bar from lo to hi for every ratio that has one.
    cis = [row["ratio_ci"][j] for row, j in drawn if row["ratio_ci"][j]]
    bars = [(x1, x2) for x1, x2, y1, y2 in _attrs(svg.locator("line.chart-interval"), "x1", "x2", "y1", "y2")
            if y1 == y2]
    assert len(cis) == len(drawn) and len(bars) == len(cis) + 2        # + the two geometric means'
    for (x1, x2), (lo, hi) in zip(bars, cis):
        assert lo < hi
        assert scale(x1, lo) == pytest.approx(k, rel=0.01) and scale(x2, hi) == pytest.approx(k, rel=0.01)
    # The geometric means: a diamond each, and a sentence with interval, cases and what was left out.
    noisy_labels = {j: [f"{r['benchmark']} {r['label']}" for r in data["rows"]
                        if r["noisy"][j] and r["ratios"][j] is not None] for j in (1, 2)}
    assert [len(v) for v in noisy_labels.values()] == [1, 0]           # the h100-b record of m=NOISY_M
    diamonds = svg.locator("polygon.chart-geomean")
    assert diamonds.count() == 2
    for j in (1, 2):
        g = data["geomean"][j]
        measured = [r for r in data["rows"] if r["ratios"][j] is not None]
        assert g["n"] == len(measured) - len(noisy_labels[j]) and g["noisy_left_out"] == len(noisy_labels[j])
        xs = [float(p.split(",")[0]) for p in diamonds.nth(j - 1).get_attribute("points").split()]
        assert scale((min(xs) + max(xs)) / 2, g["value"]) == pytest.approx(k, rel=0.01)
        text = " ".join(page.page.locator(f"p.summary[data-run='{j + 1}']").inner_text().split())
        assert f"geometric mean {g['value']:.3g}×" in text
        assert f"90% interval {g['lo']:.3g}–{g['hi']:.3g}×" in text
        assert f"over {g['n']} case{'s' if g['n'] != 1 else ''}" in text
        if noisy_labels[j]:
            assert f"{len(noisy_labels[j])} noisy case left out" in text
            assert all(label in text for label in noisy_labels[j])
        else:
            assert "left out" not in text
    axis = svg.locator("text.chart-axis-title").all_text_contents()
    assert any("ratio to run 1" in t and "log" in t for t in axis)
    _assert_nothing_cut(page.page)
    page.check_clean()


def test_cpu_runs_have_a_board_of_their_own(page, hub):
    """Guards issue 13 item 10: leaderboards mixed CPU runs with GPUs. The default board
    holds the GPUs; a visible link shows the CPUs' board, another both together."""
    page.goto("/leaderboard?benchmark=matmul")
    gpus = [r[0] for r in _table_rows(page.page.locator("main table").first)[1:]]
    assert not any(CPU_RUN[1] in g for g in gpus) and len(gpus) == len(GPU_MODELS)
    page.page.locator("#devices a[data-device=cpu]").click()
    page.page.wait_for_load_state()
    assert parse_qs(urlsplit(page.page.url).query)["device"] == ["cpu"]
    rows = _table_rows(page.page.locator("main table").first)[1:]
    assert [r[0].rsplit(" ", 1)[0] for r in rows] == [CPU_RUN[1]] and rows[0][6] == hub.ids["cpu"]
    assert _svg_labels(page.page.locator("svg.chart")) == [CPU_RUN[1]]
    assert "per CPU model" in page.page.locator("svg.chart").get_attribute("aria-label")
    _assert_nothing_cut(page.page)
    page.page.locator("#devices a[data-device=all]").click()
    page.page.wait_for_load_state()
    both = [r[0].rsplit(" ", 1)[0] for r in _table_rows(page.page.locator("main table").first)[1:]]
    assert sorted(both) == sorted(GPU_MODELS + [CPU_RUN[1]])
    # The index says how many CPU runs a board has, and links to their board.
    page.goto("/")
    row = page.page.locator("table.boards tr", has=page.page.get_by_role("link", name="matmul", exact=True))
    link = row.locator("a", has_text="on CPUs")
    assert link.inner_text() == "1 on CPUs"
    assert parse_qs(urlsplit(link.get_attribute("href")).query)["device"] == ["cpu"]
    page.check_clean()


def test_api_docs_render_offline(page, hub):
    """Guards issue 13 item 9: /docs was FastAPI's Swagger UI, loaded from a CDN, so blank
    offline. Now the hub's own page: it asks nothing of another host and lists every
    operation of /openapi.json and every schema, readable with the network cut off."""
    outside: list[str] = []
    host = urlsplit(hub.url).netloc

    def only_the_hub(route):
        if urlsplit(route.request.url).netloc != host:
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.context.route("**/*", only_the_hub)
    page.goto("/docs")
    schema = page.page.request.get(f"{hub.url}/openapi.json").json()
    ops = [" ".join(h.split()) for h in page.page.locator("section.operation h3").all_inner_texts()]
    assert sorted(ops) == sorted(f"{m.upper()} {p}" for p, item in schema["paths"].items() for m in item)
    assert sorted(page.page.locator("section.schema h3").all_inner_texts()) == sorted(schema["components"]["schemas"])
    for op in page.page.locator("section.operation").all():
        assert op.is_visible() and op.locator("h4", has_text="Responses").count() == 1
    external = page.page.evaluate("() => [...document.querySelectorAll('[src], link[href]')]"
                                  ".map(e => e.src || e.href).filter(u => /^https?:/.test(u) && new URL(u).host !== location.host)")
    assert outside == [] and external == []
    page.check_clean()


def test_boards_draw_published_figures_as_marks_beside_an_imported_upload(page, hub):
    """Guards issue 15: an nccl-tests log imported with `gpubench import` uploads like a
    gpubench file and says it was imported; its case's board draws the published figures
    of that case as reference marks labelled "published", never as bars or table rows of
    uploads, at the values of the baselines table."""
    from pathlib import Path
    from urllib.parse import quote

    from gpubench import baselines
    from gpubench.importers import import_file
    from gpubench.results import clean_floats

    run = import_file(Path(__file__).parent / "data" / "import" / "nccl-tests" / "issue290-8xh100-all_reduce.txt")
    client = hub.client()
    status, answer, raw = client.upload(dumps(clean_floats(run.to_dict())))
    client.close()
    assert status == 201, raw
    page.goto(f"/runs/{answer['id']}")
    assert "imported from" in page.page.locator("main table").first.inner_text()
    case = "all_reduce[dtype=fp32,inplace=True,size_bytes=1073741824,world_size=8]"
    page.goto(f"/leaderboard?benchmark=all_reduce&case_id={quote(case)}")
    want = baselines.for_board("all_reduce", "busbw_gbps", case)
    assert want
    svg = page.page.locator("svg.chart")
    marks = svg.locator("g.chart-published")
    assert sorted(float(v) for v in marks.evaluate_all("els => els.map(e => e.dataset.value)")) == \
        sorted(b.value for b in want)
    assert _svg_labels(svg)[1:] == [f"published: {b.label}" for b in want]
    # Uploads stay bars, one per GPU model (both H100 runs in one); the ranking table lists no figure.
    assert svg.locator("rect.chart-bar").count() == 1
    assert len(_table_rows(page.page.locator("main table").first)) == 2
    rows = _table_rows(page.page.locator("table.published"))
    assert [r[1] for r in rows[1:]] == [b.label for b in want] and all(b.url in r[5] for b, r in zip(want, rows[1:]))
    _assert_nothing_cut(page.page)
    page.check_clean()
