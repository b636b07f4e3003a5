"""The hub's database: engines, migrations, storing a run, and the read queries.

Everything takes an engine or a session factory made from one; nothing is kept
at module level, so several apps (or test cases) can use several databases in
one process. SQLite and PostgreSQL get the same SQL: no dialect-only functions
in queries (medians are computed in Python from one value per run).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, func
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from gpubench.errors import GpubenchError
from gpubench.hub import vocabulary as V
from gpubench.hub.models import RecordRow, RunRow
from gpubench.hub.validate import gpu_spec, parse_time
from gpubench.results import Run

SessionFactory = Callable[[], Session]

ID_CHARS = 16                       # hex digits of the SHA-256 that make a run's ID
ID_PATTERN = re.compile(rf"[0-9a-f]{{{ID_CHARS}}}\Z")
MAX_PAGE = 200
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant: serialises concurrent `migrate` calls on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x67707562


# ---- engines ----

def normalize_url(url: str) -> str:
    """postgres:// and postgresql:// mean psycopg 3 (the driver the hub extra installs)."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):     # unparsable: say nothing of it that could be a secret
        return "<unparsable database URL>"


def create_engine(url: str) -> Engine:
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise GpubenchError(f"database URL {safe_url(url)!r} is not a URL like sqlite:///hub.db "
                            "or postgresql://user@host/db") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        # A pool as large as the server's thread pool (40): a request never waits for
        # a connection, only (busy_timeout) for SQLite's single writer lock.
        pool = {"poolclass": StaticPool} if memory else {"pool_size": 10, "max_overflow": 40}
        engine = sa.create_engine(
            url, **pool,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)
    raise GpubenchError(f"database URL {safe_url(url)!r}: the hub runs on sqlite:// or postgresql://, "
                        f"not {backend}://")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer nor the writer the readers; a crash mid-write
    # leaves the last committed state. busy_timeout: writers queue instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    # FULL: an upload answered 201 survives a power cut too (NORMAL could lose the last
    # commits); uploads are rare, an fsync each is cheap.
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


# ---- migrations ----

def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _run_alembic(target: str | Engine, action: Callable[[Any], None]) -> None:
    engine = target if isinstance(target, Engine) else create_engine(target)
    try:
        cfg = _alembic_config()
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two servers starting at once must not both create the tables.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            action(cfg)
    finally:
        if engine is not target:
            engine.dispose()


def migrate(target: str | Engine, revision: str = "head") -> None:
    """alembic upgrade <revision> (head: the schema this gpubench expects)."""
    from alembic import command

    _run_alembic(target, lambda cfg: command.upgrade(cfg, revision))


def downgrade(target: str | Engine, revision: str = "base") -> None:
    from alembic import command

    _run_alembic(target, lambda cfg: command.downgrade(cfg, revision))


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# ---- storing a run ----

