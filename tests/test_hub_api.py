"""The hub over HTTP (FastAPI's TestClient, SQLite in tmp_path): uploads, reads,
errors, auth, pages, escaping, and the real `gpubench hub serve` process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")

import sqlalchemy as sa
from hub_helpers import (
    TestClient,
    as_machine,
    dumps,
    fresh_database_url,
    main_value,
    real_results,
)

from gpubench.hub import store
from gpubench.hub.app import create_app
from gpubench.hub.auth import create_token, revoke_token
from gpubench.hub.models import RecordRow, RunRow

API = "/api/v1"
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    return real_results(tmp_path_factory)


class Hub:
    def __init__(self, tmp_path, **kw):
        self.url = fresh_database_url(tmp_path)
        self.app = create_app(self.url, auto_migrate=True, **kw)
        self.sf = self.app.state.hub.session_factory
        self.client = TestClient(self.app, raise_server_exceptions=False)
        with self.sf() as s:
            self.token = create_token(s, "uploader")
        self.auth = {"Authorization": f"Bearer {self.token}"}

    def upload(self, body, headers=None):
        if isinstance(body, dict):
            body = dumps(body)
        return self.client.post(f"{API}/runs", content=body, headers=self.auth if headers is None else headers)

    def counts(self):
        engine = self.app.state.hub.engine
        with engine.connect() as c:
            return tuple(c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                         for t in (RunRow.__table__, RecordRow.__table__))


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path)
    yield h
    h.client.close()
    h.app.state.hub.engine.dispose()


# ---- upload ----

def test_upload_then_same_content_again(hub, files):
    raw = files["membw"]
    r = hub.upload(raw)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "url", "created"} and body["created"] is True
    assert len(body["id"]) == 16 and body["url"].endswith(f"/runs/{body['id']}")
    again = hub.upload(raw)
    assert again.status_code == 200 and again.json() == {**body, "created": False}
    doc = json.loads(raw)
    reformatted = json.dumps(dict(reversed(list(doc.items()))), indent=4).encode()
    assert reformatted != raw
    r3 = hub.upload(reformatted)
    assert r3.status_code == 200 and r3.json()["id"] == body["id"]
    assert hub.counts() == (1, len(doc["records"]))
    other = hub.upload(files["matmul"])
    assert other.status_code == 201 and other.json()["id"] != body["id"]


def test_base_url_makes_the_links(tmp_path, files):
    h = Hub(tmp_path, base_url="https://hub.example.org/")
    r = h.upload(files["membw"])
    assert r.json()["url"] == f"https://hub.example.org/runs/{r.json()['id']}"


# ---- reads ----

def _populate(hub, files):
    ids = {}
    for host, scale, gpu, key, day in (
            ("h1", 1.0, "NVIDIA H100 80GB HBM3", "h100-sxm", "2026-01-10"),
            ("h2", 3.0, "NVIDIA H100 80GB HBM3", "h100-sxm", "2026-02-10"),
            ("h3", 2.0, "NVIDIA H100 80GB HBM3", "h100-sxm", "2026-03-10"),
            ("a1", 1.5, "NVIDIA A100-SXM4-80GB", "a100-sxm-80gb", "2026-02-15")):
        doc = as_machine(files["membw"], gpu=gpu, spec_key=key, host=host, scale=scale,
                         started_at=f"{day}T12:00:00+00:00")
        r = hub.upload(doc)
        assert r.status_code == 201, r.text
        ids[host] = (r.json()["id"], doc)
    mm = as_machine(files["matmul"], host="h4", started_at="2026-04-01T00:00:00+00:00")
    ids["h4"] = (hub.upload(mm).json()["id"], mm)
    return ids


def test_list_runs_filters_and_pages(hub, files):
    ids = _populate(hub, files)
    c = hub.client
    body = c.get(f"{API}/runs").json()
    assert body["total"] == 5 and body["limit"] == 50 and body["offset"] == 0
    first = body["items"][0]
    assert set(first) == {"id", "url", "suite", "status", "gpu_name", "gpu_key", "device_type", "host",
                          "started_at", "uploaded_at", "n_records"}
    assert first["id"] == ids["h4"][0]
    assert c.get(f"{API}/runs", params={"gpu": "h100"}).json()["total"] == 4
    assert c.get(f"{API}/runs", params={"gpu": "A100-SXM4"}).json()["total"] == 1
    assert c.get(f"{API}/runs", params={"suite": "matmul"}).json()["total"] == 1
    got = c.get(f"{API}/runs", params={"since": "2026-02-01", "until": "2026-02-28"}).json()
    assert got["total"] == 2 and {i["host"] for i in got["items"]} == {"h2", "a1"}
    seen = []
    for offset in (0, 2, 4):
        page = c.get(f"{API}/runs", params={"limit": 2, "offset": offset}).json()
        assert page["total"] == 5 and page["offset"] == offset
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"},
                                    {"offset": 10 ** 30}, {"since": "last week"}, {"until": "2026-13-45"},
                                    {"gpu": "a\x00b"}, {"gpu": "g" * 300}])
def test_bad_list_queries_are_422(hub, params):
    r = hub.client.get(f"{API}/runs", params=params)
    assert r.status_code == 422, r.text


def test_get_run_and_404s(hub, files):
    rid = hub.upload(files["matmul"]).json()["id"]
    r = hub.client.get(f"{API}/runs/{rid}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["id"] == rid and body["document"] == json.loads(files["matmul"])
    assert body["gpu_key"] == "amd-epyc" and body["n_records"] == 1 and body["uploader"] == "uploader"
    assert r.json()["url"].endswith(f"/runs/{rid}")
    assert hub.client.get(f"{API}/runs/{rid.upper()}").status_code == 200
    for bad in ("0" * 16, "zzzz", "x" * 5000, "%2e%2e%2f%2e%2e", "abc%00def", "1;DROP TABLE runs"):
        r = hub.client.get(f"{API}/runs/{bad}")
        assert r.status_code in (404, 422), (bad, r.status_code)
        assert r.headers["content-type"].startswith("application/json")
    assert hub.client.get(f"{API}/runs/{'0' * 16}").json()["detail"]["field"] == "run_id"
    assert hub.client.get("/runs/" + "0" * 16).status_code == 404


def test_compare_two_runs(hub, files):
    ids = _populate(hub, files)
    a, b = ids["h1"][0], ids["a1"][0]
    r = hub.client.get(f"{API}/compare", params={"ids": f"{a},{b}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["id"] for x in body["runs"]] == [a, b]
    assert body["runs"][1]["gpu"] == "NVIDIA A100-SXM4-80GB"
    assert len(body["rows"]) == 3
    assert all(row["ratios"][0] == 1.0 and row["ratios"][1] == pytest.approx(1.5) for row in body["rows"])
    # A case one run lacks: missing, with no value.
    mixed = hub.client.get(f"{API}/compare", params={"ids": f"{a},{ids['h4'][0]}"}).json()
    assert any(row["statuses"] == ["ok", "missing"] and row["values"][1] is None for row in mixed["rows"])
    assert hub.client.get(f"{API}/compare", params={"ids": a}).status_code == 422
    assert hub.client.get(f"{API}/compare", params={"ids": ",".join([a] * 5)}).status_code == 422
    assert hub.client.get(f"{API}/compare", params={"ids": f"{a},nothex"}).status_code == 422
    missing = hub.client.get(f"{API}/compare", params={"ids": f"{a},{'f' * 16}"})
    assert missing.status_code == 404 and missing.json()["detail"]["field"] == "ids"


def test_compare_api_gives_intervals_and_geometric_means(hub, files):
    """Guards issue 13 item 10: the compare JSON's per-run geometric mean (with its
    interval and the noisy cases left out) and per-case ratio intervals reach API clients
    and the page; the response model used to drop every key it did not list."""
    docs = [as_machine(files["membw"], host=f"n{i}", scale=scale) for i, scale in enumerate((1.0, 1.5))]
    for doc in docs:
        for rec in doc["records"]:
            t = rec["timing"]
            t["high_cov"] = False
            # Tight, fixed samples: the interval under test is the page's, not this machine's
            # noise (real CPU samples on a busy machine straddle 1.5× / 1 and made it flaky).
            t["samples_s"] = [t["median_s"] * (1 + 0.002 * ((i % 7) - 3)) for i in range(40)]
    docs[1]["records"][0]["timing"]["high_cov"] = True          # one noisy case, in run 2
    a, b = (hub.upload(doc).json()["id"] for doc in docs)
    body = hub.client.get(f"{API}/compare", params={"ids": f"{a},{b}"}).json()
    rows = body["rows"]
    assert len(rows) >= 2 and all(row["ratios"][1] == pytest.approx(1.5) for row in rows)
    assert [row["noisy"][1] for row in rows] == [True] + [False] * (len(rows) - 1)
    for row in rows:
        lo, hi = row["ratio_ci"][1]
        assert lo < 1.5 < hi and row["significant"][1] is True
    g = body["geomean"]
    assert g[0] is None and (g[1]["n"], g[1]["noisy_left_out"]) == (len(rows) - 1, 1)
    assert g[1]["value"] == pytest.approx(1.5) and g[1]["lo"] < g[1]["value"] < g[1]["hi"]
    page = hub.client.get("/compare", params={"ids": f"{a},{b}"}).text
    assert "chart-geomean" in page and "1 noisy case left out" in page
    assert f"{rows[0]['benchmark']} {rows[0]['label']}" in page


def test_leaderboards_keep_cpu_runs_apart(hub, files):
    """Guards issue 13 item 10: a CPU run ranked among GPUs. Boards are GPUs by default,
    CPUs with device=cpu, both with device=all; the index links each board's CPU runs."""
    ids = _populate(hub, files)
    cpu = hub.upload(files["matmul"]).json()["id"]           # as gpubench wrote it: on the CPU
    cpu_key = store.gpu_key_for(json.loads(files["matmul"])["env"])
    gpu_key = store.gpu_key_for(ids["h4"][1]["env"])

    def board(**params):
        r = hub.client.get(f"{API}/leaderboard", params={"benchmark": "matmul", **params})
        assert r.status_code == 200, r.text
        return r.json()

    assert [it["gpu_key"] for it in board()["items"]] == [gpu_key] and board()["device"] == "gpu"
    assert [(it["gpu_key"], it["best_run_id"]) for it in board(device="cpu")["items"]] == [(cpu_key, cpu)]
    assert {it["gpu_key"] for it in board(device="all")["items"]} == {gpu_key, cpu_key}
    bad = hub.client.get(f"{API}/leaderboard", params={"benchmark": "matmul", "device": "tpu"})
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "device"
    page = hub.client.get("/leaderboard", params={"benchmark": "matmul"}).text
    assert ids["h4"][0] in page and cpu not in page and "device=cpu" in page
    assert cpu in hub.client.get("/leaderboard", params={"benchmark": "matmul", "device": "cpu"}).text
    assert "1 on CPUs" in hub.client.get("/").text


