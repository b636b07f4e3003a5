"""The hub's database layer: migrations, idempotent storing, queries, tokens, CLI."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")

import sqlalchemy as sa
from hub_helpers import (
    as_machine,
    dumps,
    fresh_database_url,
    main_value,
    on_postgres,
    real_results,
)

from gpubench.errors import GpubenchError
from gpubench.hub import store
from gpubench.hub.auth import check_token, create_token, revoke_token, token_hash
from gpubench.hub.models import METADATA, RecordRow, RunRow, TokenRow
from gpubench.hub.validate import parse_upload


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    return real_results(tmp_path_factory)


@pytest.fixture
def db(tmp_path):
    url = fresh_database_url(tmp_path)
    engine = store.create_engine(url)
    store.migrate(engine)
    yield engine, store.session_factory(engine)
    engine.dispose()


def _count(engine, table) -> int:
    with engine.connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _add(sf, doc, uploader="tester", **kw):
    raw = dumps(doc)
    doc2, run = parse_upload(raw)
    return store.add_run(sf, doc2, raw, uploader, run=run, **kw)


# ---- schema ----

def test_migrations_create_schema_from_empty_and_go_down_and_up(tmp_path):
    url = fresh_database_url(tmp_path)
    engine = store.create_engine(url)
    assert sa.inspect(engine).get_table_names() == []
    store.migrate(url)
    insp = sa.inspect(engine)
    assert {"runs", "records", "tokens", "alembic_version"} <= set(insp.get_table_names())
    assert store.current_revision(engine) == store.head_revision() == "0001"
    runs_idx = {i["name"]: i for i in insp.get_indexes("runs")}
    assert runs_idx["ux_runs_sha256"]["unique"]
    assert {"ix_runs_gpu_key", "ix_runs_suite", "ix_runs_uploaded_at_id"} <= set(runs_idx)
    assert "ix_records_board" in {i["name"] for i in insp.get_indexes("records")}
    store.downgrade(url, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    assert store.current_revision(engine) is None
    store.migrate(url)
    assert {"runs", "records", "tokens"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_models_match_the_migration(db):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine, _ = db
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), METADATA)
    assert diff == []


@pytest.mark.skipif(on_postgres(), reason="SQLite settings")
def test_sqlite_engine_settings(db):
    engine, _ = db
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == store.SQLITE_BUSY_TIMEOUT_MS
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_postgres_urls_use_psycopg():
    assert store.normalize_url("postgresql://u:pw@h:5432/db") == "postgresql+psycopg://u:pw@h:5432/db"
    assert store.normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store.normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "pw" not in store.safe_url("postgresql://u:pw@h/db")
    engine = store.create_engine("postgresql://u:pw@127.0.0.1:1/db")     # no connection yet
    assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    engine.dispose()
    with pytest.raises(GpubenchError, match="sqlite:// or postgresql://"):
        store.create_engine("mysql://u@h/db")


# ---- storing ----

def test_add_run_is_idempotent_and_one_transaction(db, files):
    engine, sf = db
    doc = json.loads(files["membw"])
    rid, created = _add(sf, doc)
    assert created and len(rid) == 16 and rid == store.run_id_for(doc)
    assert _add(sf, doc) == (rid, False)
    # Same content, other key order and whitespace: same id.
    reordered = json.loads(json.dumps(doc, sort_keys=True))
    raw = json.dumps(reordered, indent=7, sort_keys=True).encode()
    assert store.add_run(sf, *parse_upload(raw)[:1], raw, "x") == (rid, False)
    assert _count(engine, RunRow.__table__) == 1
    assert _count(engine, RecordRow.__table__) == len(doc["records"])
    with sf() as s:
        row = s.get(RunRow, rid)
        assert row.sha256 == store.canonical_sha256(doc)
        assert row.gpu_key == "amd-epyc" and row.device_type == "cpu" and row.n_records == 3
        assert json.loads(row.document) == doc
        recs = s.execute(sa.select(RecordRow).where(RecordRow.run_id == rid)).scalars().all()
    assert {r.metric for r in recs} == {"gbps"} and all(r.unit == "GB/s" for r in recs)
    assert sorted(r.value for r in recs) == sorted(r["metrics"]["gbps"] for r in doc["records"])


def test_gpu_key_from_spec_key_or_name(db, files):
    _, sf = db
    h100 = as_machine(files["matmul"], spec_key=None)          # matched by name
    rid, _ = _add(sf, h100)
    odd = as_machine(files["matmul"], gpu="Mystery Accelerator X", spec_key=None, host="h2")
    rid2, _ = _add(sf, odd)
    with sf() as s:
        assert s.get(RunRow, rid).gpu_key == "h100-sxm"
        assert s.get(RunRow, rid2).gpu_key == "mystery-accelerator-x"


def test_concurrent_duplicate_uploads_make_one_row(db, files):
    engine, sf = db
    doc = as_machine(files["membw"], host="race")
    raw = dumps(doc)
    results, errors = [], []
    barrier = threading.Barrier(6)

    def go():
        try:
            barrier.wait()
            d, run = parse_upload(raw)
            results.append(store.add_run(sf, d, raw, "t", run=run))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {r[0] for r in results} == {store.run_id_for(doc)}
    assert sum(created for _, created in results) == 1
    assert _count(engine, RunRow.__table__) == 1


def test_lost_race_is_answered_with_the_existing_id(db, files, monkeypatch):
    # The pre-check misses (another upload commits between it and the INSERT): the
    # unique index refuses the second row and add_run answers with the first's id.
    engine, sf = db
    doc = json.loads(files["membw"])
    rid, _ = _add(sf, doc)
    real = store.find_by_sha
    calls = []

    def miss_once(sf_, digest):
        calls.append(digest)
        return None if len(calls) == 1 else real(sf_, digest)

    monkeypatch.setattr(store, "find_by_sha", miss_once)
    assert _add(sf, doc) == (rid, False)
    assert len(calls) == 2
    assert _count(engine, RunRow.__table__) == 1
    assert _count(engine, RecordRow.__table__) == len(doc["records"])


# ---- queries ----

def _populate(sf, files):
    """4 H100 uploads (3 membw at scales, 1 matmul), 1 A100 membw, 1 CPU matmul."""
    ids = {}
    for name, scale, day in (("h1", 1.0, "2026-01-10"), ("h2", 3.0, "2026-02-10"), ("h3", 2.0, "2026-03-10")):
        doc = as_machine(files["membw"], host=name, scale=scale, started_at=f"{day}T12:00:00+00:00")
        ids[name] = (_add(sf, doc)[0], doc)
    a100 = as_machine(files["membw"], gpu="NVIDIA A100-SXM4-80GB", spec_key="a100-sxm-80gb", host="a1",
                      scale=1.5, started_at="2026-02-15T00:00:00+00:00")
    ids["a1"] = (_add(sf, a100)[0], a100)
    mm = as_machine(files["matmul"], host="h4", started_at="2026-04-01T00:00:00+00:00")
    ids["h4"] = (_add(sf, mm)[0], mm)
    cpu = json.loads(files["matmul"])
    cpu["started_at"] = "2026-05-01T00:00:00+00:00"
    ids["cpu"] = (_add(sf, cpu)[0], cpu)
    return ids


def test_list_filters_and_pagination(db, files):
    _, sf = db
    ids = _populate(sf, files)
    items, total = store.list_runs(sf)
    assert total == 6 and len(items) == 6
    assert items[0]["id"] == ids["cpu"][0]            # newest upload first
    _, total = store.list_runs(sf, gpu="H100")        # case-insensitive, key or name
    assert total == 4
    _, total = store.list_runs(sf, gpu="a100-sxm-80gb")
    assert total == 1
    _, total = store.list_runs(sf, gpu="100%")        # LIKE characters are literal
    assert total == 0
    _, total = store.list_runs(sf, suite="membw")
    assert total == 4
    since = store.parse_bound("2026-02-10", end=False)[0]
    until = store.parse_bound("2026-03-10", end=True)
    got, total = store.list_runs(sf, since=since, until=until)
    assert total == 3 and {i["host"] for i in got} == {"h2", "h3", "a1"}
    pages = [store.list_runs(sf, limit=4, offset=o) for o in (0, 4)]
    assert [len(p[0]) for p in pages] == [4, 2] and all(p[1] == 6 for p in pages)
    assert len({i["id"] for p in pages for i in p[0]}) == 6
    assert store.list_runs(sf, limit=10_000)[0].__len__() == 6      # clamped, not an error


def test_leaderboard_best_median_spread(db, files):
    _, sf = db
    ids = _populate(sf, files)
    board = store.leaderboard(sf, benchmark="membw")
    assert board["metric"] == "gbps" and board["unit"] == "GB/s" and board["higher_is_better"]
    by_gpu = {it["gpu_key"]: it for it in board["items"]}
    assert set(by_gpu) == {"h100-sxm", "a100-sxm-80gb"}
    per_upload = sorted(main_value(ids[h][1]) for h in ("h1", "h2", "h3"))
    h = by_gpu["h100-sxm"]
    assert h["uploads"] == 3
    assert h["best"] == pytest.approx(per_upload[-1]) and h["max"] == pytest.approx(per_upload[-1])
    assert h["min"] == pytest.approx(per_upload[0]) and h["median"] == pytest.approx(per_upload[1])
    assert h["best_run_id"] == ids["h2"][0]
    assert by_gpu["a100-sxm-80gb"]["uploads"] == 1
    assert board["items"][0]["gpu_key"] == "h100-sxm"          # best first
    # Filters: suite, one case, an unknown benchmark.
    assert store.leaderboard(sf, benchmark="membw", suite="matmul")["items"] == []
    case = json.loads(dumps(ids["h1"][1]))["records"][0]["case_id"]
    one = store.leaderboard(sf, benchmark="membw", case_id=case)
    assert one["items"][0]["uploads"] == 3
    assert store.leaderboard(sf, benchmark="nope")["items"] == []
    mm = store.leaderboard(sf, benchmark="matmul", metric="tflops")
    assert {it["gpu_key"] for it in mm["items"]} == {"h100-sxm", "amd-epyc"}


def test_leaderboard_leaves_out_failed_records_and_probes(db, files):
    _, sf = db
    doc = as_machine(files["membw"], host="p", scale=1.0)
    doc["records"][0]["metrics"]["gbps"] = 1e6
    doc["records"][0]["params"]["search"] = "mamf"          # a probe: not on leaderboards
    doc["records"][1]["status"] = "failed"
    doc["records"][1]["metrics"]["gbps"] = 2e6
    _add(sf, doc)
    board = store.leaderboard(sf, benchmark="membw")
    assert board["items"][0]["best"] == pytest.approx(doc["records"][2]["metrics"]["gbps"])


def test_compare_two_runs(db, files):
    _, sf = db
    ids = _populate(sf, files)
    out, missing = store.compare(sf, [ids["h1"][0], ids["a1"][0]])
    assert missing == []
    assert [r["id"] for r in out["runs"]] == [ids["h1"][0], ids["a1"][0]]
    assert len(out["rows"]) == 3
    for row in out["rows"]:
        assert row["ratios"][1] == pytest.approx(1.5)
    out, missing = store.compare(sf, [ids["h1"][0], "0" * 16])
    assert missing == ["0" * 16]


def test_ten_thousand_runs_stay_fast(db):
    """Bulk-load 10,000 runs x 10 records, then time the queries the pages make."""
    engine, sf = db
    gpus = [f"gpu-{i}" for i in range(20)]
    now = datetime(2026, 1, 1)
    runs, records = [], []
    for i in range(10_000):
        rid = hashlib.sha256(str(i).encode()).hexdigest()[:16]
        runs.append({"id": rid, "sha256": hashlib.sha256(str(i).encode()).hexdigest(), "uploaded_at": now,
                     "uploader": "bulk", "suite": "membw" if i % 2 else "matmul", "status": "complete",
                     "schema_version": 2, "gpu_name": gpus[i % 20], "gpu_key": gpus[i % 20], "device_type": "cuda",
                     "host": f"h{i}", "started_at": now, "gpubench_version": "0.1.0", "n_records": 10,
                     "size_bytes": 2, "document": "{}"})
        bench, metric = ("membw", "gbps") if i % 2 else ("matmul", "tflops")
        for k in range(10):
            records.append({"run_id": rid, "case_id": f"{bench}[k={k}]", "benchmark": bench, "params": "{}",
                            "status": "ok", "metric": metric, "value": float((i * 7 + k) % 1000), "unit": "x",
                            "pct_of_peak": None, "is_probe": False})
    with engine.begin() as c:
        c.execute(sa.insert(RunRow.__table__), runs)
        c.execute(sa.insert(RecordRow.__table__), records)
    with engine.connect() as c:
        c.exec_driver_sql("ANALYZE")
    timings = {}
    for name, fn in {
        "leaderboard": lambda: store.leaderboard(sf, benchmark="membw", suite="membw"),
        "leaderboard-default-metric": lambda: store.leaderboard(sf, benchmark="matmul"),
        "list": lambda: store.list_runs(sf, gpu="gpu-1", limit=50, offset=100),
        "catalog": lambda: store.catalog(sf),
    }.items():
        t0 = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t0
        assert out
    board = store.leaderboard(sf, benchmark="membw")
    assert len(board["items"]) == 10 and sum(it["uploads"] for it in board["items"]) == 5000
    # Generous for a shared 2-core VM; typical figures are a few tens of milliseconds.
    assert max(timings.values()) < 1.5, timings


# ---- tokens ----

def test_tokens_are_stored_as_hashes_only(db):
    engine, sf = db
    with sf() as s:
        token = create_token(s, "alice")
    assert len(token) >= 40
    with engine.connect() as c:
        rows = c.execute(sa.select(TokenRow.__table__)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_sha256"] == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    assert all(token not in str(v) for v in rows[0].values())
    with sf() as s:
        assert check_token(s, token) == "alice"
        assert check_token(s, token + "x") is None
        with pytest.raises(GpubenchError, match="already exists"):
            create_token(s, "alice")
        revoke_token(s, "alice")
        assert check_token(s, token) is None
        with pytest.raises(GpubenchError, match="already revoked"):
            revoke_token(s, "alice")
        with pytest.raises(GpubenchError, match="no token named"):
            revoke_token(s, "bob")
        again = create_token(s, "alice")            # a revoked name can get a new token
        assert check_token(s, again) == "alice" and check_token(s, token) is None


# ---- the CLI ----

def test_cli_token_create_and_revoke(tmp_path, capsys):
    from gpubench.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with pytest.raises(SystemExit) as e:
        main(["hub", "token", "create", "ci-bot", "--database-url", url])
    assert e.value.code == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert len(token) >= 40 and "not stored" in err
    engine = store.create_engine(url)
    with store.session_factory(engine)() as s:
        assert check_token(s, token) == "ci-bot"
    with pytest.raises(SystemExit) as e:
        main(["hub", "token", "create", "ci-bot", "--database-url", url])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("gpubench: error: a token named 'ci-bot' already exists")
    with pytest.raises(SystemExit) as e:
        main(["hub", "token", "revoke", "ci-bot", "--database-url", url])
    assert e.value.code == 0
    with store.session_factory(engine)() as s:
        assert check_token(s, token) is None
    engine.dispose()


def test_cli_unreachable_postgres_is_one_line(capsys):
    from gpubench.cli import main

    with pytest.raises(SystemExit) as e:
        main(["hub", "token", "create", "x", "--database-url", "postgresql://u:secret@127.0.0.1:1/db"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gpubench: error: database postgresql+psycopg://u:***@127.0.0.1:1/db")
    assert len(err.strip().splitlines()) == 1 and "secret" not in err