def canonical_sha256(doc: Any) -> str:
    """SHA-256 of the JSON with sorted keys and no whitespace: the same content uploaded
    twice, however it was formatted, has one hash and so one ID."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def run_id_for(doc: Any) -> str:
    return canonical_sha256(doc)[:ID_CHARS]


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return s[: V.NAME_MAX_CHARS] or "unknown"


def gpu_key_for(env: dict) -> str:
    """The hardware table's key when the run names one or its device name matches one,
    else a slug of the device name: what leaderboards group by."""
    dev = env.get("device") if isinstance(env, dict) else None
    dev = dev if isinstance(dev, dict) else {}
    key = dev.get("spec_key")
    if isinstance(key, str) and key.strip():
        return slug(key)
    spec = gpu_spec(env)
    if spec is not None:
        return spec.key
    name = dev.get("name")
    if isinstance(name, str) and name.strip():
        return slug(name)
    return slug(str(dev.get("type") or "unknown"))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _record_rows(run_key: str, run: Run) -> list[dict]:
    from gpubench.compare import is_probe, main_metric

    rows = []
    for rec in run.records:
        metric, value, unit, pct = main_metric(rec)
        rows.append({
            "run_id": run_key, "case_id": rec.case_id, "benchmark": rec.benchmark,
            "params": json.dumps(rec.params, sort_keys=True, separators=(",", ":")),
            "status": rec.status, "metric": metric or None, "value": value, "unit": unit or None,
            "pct_of_peak": pct, "is_probe": is_probe(rec),
        })
    return rows


def find_by_sha(sf: SessionFactory, digest: str) -> str | None:
    with sf() as s:
        return s.execute(sa.select(RunRow.id).where(RunRow.sha256 == digest)).scalar_one_or_none()


def add_run(sf: SessionFactory, doc: dict, raw: bytes | str, uploader: str | None, *,
            run: Run | None = None, uploaded_at: datetime | None = None) -> tuple[str, bool]:
    """Store an upload; (id, True) when new, (id, False) when this content is already
    stored. One transaction for the run and its records. Two concurrent uploads of the
    same content race on the unique sha256 index: the loser's IntegrityError is
    answered with the winner's ID."""
    digest = canonical_sha256(doc)
    rid = digest[:ID_CHARS]
    existing = find_by_sha(sf, digest)      # its own short read, so the write below starts clean
    if existing is not None:
        return existing, False
    if run is None:
        run = Run.from_dict(doc, source="upload")
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    env = run.env if isinstance(run.env, dict) else {}
    dev = env.get("device") if isinstance(env.get("device"), dict) else {}
    host = env.get("host") if isinstance(env.get("host"), dict) else {}
    software = env.get("software") if isinstance(env.get("software"), dict) else {}
    tool = doc.get("tool") if isinstance(doc.get("tool"), dict) else {}
    row = RunRow(
        id=rid, sha256=digest, uploaded_at=uploaded_at or _utcnow(), uploader=uploader,
        suite=run.suite, status=run.status, schema_version=doc["schema_version"],
        gpu_name=dev.get("name"), gpu_key=gpu_key_for(env), device_type=dev.get("type"),
        host=host.get("hostname"), started_at=parse_time(run.started_at),
        gpubench_version=tool.get("version") or software.get("gpubench"),
        n_records=len(run.records), size_bytes=len(text.encode("utf-8")), document=text,
    )
    records = _record_rows(rid, run)
    with sf() as s:
        try:
            s.add(row)
            s.flush()           # the INSERT that takes the unique index comes first
            if records:
                s.execute(sa.insert(RecordRow.__table__), records)
            s.commit()
            return rid, True
        except IntegrityError:
            s.rollback()
    existing = find_by_sha(sf, digest)
    if existing is None:        # not a duplicate: an ID collision with other content (2^-64)
        raise RuntimeError(f"run id {rid} is taken by different content")
    return existing, False


# ---- reading ----

SUMMARY_COLUMNS = (RunRow.id, RunRow.suite, RunRow.status, RunRow.gpu_name, RunRow.gpu_key,
                   RunRow.device_type, RunRow.host, RunRow.started_at, RunRow.uploaded_at,
                   RunRow.n_records, RunRow.uploader, RunRow.schema_version,
                   RunRow.gpubench_version, RunRow.size_bytes)


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=timezone.utc).isoformat(timespec="seconds")


def _summary(row) -> dict:
    m = row._mapping
    return {"id": m["id"], "suite": m["suite"], "status": m["status"], "gpu_name": m["gpu_name"],
            "gpu_key": m["gpu_key"], "device_type": m["device_type"], "host": m["host"],
            "started_at": iso(m["started_at"]), "uploaded_at": iso(m["uploaded_at"]),
            "n_records": m["n_records"], "uploader": m["uploader"],
            "schema_version": m["schema_version"], "gpubench_version": m["gpubench_version"],
            "size_bytes": m["size_bytes"]}


def parse_bound(text: str, *, end: bool) -> tuple[datetime, bool]:
    """A since/until value: (UTC time, inclusive). A bare date covers that whole day."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        d = date.fromisoformat(text)
        t = datetime(d.year, d.month, d.day)
        if end and d == date.max:       # 9999-12-31 has no next day: up to its last instant
            return datetime.max, True
        return (t + timedelta(days=1), False) if end else (t, True)
    t = parse_time(text)
    if t is None:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time")
    return t, True


def list_runs(sf: SessionFactory, *, gpu: str | None = None, suite: str | None = None,
              since: datetime | None = None, until: tuple[datetime, bool] | None = None,
              limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
    """Newest uploads first; filters on GPU (key or name, case-insensitive substring),
    suite (exact) and the run's start time (since inclusive; until per parse_bound)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    offset = max(0, int(offset))
    conds = []
    if gpu:
        g = gpu.strip().lower()
        conds.append(sa.or_(func.lower(RunRow.gpu_key).contains(g, autoescape=True),
                            func.lower(RunRow.gpu_name).contains(g, autoescape=True)))
    if suite:
        conds.append(RunRow.suite == suite)
    if since is not None:
        conds.append(RunRow.started_at >= since)
    if until is not None:
        t, inclusive = until
        conds.append(RunRow.started_at <= t if inclusive else RunRow.started_at < t)
    with sf() as s:
        total = s.execute(sa.select(func.count()).select_from(RunRow).where(*conds)).scalar_one()
        rows = s.execute(sa.select(*SUMMARY_COLUMNS).where(*conds)
                         .order_by(RunRow.uploaded_at.desc(), RunRow.id.desc())
                         .limit(limit).offset(offset)).all()
    return [_summary(r) for r in rows], total