def test_leaderboard_across_uploads(hub, files):
    ids = _populate(hub, files)
    r = hub.client.get(f"{API}/leaderboard", params={"suite": "membw", "benchmark": "membw", "metric": "gbps"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["suite"], body["benchmark"], body["metric"], body["unit"]) == ("membw", "membw", "gbps", "GB/s")
    h100, a100 = body["items"]
    values = sorted(main_value(ids[h][1]) for h in ("h1", "h2", "h3"))
    assert h100["gpu_key"] == "h100-sxm" and h100["uploads"] == 3
    assert (h100["min"], h100["median"], h100["max"]) == pytest.approx(tuple(values))
    assert h100["best"] == pytest.approx(values[-1]) and h100["best_run_id"] == ids["h2"][0]
    assert a100["gpu_key"] == "a100-sxm-80gb" and a100["uploads"] == 1
    r = hub.client.get(f"{API}/leaderboard")
    assert r.status_code == 422        # benchmark is required; the error names it, in the documented shape
    assert r.json()["detail"]["field"] == "benchmark" and r.json()["detail"]["message"]


def test_a_case_board_compares_like_with_like(hub, files):
    ids = _populate(hub, files)
    doc = ids["h1"][1]
    cases = [r for r in doc["records"] if r["status"] == "ok"]
    assert len(cases) >= 2          # the benchmark's board mixes them: each upload's best case
    smallest = min(cases, key=lambda r: r["params"]["size_bytes"])
    page = hub.client.get("/leaderboard", params={"suite": "membw", "benchmark": "membw", "metric": "gbps"})
    assert page.status_code == 200 and "One case at a time" in page.text
    assert "copy 4 MiB" in page.text and "case_id=" in page.text
    r = hub.client.get(f"{API}/leaderboard", params={"benchmark": "membw", "metric": "gbps",
                                                     "case_id": smallest["case_id"]})
    h100 = next(it for it in r.json()["items"] if it["gpu_key"] == "h100-sxm")
    values = []
    for host in ("h1", "h2", "h3"):
        rec = next(x for x in ids[host][1]["records"] if x["case_id"] == smallest["case_id"])
        values.append(rec["metrics"]["gbps"])
    assert h100["best"] == pytest.approx(max(values)) and h100["uploads"] == 3
    assert (h100["min"], h100["max"]) == pytest.approx((min(values), max(values)))


# ---- rejected uploads store nothing ----

def _edit(raw, fn):
    doc = json.loads(raw)
    fn(doc)
    return dumps(doc)


REJECTED = [
    ("not-json", lambda raw: b"{{{", 400, "body"),
    ("not-utf8", lambda raw: b"\xc3\x28", 400, "body"),
    ("no-version", lambda raw: _edit(raw, lambda d: d.pop("schema_version")), 422, "schema_version"),
    ("future-version", lambda raw: _edit(raw, lambda d: d.update(schema_version=99)), 422, "schema_version"),
    ("negative-time", lambda raw: _edit(raw, lambda d: d["records"][0]["timing"].update(median_s=-1)), 422,
     "records[0].timing.median_s"),
    ("bad-status", lambda raw: _edit(raw, lambda d: d["records"][0].update(status="winning")), 422,
     "records[0].status"),
    ("unknown-metric", lambda raw: _edit(raw, lambda d: d["records"][0]["metrics"].update(vibes=1)), 422,
     "records[0].metrics.vibes"),
    ("absurd-tflops", lambda raw: _edit(raw, lambda d: (
        d["env"]["device"].update(name="NVIDIA H100 80GB HBM3", spec_key="h100-sxm", type="cuda"),
        d["records"][0]["metrics"].update(tflops=1000.0))), 422, "records[0].metrics.tflops"),
    ("long-host", lambda raw: _edit(raw, lambda d: d["env"]["host"].update(hostname="h" * 50_000)), 422,
     "env.host.hostname"),
]


@pytest.mark.parametrize("make, status, field", [x[1:] for x in REJECTED], ids=[x[0] for x in REJECTED])
def test_rejected_uploads_name_the_field_and_store_nothing(hub, files, make, status, field):
    hub.upload(files["membw"])
    before = hub.counts()
    r = hub.upload(make(files["matmul"]))
    assert r.status_code == status, r.text
    assert r.json() == {"detail": {"field": field, "message": r.json()["detail"]["message"]}}
    assert r.json()["detail"]["message"]
    assert hub.counts() == before


def test_body_size_cap(tmp_path, files):
    h = Hub(tmp_path, max_upload_bytes=4096)
    raw = files["membw"]
    assert len(raw) > 4096
    r = h.upload(raw)
    assert r.status_code == 413 and r.json()["detail"]["field"] == "body"

    def chunks():                       # no Content-Length: chunked transfer
        for i in range(0, len(raw), 1000):
            yield raw[i:i + 1000]

    r = h.client.post(f"{API}/runs", content=chunks(), headers=h.auth)
    assert r.status_code == 413
    assert h.counts() == (0, 0)


def test_body_size_cap_ignores_a_lying_content_length(tmp_path, files):
    """Content-Length says 10 bytes, the body is 20 kB: counted, refused."""
    h = Hub(tmp_path, max_upload_bytes=4096)
    raw = files["membw"]
    sent = []

    async def call():
        chunks = [raw[i:i + 1000] for i in range(0, len(raw), 1000)]
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    for i, c in enumerate(chunks)]

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": f"{API}/runs", "raw_path": f"{API}/runs".encode(), "query_string": b"",
                 "root_path": "", "server": ("test", 80), "client": ("127.0.0.1", 1),
                 "headers": [(b"host", b"test"), (b"content-length", b"10"),
                             (b"authorization", f"Bearer {h.token}".encode())]}
        await h.app(scope, receive, send)

    asyncio.run(call())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert h.counts() == (0, 0)


