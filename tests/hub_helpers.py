"""Test data for the hub tests: real result files written by gpubench on the CPU,
and copies of them edited to look like other machines (the server only sees
JSON, so a different env block is a different GPU to it)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # Starlette's TestClient warns about httpx' future; the client works the same.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: F401  (re-exported for the tests)

_CACHE: dict[str, dict[str, bytes]] = {}

# Set to a PostgreSQL URL (e.g. postgresql://postgres@127.0.0.1:5432/hubtest) to run the
# hub's database and API tests on PostgreSQL instead of SQLite. Every test empties it.
POSTGRES_ENV = "GPUBENCH_HUB_TEST_POSTGRES"


def fresh_database_url(tmp_path) -> str:
    """An empty database: a new SQLite file, or the PostgreSQL one of $GPUBENCH_HUB_TEST_POSTGRES
    with every table dropped."""
    pg = os.environ.get(POSTGRES_ENV)
    if not pg:
        return f"sqlite:///{tmp_path / 'hub.db'}"
    import sqlalchemy as sa

    from gpubench.hub import store

    engine = store.create_engine(pg)
    with engine.begin() as c:
        for table in ("records", "runs", "tokens", "alembic_version"):
            c.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()
    return pg


def on_postgres() -> bool:
    return bool(os.environ.get(POSTGRES_ENV))

COMMANDS = {
    "membw": ["run", "--suite", "membw", "--device", "cpu", "--quick"],
    "matmul": ["run", "--benchmark", "matmul", "--dtype", "fp32", "--shape", "256x256x256",
               "--device", "cpu", "--quick"],
}


def real_results(tmp_path_factory) -> dict[str, bytes]:
    """{"membw": bytes, "matmul": bytes}: gpubench run on the CPU, once per session
    (both runs in parallel, a few seconds)."""
    if "files" in _CACHE:
        return _CACHE["files"]
    out = tmp_path_factory.mktemp("hub-results")
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    procs = {}
    for name, args in COMMANDS.items():
        procs[name] = subprocess.Popen([sys.executable, "-m", "gpubench", *args, "--out", str(out / f"{name}.json")],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    files = {}
    for name, p in procs.items():
        log, _ = p.communicate(timeout=300)
        assert p.returncode == 0, log.decode(errors="replace")[-2000:]
        files[name] = (out / f"{name}.json").read_bytes()
    _CACHE["files"] = files
    return files


def as_machine(raw: bytes, *, gpu: str = "NVIDIA H100 80GB HBM3", spec_key: str | None = "h100-sxm",
               host: str = "node1", started_at: str | None = None, scale: float = 1.0,
               device_type: str = "cuda") -> dict:
    """The result file as if run on another machine: its device, host and start time
    replaced and every rate multiplied by ``scale``."""
    doc = json.loads(raw)
    doc = copy.deepcopy(doc)
    dev = doc["env"]["device"]
    dev.update(name=gpu, spec_key=spec_key, type=device_type, total_memory_bytes=None)
    doc["env"]["host"]["hostname"] = host
    if started_at:
        doc["started_at"] = started_at
    for rec in doc["records"]:
        m = rec.get("metrics") or {}
        for key in ("tflops", "gbps"):
            if isinstance(m.get(key), (int, float)):
                m[key] = m[key] * scale
    return doc


def dumps(doc) -> bytes:
    return json.dumps(doc).encode("utf-8")


def main_value(doc: dict) -> float:
    """The best main-metric value of a doc's ok records (tflops or gbps)."""
    vals = [r["metrics"].get("tflops", r["metrics"].get("gbps")) for r in doc["records"] if r["status"] == "ok"]
    return max(v for v in vals if v is not None)


ROOT = Path(__file__).resolve().parents[1]