def get_run(sf: SessionFactory, run_id: str) -> dict | None:
    """The summary plus ``document`` (the uploaded JSON text), or None."""
    with sf() as s:
        row = s.execute(sa.select(*SUMMARY_COLUMNS, RunRow.document).where(RunRow.id == run_id)).first()
    if row is None:
        return None
    out = _summary(row)
    out["document"] = row._mapping["document"]
    return out


def get_records(sf: SessionFactory, run_id: str) -> list[dict]:
    cols = (RecordRow.case_id, RecordRow.benchmark, RecordRow.params, RecordRow.status, RecordRow.metric,
            RecordRow.value, RecordRow.unit, RecordRow.pct_of_peak, RecordRow.is_probe)
    with sf() as s:
        rows = s.execute(sa.select(*cols).where(RecordRow.run_id == run_id).order_by(RecordRow.id)).all()
    return [dict(r._mapping) for r in rows]


def get_documents(sf: SessionFactory, ids: Iterable[str]) -> dict[str, str]:
    ids = list(dict.fromkeys(ids))
    with sf() as s:
        rows = s.execute(sa.select(RunRow.id, RunRow.document).where(RunRow.id.in_(ids))).all()
    return {r.id: r.document for r in rows}


def compare(sf: SessionFactory, ids: list[str]) -> tuple[dict, list[str]]:
    """(compare_runs(...).to_json(), ids not found). The JSON's ``runs`` entries gain the
    hub ``id`` of each run."""
    from gpubench.compare import compare_runs

    docs = get_documents(sf, ids)
    missing = [i for i in ids if i not in docs]
    if missing:
        return {}, missing
    runs = [Run.from_dict(json.loads(docs[i]), source=f"run {i}") for i in ids]
    out = compare_runs(runs).to_json()
    for entry, i in zip(out["runs"], ids):
        entry["id"] = i
    return out, []


def _board_filters(benchmark: str, metric: str | None, case_id: str | None):
    conds = [RecordRow.benchmark == benchmark, RecordRow.status == "ok",
             RecordRow.is_probe.is_(False), RecordRow.value.is_not(None)]
    if metric is not None:
        conds.append(RecordRow.metric == metric)
    if case_id:
        conds.append(RecordRow.case_id == case_id)
    return conds


DEVICES = ("gpu", "cpu", "all")


def _device_filter(device: str):
    """Runs on a CPU (env.device.type "cpu") or on anything else (GPUs, and runs that do
    not say): a CPU is not a slow GPU, so boards keep the two apart."""
    if device == "cpu":
        return [RunRow.device_type == "cpu"]
    if device == "gpu":
        return [sa.or_(RunRow.device_type.is_(None), RunRow.device_type != "cpu")]
    if device == "all":
        return []
    raise ValueError(f"device {device!r}: use one of {', '.join(DEVICES)}")


def leaderboard(sf: SessionFactory, *, benchmark: str, metric: str | None = None,
                suite: str | None = None, case_id: str | None = None, device: str = "all") -> dict:
    """Per GPU (gpu_key): each upload's best value of the metric over its records of the
    benchmark, then the best, median, min and max of those over uploads, their count,
    and the upload holding the best. Best = max, or min for times and costs. Without
    ``metric``, the benchmark's most common main metric. ``device``: "gpu" (runs not on
    a CPU), "cpu" or "all"."""
    devices = _device_filter(device)
    with sf() as s:
        if metric is None:
            metric = s.execute(
                sa.select(RecordRow.metric).where(*_board_filters(benchmark, None, case_id),
                                                  RecordRow.metric.is_not(None))
                .group_by(RecordRow.metric).order_by(func.count().desc(), RecordRow.metric).limit(1)
            ).scalar_one_or_none()
        out = {"suite": suite, "benchmark": benchmark, "metric": metric, "case_id": case_id,
               "device": device, "unit": None, "higher_is_better": True, "items": []}
        if metric is None:
            return out
        higher = _higher_is_better(benchmark, metric)
        out["higher_is_better"] = higher
        out["unit"] = s.execute(sa.select(RecordRow.unit).where(
            RecordRow.benchmark == benchmark, RecordRow.metric == metric,
            RecordRow.unit.is_not(None)).limit(1)).scalar_one_or_none()
        agg = func.max(RecordRow.value) if higher else func.min(RecordRow.value)
        per_run = (sa.select(RecordRow.run_id, agg.label("v"))
                   .where(*_board_filters(benchmark, metric, case_id))
                   .group_by(RecordRow.run_id).subquery())
        q = (sa.select(RunRow.gpu_key, RunRow.gpu_name, RunRow.id, per_run.c.v)
             .join(per_run, per_run.c.run_id == RunRow.id))
        if suite:
            q = q.where(RunRow.suite == suite)
        if devices:
            q = q.where(*devices)
        rows = s.execute(q).all()
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r.gpu_key, []).append(r)
    items = []
    for key, rs in groups.items():
        values = sorted(r.v for r in rs)
        # Ties go to the smallest ID, so the answer does not depend on row order.
        best_row = min(rs, key=lambda r: (-r.v if higher else r.v, r.id))
        items.append({"gpu_key": key, "gpu_name": best_row.gpu_name, "best": best_row.v,
                      "median": statistics.median(values), "min": values[0], "max": values[-1],
                      "uploads": len(values), "best_run_id": best_row.id})
    items.sort(key=lambda it: (-it["best"] if higher else it["best"], it["gpu_key"]))
    out["items"] = items
    return out


