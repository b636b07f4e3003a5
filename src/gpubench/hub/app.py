"""The hub's web application: a JSON API under /api/v1 and server-rendered pages.

``create_app(url)`` builds everything from the database URL; the only state is
``app.state.hub`` (engine, session factory, settings), so a test or a second
server process gets its own. The schema must already be migrated
(``store.migrate``; ``gpubench hub serve`` does it) unless ``auto_migrate=True``:
the app never creates tables itself.

Errors are JSON ``{"detail": {"field": ..., "message": ...}}`` with the status
saying whose fault it is: 400/413/422 a bad upload, 401 no valid token, 404 no
such thing, 503 the database is busy or down (retry), 500 a bug (no traceback in
the body; it goes to the log).
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import ClientDisconnect

from gpubench.hub import apidocs, charts, figures, store
from gpubench.hub import vocabulary as V
from gpubench.hub.auth import require_read, require_token
from gpubench.hub.validate import UploadRejected, parse_upload

log = logging.getLogger("gpubench.hub")

API = "/api/v1"
# Query text: no NUL (PostgreSQL cannot take it as a parameter), bounded length.
_TEXT = r"^[^\x00]*$"
_DEVICES = "^(" + "|".join(store.DEVICES) + ")$"


@dataclass
class HubState:
    engine: Engine
    session_factory: store.SessionFactory
    public_reads: bool
    max_upload_bytes: int
    base_url: str | None
    templates: Environment

    def run_url(self, request: Request, run_id: str) -> str:
        base = self.base_url or str(request.base_url)
        return f"{base.rstrip('/')}/runs/{run_id}"

    @property
    def root(self) -> str:
        """Path prefix of the pages' links when the hub is served below / (from base_url)."""
        return urlparse(self.base_url).path.rstrip("/") if self.base_url else ""


# ---- response models (the OpenAPI schema; also what a fuzzer checks against) ----

class ErrorDetail(BaseModel):
    field: str | None = Field(description="the request part or document field at fault, "
                                          "e.g. records[3].timing.median_s")
    message: str


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class UploadResponse(BaseModel):
    id: str = Field(description="16 hex digits of the SHA-256 of the canonical JSON")
    url: str = Field(description="the run's page")
    created: bool = Field(description="false when the same content was already stored")


class RunSummary(BaseModel):
    id: str
    url: str
    suite: str
    status: str
    gpu_name: str | None
    gpu_key: str
    device_type: str | None
    host: str | None
    started_at: str | None
    uploaded_at: str
    n_records: int


class RunList(BaseModel):
    items: list[RunSummary]
    total: int
    limit: int
    offset: int


class RunDetail(RunSummary):
    uploader: str | None
    schema_version: int
    gpubench_version: str | None
    size_bytes: int
    document: dict[str, Any] = Field(description="the result file as uploaded")