# ---- auth ----

def test_uploads_need_a_valid_token(hub, files):
    raw = files["membw"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {hub.token}"},
                    {"Authorization": "Bearer"}, {"Authorization": "Bearer " + "x" * 5000}):
        r = hub.upload(raw, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"]["field"] == "Authorization"
    assert hub.counts() == (0, 0)
    with hub.sf() as s:
        revoke_token(s, "uploader")
    assert hub.upload(raw).status_code == 401
    assert hub.counts() == (0, 0)
    assert hub.client.get(f"{API}/runs").status_code == 200            # reads stay public


def test_private_reads_need_a_token(tmp_path, files):
    h = Hub(tmp_path, public_reads=False)
    rid = h.upload(files["membw"]).json()["id"]
    for path in (f"{API}/runs", f"{API}/runs/{rid}", f"{API}/leaderboard?benchmark=membw", "/", f"/runs/{rid}"):
        r = h.client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        assert h.client.get(path, headers=h.auth).status_code == 200, path
    assert h.client.get(f"{API}/health").status_code == 200


# ---- pages ----

def test_pages_render(hub, files):
    ids = _populate(hub, files)
    a, b, mm = ids["h1"][0], ids["a1"][0], ids["h4"][0]
    pages = {
        "/": [a, b, mm, "membw", "leaderboard?"],
        "/runs": [a, b, "NVIDIA A100-SXM4-80GB"],
        "/runs?gpu=a100": [b],
        f"/runs/{a}": [a, "NVIDIA H100 80GB HBM3", "h1", "<svg", "copy 4 MiB"],
        "/leaderboard?suite=membw&benchmark=membw&metric=gbps": ["<svg", "h100-sxm", "a100-sxm-80gb",
                                                                  ids["h2"][0], "chart-whisker"],
        f"/compare?ids={a},{b}": [a, b, "NVIDIA A100-SXM4-80GB", "1.5×"],
        f"/compare?ids={a},{mm}": ["missing"],
        "/leaderboard": ["membw"],
        "/compare": ["ids"],
    }
    for path, needles in pages.items():
        r = hub.client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        for n in needles:
            assert n in r.text, (path, n)
    assert ids["h2"][0] not in hub.client.get("/runs?gpu=a100").text
    assert hub.client.get("/compare?ids=zz").status_code == 422
    assert hub.client.get(f"/compare?ids={a},{'e' * 16}").status_code == 404


def test_pages_escape_uploaded_text(hub, files):
    doc = as_machine(files["membw"], gpu=f"GPU {XSS}", spec_key=None, host=XSS)
    doc["suite"] = "<b>suite</b>"
    doc["records"][0]["params"]["op"] = '"><img src=x onerror=alert(2)>'
    rid = hub.upload(doc).json()["id"]
    other = hub.upload(files["matmul"]).json()["id"]
    for path in ("/", "/runs", f"/runs/{rid}", f"/compare?ids={rid},{other}",
                 "/leaderboard?benchmark=membw", "/leaderboard"):
        text = hub.client.get(path).text
        assert XSS not in text and "<img src=x" not in text and "<b>suite</b>" not in text, path
    page = hub.client.get(f"/runs/{rid}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;" in hub.client.get("/leaderboard?benchmark=membw").text      # the SVG labels too


# ---- errors and docs ----

def test_unexpected_errors_are_500_json_without_traceback(hub, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(store, "list_runs", boom)
    r = hub.client.get(f"{API}/runs")
    assert r.status_code == 500
    assert r.json() == {"detail": {"field": None, "message": "internal server error"}}
    assert "Traceback" not in r.text and "secret" not in r.text


def test_database_trouble_is_503(hub, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def locked(*a, **k):
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "list_runs", locked)
    r = hub.client.get(f"{API}/runs")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["detail"]["message"].startswith("the database is busy")


def test_openapi_schema_is_useful(hub):
    schema = hub.client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {f"{API}/runs", f"{API}/runs/{{run_id}}", f"{API}/compare", f"{API}/leaderboard",
                          f"{API}/health"}
    post = paths[f"{API}/runs"]["post"]
    assert post["summary"] and {"201", "200", "400", "401", "413", "422"} <= set(post["responses"])
    for path, ops in paths.items():
        for op in ops.values():
            assert op.get("summary"), path
            assert "$ref" in json.dumps(op["responses"]["200" if "200" in op["responses"] else "201"]), path
    assert hub.client.get("/docs").status_code == 200
    assert hub.client.get(f"{API}/health").json() == {"status": "ok"}


def test_api_docs_need_no_cdn(hub):
    """Guards issue 13 item 9: /docs was Swagger UI from a CDN, blank offline. Now the
    hub's own HTML: no URL of another host, no script, and every operation, parameter and
    schema of /openapi.json on it; /redoc leads there."""
    r = hub.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert re.search(r"https?://|<script|//cdn", html, re.I) is None, re.search(r"https?://\S*|<script", html)
    from gpubench.hub.apidocs import op_anchor

    schema = hub.client.get("/openapi.json").json()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            assert f'id="{op_anchor(method, path)}"' in html and path in html, (method, path)
            for p in op.get("parameters", []):
                assert f'<td class="mono">{p["name"]}</td>' in html, (path, p["name"])
    for name in schema["components"]["schemas"]:
        assert f'href="#schema-{name}"' in html or name in html, name
        assert f'id="schema-{name}"' in html, name
    # The upload's body and its token are in the schema, so on the page too.
    post = schema["paths"][f"{API}/runs"]["post"]
    assert post["requestBody"]["content"]["application/json"] and post["security"] == [{"bearer": []}]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "needs a bearer token" in html
    redoc = hub.client.get("/redoc", follow_redirects=False)
    assert redoc.status_code == 308 and redoc.headers["location"] == "/docs"


def test_unmigrated_database_is_refused_not_created(tmp_path):
    url = fresh_database_url(tmp_path)
    app = create_app(url)
    with pytest.raises(RuntimeError, match="schema revision None"), TestClient(app):
        pass
    engine = store.create_engine(url)
    assert sa.inspect(engine).get_table_names() == []      # no create_all behind Alembic's back
    engine.dispose()


# ---- the real server ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gpubench_hub_serve(tmp_path, files):
    """`gpubench hub serve` migrates an empty database and serves uploads and pages."""
    import httpx

    url = fresh_database_url(tmp_path)
    env = {**os.environ, "GPUBENCH_DATABASE_URL": url}
    created = subprocess.run([sys.executable, "-m", "gpubench", "hub", "token", "create", "ci"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gpubench", "hub", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}{API}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        r = httpx.post(f"{base}{API}/runs", content=files["membw"], timeout=30,
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        assert r.json()["url"] == f"{base}/runs/{r.json()['id']}"
        assert httpx.post(f"{base}{API}/runs", content=files["membw"], timeout=30).status_code == 401
        page = httpx.get(r.json()["url"], timeout=30)
        assert page.status_code == 200 and "<svg" in page.text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