def board_cases(sf: SessionFactory, *, benchmark: str, metric: str | None = None,
                suite: str | None = None, limit: int = 50, device: str = "all") -> list[dict]:
    """The cases of a benchmark that have ok records, most uploaded first: a benchmark's
    board takes each upload's best case (right for "best TFLOP/s"), a case's board compares
    like with like (one model size, one precision) across GPUs."""
    q = (sa.select(RecordRow.case_id, func.min(RecordRow.params).label("params"),
                   func.count(sa.distinct(RecordRow.run_id)).label("runs"),
                   func.count(sa.distinct(RunRow.gpu_key)).label("gpus"))
         .join(RunRow, RunRow.id == RecordRow.run_id)
         .where(*_board_filters(benchmark, metric, None))
         .group_by(RecordRow.case_id)
         .order_by(func.count(sa.distinct(RecordRow.run_id)).desc(), RecordRow.case_id)
         .limit(limit))
    if suite:
        q = q.where(RunRow.suite == suite)
    devices = _device_filter(device)
    if devices:
        q = q.where(*devices)
    from gpubench.compare import label

    with sf() as s:
        rows = s.execute(q).all()
    out = []
    for r in rows:
        try:
            params = json.loads(r.params) if r.params else {}
        except (TypeError, ValueError):
            params = {}
        out.append({"case_id": r.case_id, "label": label(benchmark, params, r.case_id),
                    "runs": r.runs, "gpus": r.gpus})
    return out


def _higher_is_better(benchmark: str, metric: str) -> bool:
    from gpubench.compare import MAIN_METRICS

    known = MAIN_METRICS.get(benchmark)
    if known and known[0] == metric:
        return known[2]
    return V.higher_is_better(metric)


def catalog(sf: SessionFactory) -> list[dict]:
    """What has leaderboards: (suite, benchmark, metric, unit) with the counts of runs and
    models on GPUs (``runs``, ``gpus``: runs not on a CPU) and on CPUs (``cpu_runs``,
    ``cpus``), which the boards keep apart."""
    on_cpu = RunRow.device_type == "cpu"
    gpu_run = sa.case((on_cpu, sa.null()), else_=RunRow.id)
    cpu_run = sa.case((on_cpu, RunRow.id), else_=sa.null())
    q = (sa.select(RunRow.suite, RecordRow.benchmark, RecordRow.metric, func.max(RecordRow.unit).label("unit"),
                   func.count(sa.distinct(gpu_run)).label("runs"),
                   func.count(sa.distinct(sa.case((on_cpu, sa.null()), else_=RunRow.gpu_key))).label("gpus"),
                   func.count(sa.distinct(cpu_run)).label("cpu_runs"),
                   func.count(sa.distinct(sa.case((on_cpu, RunRow.gpu_key), else_=sa.null()))).label("cpus"))
         .join(RunRow, RunRow.id == RecordRow.run_id)
         .where(RecordRow.status == "ok", RecordRow.is_probe.is_(False), RecordRow.value.is_not(None),
                RecordRow.metric.is_not(None))
         .group_by(RunRow.suite, RecordRow.benchmark, RecordRow.metric)
         .order_by(RunRow.suite, RecordRow.benchmark, RecordRow.metric))
    with sf() as s:
        return [dict(r._mapping) for r in s.execute(q).all()]


def ping(sf: SessionFactory) -> None:
    with sf() as s:
        s.execute(sa.text("SELECT 1"))