class CompareRun(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    gpu: str
    host: str
    started_at: str | None
    suite: str
    run_id: str


class CompareRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    case_id: str
    benchmark: str
    label: str
    metric: str
    unit: str
    values: list[float | None]
    ratios: list[float | None]
    pct_of_peak: list[float | None]
    statuses: list[str]
    ratio_ci: list[list[float] | None] | None = Field(
        None, description="per run: the 90% interval [lo, hi] of its ratio to run 1, from the timing samples")
    significant: list[bool | None] | None = Field(
        None, description="per run: false when the ratio's interval contains 1")
    noisy: list[bool] | None = Field(
        None, description="per run: its record or run 1's has a high coefficient of variation")


class CompareGeomean(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: float | None = Field(description="geometric mean of the ratios to run 1")
    lo: float | None = Field(None, description="its 90% interval")
    hi: float | None = None
    n: int = Field(description="cases averaged")
    noisy_left_out: int = Field(0, description="cases both runs measured, left out as noisy")


class CompareResponse(BaseModel):
    runs: list[CompareRun]
    rows: list[CompareRow]
    geomean: list[CompareGeomean | None] | None = Field(
        None, description="per run (run 1: null): the geometric mean of its ratios to run 1")


class LeaderboardItem(BaseModel):
    gpu_key: str
    gpu_name: str | None
    best: float
    median: float
    min: float
    max: float
    uploads: int
    best_run_id: str


class LeaderboardResponse(BaseModel):
    suite: str | None
    benchmark: str
    metric: str | None
    unit: str | None
    case_id: str | None
    device: str = Field(description="gpu: runs not on a CPU; cpu; or all")
    higher_is_better: bool
    items: list[LeaderboardItem]
    published: list[dict[str, Any]] = Field(
        default_factory=list, description="figures others measured and published for this benchmark and metric "
                                          "(on a case's board: that case, or its nearest), per GPU; reference "
                                          "marks, never uploads (gpubench/data/baselines.csv)")


class Health(BaseModel):
    status: str


# Dependencies as annotated types: the caller's token name (uploads), or None when reads are public.
Uploader = Annotated[str, Depends(require_token)]
Reader = Annotated[str | None, Depends(require_read)]

_ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 422, 503)}
_UPLOAD_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503)}


def _error(status: int, field: str | None, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail={"field": field, "message": message})


def _state(request: Request) -> HubState:
    return request.app.state.hub


def _valid_id(run_id: str) -> str | None:
    rid = run_id.strip().lower()
    return rid if store.ID_PATTERN.match(rid) else None


def _parse_ids(ids: str) -> list[str]:
    parts = [p.strip().lower() for p in ids.split(",") if p.strip()]
    if not 2 <= len(parts) <= 4:
        raise _error(422, "ids", f"give 2 to 4 run ids separated by commas (got {len(parts)})")
    for p in parts:
        if not store.ID_PATTERN.match(p):
            raise _error(422, "ids", f"{p[:40]!r} is not a run id (16 hex digits)")
    return parts


def _bounds(since: str | None, until: str | None):
    try:
        s = store.parse_bound(since, end=False)[0] if since else None
    except ValueError as e:
        raise _error(422, "since", str(e)) from None
    try:
        u = store.parse_bound(until, end=True) if until else None
    except ValueError as e:
        raise _error(422, "until", str(e)) from None
    return s, u


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes however the client framed it:
    Content-Length may be absent (chunked) or lie, so count what arrives."""
    declared = request.headers.get("content-length")
    if declared and declared.strip().isdigit() and int(declared) > limit:
        raise UploadRejected(413, "body", f"the upload is larger than the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadRejected(413, "body", f"the upload is larger than the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise UploadRejected(400, "body", "the client disconnected before the body ended") from None
    return b"".join(chunks)


# ---- the JSON API ----

def _api_router() -> APIRouter:
    r = APIRouter(prefix=API, tags=["api"])

    @r.post("/runs", status_code=201, response_model=UploadResponse, responses={
        200: {"model": UploadResponse, "description": "the same content was already stored"},
        **_UPLOAD_ERRORS}, summary="Upload a result file", openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "a gpubench result file, as `gpubench run` wrote it"}}}},
        "security": [{"bearer": []}]})
    async def upload_run(request: Request, uploader: Uploader):
        """The request body is a gpubench result file (the JSON `gpubench run` writes).
        Uploading the same content again (whatever its formatting) returns the same id
        with `created: false` and status 200."""
        hub = _state(request)
        raw = await _read_body(request, hub.max_upload_bytes)

        def store_it():
            doc, run = parse_upload(raw, hub.max_upload_bytes)
            return store.add_run(hub.session_factory, doc, raw, uploader, run=run)

        rid, created = await run_in_threadpool(store_it)
        return JSONResponse(status_code=201 if created else 200,
                            content={"id": rid, "url": hub.run_url(request, rid), "created": created})

    @r.get("/runs", response_model=RunList, responses=_ERRORS, summary="List runs, newest upload first")
    def list_runs(request: Request, _: Reader,
                  gpu: str | None = Query(None, max_length=200, pattern=_TEXT,
                                          description="GPU key or name, case-insensitive substring"),
                  suite: str | None = Query(None, max_length=200, pattern=_TEXT),
                  since: str | None = Query(None, max_length=64, pattern=_TEXT,
                                            description="run started at or after (YYYY-MM-DD or ISO time)"),
                  until: str | None = Query(None, max_length=64, pattern=_TEXT,
                                            description="run started at or before (a date: that whole day)"),
                  limit: int = Query(50, ge=1, le=store.MAX_PAGE),
                  offset: int = Query(0, ge=0, le=10_000_000)):
        hub = _state(request)
        s, u = _bounds(since, until)
        items, total = store.list_runs(hub.session_factory, gpu=gpu, suite=suite, since=s, until=u,
                                       limit=limit, offset=offset)
        for it in items:
            it["url"] = hub.run_url(request, it["id"])
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @r.get("/runs/{run_id}", response_model=RunDetail, responses=_ERRORS,
           summary="One run: summary and the full result file")
    def get_run(request: Request, run_id: str, _: Reader):
        hub = _state(request)
        rid = _valid_id(run_id)
        found = store.get_run(hub.session_factory, rid) if rid else None
        if found is None:
            raise _error(404, "run_id", "no run with this id (ids are 16 hex digits)")
        document = found.pop("document")
        found["url"] = hub.run_url(request, rid)
        # The stored text is already validated JSON: splice it in rather than parse and
        # re-serialise up to 10 MiB per request.
        head = json.dumps(found, ensure_ascii=False, separators=(",", ":"))
        body = head[:-1] + ',"document":' + document.strip() + "}"
        return Response(content=body.encode("utf-8"), media_type="application/json")

    @r.get("/compare", response_model=CompareResponse, responses=_ERRORS,
           summary="Compare 2 to 4 runs case by case")
    def compare(request: Request, _: Reader,
                ids: str = Query(..., max_length=200, pattern=_TEXT,
                                 description="2 to 4 run ids, comma-separated; ratios are to the first")):
        hub = _state(request)
        parts = _parse_ids(ids)
        out, missing = store.compare(hub.session_factory, parts)
        if missing:
            raise _error(404, "ids", f"no run with id {missing[0]}")
        for entry in out["runs"]:
            entry["url"] = hub.run_url(request, entry["id"])
        return out

    @r.get("/leaderboard", response_model=LeaderboardResponse, responses=_ERRORS,
           summary="Per GPU model: best, median and spread of a benchmark's metric over uploads")
    def leaderboard(request: Request, _: Reader,
                    benchmark: str = Query(..., min_length=1, max_length=200, pattern=_TEXT),
                    suite: str | None = Query(None, max_length=200, pattern=_TEXT),
                    metric: str | None = Query(None, max_length=200, pattern=_TEXT,
                                               description="default: the benchmark's main metric"),
                    case_id: str | None = Query(None, max_length=V.CASE_ID_MAX_BYTES, pattern=_TEXT,
                                                description="only this case (e.g. one dtype and shape)"),
                    device: str = Query("gpu", pattern=_DEVICES,
                                        description="gpu: runs not on a CPU (default); cpu; all")):
        hub = _state(request)
        board = store.leaderboard(hub.session_factory, benchmark=benchmark, metric=metric or None,
                                  suite=suite or None, case_id=case_id or None, device=device)
        board["published"] = [b.to_json() for b in _published(board, device)]
        return board

    @r.get("/health", response_model=Health, summary="Liveness: the database answers")
    def health(request: Request):
        store.ping(_state(request).session_factory)
        return {"status": "ok"}

    return r


# ---- the pages ----

def _render(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    hub = _state(request)
    html = hub.templates.get_template(template).render(root=hub.root, **context)
    return HTMLResponse(html, status_code=status)


def _page_error(request: Request, status: int, message: str) -> HTMLResponse:
    return _render(request, "error.html", status=status, status_code=status, message=message)


def _board_href(root: str, **params) -> str:
    return f"{root}/leaderboard?" + urlencode({k: v for k, v in params.items() if v})


def _pages_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/", response_class=HTMLResponse)
    def index(request: Request, _: Reader):
        hub = _state(request)
        boards = _boards(hub)
        recent, total = store.list_runs(hub.session_factory, limit=20)
        return _render(request, "index.html", boards=boards, recent=recent, total=total)

    @r.get("/runs", response_class=HTMLResponse)
    def runs_page(request: Request, _: Reader,
                  gpu: str | None = Query(None, max_length=200, pattern=_TEXT),
                  suite: str | None = Query(None, max_length=200, pattern=_TEXT),
                  since: str | None = Query(None, max_length=64, pattern=_TEXT),
                  until: str | None = Query(None, max_length=64, pattern=_TEXT),
                  limit: int = Query(50, ge=1, le=store.MAX_PAGE),
                  offset: int = Query(0, ge=0, le=10_000_000)):
        hub = _state(request)
        try:
            s, u = _bounds(since, until)
        except HTTPException as e:
            return _page_error(request, 422, e.detail["message"])
        items, total = store.list_runs(hub.session_factory, gpu=gpu, suite=suite, since=s, until=u,
                                       limit=limit, offset=offset)
        query = {"gpu": gpu, "suite": suite, "since": since, "until": until, "limit": limit}
        q = {k: v for k, v in query.items() if v}
        prev_href = (f"{hub.root}/runs?" + urlencode({**q, "offset": max(0, offset - limit)})
                     if offset > 0 else None)
        next_href = f"{hub.root}/runs?" + urlencode({**q, "offset": offset + limit}) \
            if offset + limit < total else None
        return _render(request, "runs.html", items=items, total=total, offset=offset, filters=query,
                       prev_href=prev_href, next_href=next_href)

    @r.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str, _: Reader):
        from gpubench.compare import label

        hub = _state(request)
        rid = _valid_id(run_id)
        found = store.get_run(hub.session_factory, rid) if rid else None
        if found is None:
            return _page_error(request, 404, "No run with this id.")
        doc = json.loads(found.pop("document"))
        env = doc.get("env") or {}
        records = store.get_records(hub.session_factory, rid)
        for rec in records:
            rec["label"] = label(rec["benchmark"], json.loads(rec["params"]), rec["case_id"])
        return _render(request, "run.html", run=found, env=_env_summary(env, doc), records=records,
                       figures=figures.run_figures(records), fmt=charts.fmt,
                       api_href=f"{hub.root}{API}/runs/{rid}", selfcheck=_selfcheck(doc))

    @r.get("/leaderboard", response_class=HTMLResponse)
    def leaderboard_page(request: Request, _: Reader,
                         benchmark: str | None = Query(None, max_length=200, pattern=_TEXT),
                         suite: str | None = Query(None, max_length=200, pattern=_TEXT),
                         metric: str | None = Query(None, max_length=200, pattern=_TEXT),
                         case_id: str | None = Query(None, max_length=V.CASE_ID_MAX_BYTES, pattern=_TEXT),
                         device: str = Query("gpu", pattern=_DEVICES)):
        hub = _state(request)
        boards = _boards(hub)
        board = None
        chart = ""
        cases: list[dict] = []
        toggle: list[dict] = []
        published: list = []
        if benchmark:
            board = store.leaderboard(hub.session_factory, benchmark=benchmark, metric=metric or None,
                                      suite=suite or None, case_id=case_id or None, device=device)
            cases = store.board_cases(hub.session_factory, benchmark=benchmark, metric=board["metric"],
                                      suite=suite or None, device=device)
            for c in cases:
                c["href"] = _board_href(hub.root, suite=suite, benchmark=benchmark, metric=board["metric"],
                                        case_id=c["case_id"], device=_device_param(device))
            # The same board on the other kinds of device: CPUs are kept off GPU boards,
            # never hidden.
            same = [b for b in boards if b["benchmark"] == benchmark and b["metric"] == board["metric"]
                    and (not suite or b["suite"] == suite)]
            counts = {"gpu": sum(b["runs"] for b in same), "cpu": sum(b["cpu_runs"] for b in same)}
            counts["all"] = counts["gpu"] + counts["cpu"]
            for kind, text in (("gpu", "GPUs"), ("cpu", "CPUs"), ("all", "GPUs and CPUs together")):
                toggle.append({"kind": kind, "text": text, "current": kind == device,
                               "runs": None if case_id else counts[kind],
                               "href": _board_href(hub.root, suite=suite, benchmark=benchmark, metric=metric,
                                                   case_id=case_id, device=_device_param(kind))})
            unit = board["unit"] or ""
            what = {"gpu": "GPU model", "cpu": "CPU model", "all": "device model"}[device]
            published = _published(board, device)
            chart = charts.hbar_chart(
                [charts.Bar(label=it["gpu_name"] or it["gpu_key"], value=it["best"], low=it["min"],
                            high=it["max"], href=f"{hub.root}/runs/{it['best_run_id']}",
                            note=f"{it['uploads']} upload{'s' if it['uploads'] != 1 else ''}")
                 for it in board["items"]],
                unit=unit, title=f"best {board['metric'] or ''} per {what} (whiskers: min–max over uploads)"
                                 + ("; ◇ published measurements, not uploads" if published else ""),
                axis_label=f"{board['metric']} ({unit})" if unit else (board["metric"] or ""),
                refs=[charts.RefMark(label=b.label, value=b.value,
                                     tip=f"{b.measured} · {b.source} ({b.date}) {b.url}") for b in published])
        return _render(request, "leaderboard.html", board=board, boards=boards, cases=cases, chart=chart,
                       fmt=charts.fmt, device=device, toggle=toggle,
                       published=[_published_row(b, board.get("case_id")) for b in published],
                       query={"benchmark": benchmark, "suite": suite, "metric": metric, "case_id": case_id})

    @r.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request, _: Reader,
                     ids: str | None = Query(None, max_length=200, pattern=_TEXT)):
        hub = _state(request)
        if not ids:
            return _render(request, "compare.html", result=None, ids="", fmt=charts.fmt)
        try:
            parts = _parse_ids(ids)
        except HTTPException as e:
            return _page_error(request, 422, e.detail["message"])
        result, missing = store.compare(hub.session_factory, parts)
        if missing:
            return _page_error(request, 404, f"No run with id {missing[0]}.")
        chart, summaries = figures.compare_figure(result)
        return _render(request, "compare.html", result=result, ids=",".join(parts), fmt=charts.fmt,
                       chart=chart, summaries=summaries)

    @r.get("/docs", response_class=HTMLResponse)
    def docs_page(request: Request):
        hub = _state(request)
        return _render(request, "docs.html", ref=apidocs.reference(request.app.openapi()),
                       public_reads=hub.public_reads)

    @r.get("/redoc")
    def redoc(request: Request):
        # Where FastAPI's ReDoc page was: one reference page now, served without a CDN.
        return RedirectResponse(f"{_state(request).root}/docs", status_code=308)

    return r


def _published(board: dict, device: str) -> list:
    """The published figures a board draws as reference marks: none on a CPU board (every
    figure is a GPU's); on a case's board, the figures of that case or its nearest."""
    from gpubench import baselines

    if device == "cpu" or not board.get("metric"):
        return []
    return baselines.for_board(board["benchmark"], board["metric"], board.get("case_id"),
                               higher_is_better=board.get("higher_is_better", True))


def _published_row(b, case_id: str | None) -> dict:
    """A published figure as the board's table shows it: the case it is of, and whether that
    is only the nearest to the board's case (or, on a benchmark's board, only a nearest one)."""
    from gpubench import baselines

    exact = baselines.is_exact(b, case_id) if case_id else bool(b.case)
    shown = b.case if exact else b.nearest
    return {"b": b, "approx": not exact, "case": ", ".join(f"{k}={v}" for k, v in shown.items())}


def _device_param(device: str) -> str | None:
    """The board link's device parameter: none for the default (GPUs)."""
    return None if device == "gpu" else device


def _boards(hub: HubState) -> list[dict]:
    """The catalog with links: a board opens on its GPUs, or on its CPUs when it has no GPU
    run; ``cpu_href`` is the CPU board when there is one."""
    boards = store.catalog(hub.session_factory)
    for b in boards:
        keys = {"suite": b["suite"], "benchmark": b["benchmark"], "metric": b["metric"]}
        b["href"] = _board_href(hub.root, **keys, device=None if b["runs"] else "cpu")
        b["cpu_href"] = _board_href(hub.root, **keys, device="cpu") if b["cpu_runs"] else None
    return boards


def _env_summary(env: dict, doc: dict) -> list[tuple[str, Any]]:
    """(label, value) pairs for the run page; every value is text the template escapes."""
    def get(*path):
        cur: Any = env
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        return cur if isinstance(cur, (str, int, float)) and not isinstance(cur, bool) else None

    mem = get("device", "total_memory_bytes")
    prov = doc.get("provenance") if isinstance(doc.get("provenance"), dict) else {}
    imported = []
    if prov.get("imported"):
        def said(key):
            v = prov.get(key)
            return v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None

        tool = " ".join(str(v) for v in (said("tool"), said("tool_version")) if v)
        imported = [("imported from", f"{tool or 'another tool'}: its figures, not gpubench's timing"),
                    ("original file", " · ".join(v for v in (str(said("source_file") or ""),
                                                            f"sha256 {said('source_sha256')}"
                                                            if said("source_sha256") else "") if v)),
                    ("imported by", " at ".join(str(v) for v in (said("imported_by"), said("imported_at")) if v))]
    rows = imported + [
        ("GPU / device", get("device", "name")),
        ("hardware key", get("device", "spec_key")),
        ("device type", get("device", "type")),
        ("memory", f"{mem / 2**30:.1f} GiB" if isinstance(mem, (int, float)) and mem > 0 else None),
        ("compute capability", ".".join(str(c) for c in env["device"]["capability"])
         if isinstance((env.get("device") or {}).get("capability"), list) else None),
        ("GPU count", get("gpu", "count")),
        ("driver", get("gpu", "nvml", "driver_version") or get("gpu", "driver_version")),
        ("host", get("host", "hostname")),
        ("CPU", get("host", "cpu")),
        ("OS", get("host", "os")),
        ("torch", get("software", "torch")),
        ("CUDA", get("software", "torch_cuda")),
        ("gpubench", get("software", "gpubench")),
        ("started", doc.get("started_at") if isinstance(doc.get("started_at"), str) else None),
        ("finished", doc.get("finished_at") if isinstance(doc.get("finished_at"), str) else None),
    ]
    return [(k, v) for k, v in rows if v not in (None, "")]


def _selfcheck(doc: dict) -> dict | None:
    """The run's training steps predicted from its own kernels (``gpubench selfcheck``), for the
    run page; None where the run has no step to predict or lacks what predicting one takes."""
    from pathlib import Path

    from gpubench.errors import GpubenchError
    from gpubench.estimate.selfcheck import TERMS, check_runs
    from gpubench.results import Run

    try:
        result = check_runs([(Path("upload"), Run.from_dict(doc))])
    except GpubenchError:
        return None
    except Exception:       # an upload the check cannot read must never break its page
        return None
    rows = []
    for c in result["cases"]:
        from gpubench.compare import label

        row = {"label": label(c.record.benchmark, c.record.params, c.record.case_id),
               "measured_s": c.measured_s, "predicted_s": c.predicted_s, "error": c.error,
               "why": c.why, "terms": []}
        if c.breakdown:
            total = sum(c.breakdown[k] for k, _ in TERMS) or 1.0
            row["terms"] = sorted(((c.breakdown[k] / total, name) for k, name in TERMS
                                   if c.breakdown[k] > 0), reverse=True)[:3]
        rows.append(row)
    return {"summary": result["summary"], "cases": rows}


# ---- the application ----

def create_app(database_url: str, *, public_reads: bool = True, max_upload_bytes: int = V.MAX_UPLOAD_BYTES,
               base_url: str | None = None, auto_migrate: bool = False) -> FastAPI:
    """The hub for the database at ``database_url`` (sqlite:///path or postgresql://…).

    public_reads: GETs need no token (uploads always do). base_url: the public URL
    the hub is reached at, used in the ``url`` of responses and the pages' links
    (default: taken from each request). auto_migrate: run the Alembic migrations
    first (the CLI does that itself before starting the server)."""
    engine = store.create_engine(database_url)
    if auto_migrate:
        store.migrate(engine)
    templates = Environment(loader=PackageLoader("gpubench.hub", "templates"), autoescape=True,
                            trim_blocks=True, lstrip_blocks=True)
    templates.filters["fmt"] = charts.fmt
    hub = HubState(engine=engine, session_factory=store.session_factory(engine), public_reads=public_reads,
                   max_upload_bytes=int(max_upload_bytes),
                   base_url=base_url.rstrip("/") if base_url else None, templates=templates)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Refuse to serve a database whose schema is not the one this code expects:
        # every request would fail (the app never creates tables itself).
        current, head = store.current_revision(engine), store.head_revision()
        if current != head:
            raise RuntimeError(f"database {store.safe_url(database_url)} is at schema revision {current}, "
                               f"this gpubench needs {head}: run `gpubench hub serve` (it migrates) or "
                               f"gpubench.hub.store.migrate(url) first")
        yield
        engine.dispose()

    # docs_url/redoc_url off: FastAPI's pages load Swagger UI and ReDoc from a CDN, blank
    # offline; /docs is the hub's own page (apidocs), written from the same schema.
    app = FastAPI(title="gpubench hub", version="1",
                  description="Share gpubench result files; compare GPUs side by side.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    make_schema = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = make_schema()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer",
                "description": "a token from `gpubench hub token create NAME`"}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.state.hub = hub
    app.include_router(_api_router())
    app.include_router(_pages_router())

    @app.exception_handler(UploadRejected)
    async def rejected(request: Request, exc: UploadRejected):
        return JSONResponse(status_code=exc.status_code, content=exc.to_json())

    @app.exception_handler(RequestValidationError)
    async def bad_request_part(request: Request, exc: RequestValidationError):
        # The documented error shape for every 422, query and path checks included
        # (FastAPI's own is a list): the first problem, its parameter named.
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body")]
        return JSONResponse(status_code=422, content={"detail": {
            "field": ".".join(loc) or None,
            "message": str(first.get("msg", "invalid request"))[:500]
                       + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")}})

    async def database_unavailable(request: Request, exc: Exception):
        # Locked past busy_timeout, connection refused or dropped, pool exhausted: the
        # request was fine and nothing was stored (its transaction rolled back), so retry.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    reason[0][:300] if reason else type(exc).__name__)
        return JSONResponse(status_code=503, headers={"Retry-After": "1"},
                            content={"detail": {"field": None,
                                                "message": "the database is busy or unavailable; retry"}})

    for exc_class in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(exc_class, database_unavailable)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500,
                            content={"detail": {"field": None, "message": "internal server error"}})

    return app
