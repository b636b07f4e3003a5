"""How fast the results hub answers with 10,000 runs stored (issue 7).

    pytest benchmarks/test_hub.py --benchmark-json hub-bench.json

A SQLite database is seeded with 10,000 runs through ``gpubench.hub.store`` (the
documents: real result files that ``gpubench run`` writes on this CPU, rewritten as
runs of several GPU models, hosts, dates and suites, with plausible figures for each
GPU), then ``gpubench hub serve`` runs on it on loopback and every figure is a
client's round trip over HTTP (keep-alive, one connection):

- ``test_upload``: POST /api/v1/runs of distinct documents (``extra_info.uploads_per_s``);
- ``test_compare``: GET /api/v1/compare?ids= of 2 and of 4 runs;
- ``test_leaderboard``: GET /api/v1/leaderboard?benchmark=... (with and without metric);
- ``test_list_runs_by_gpu``: GET /api/v1/runs?gpu=...;
- ``test_page``: the HTML pages that aggregate (index, a leaderboard).

These tests do not take ``gpubench_case``: the suite parametrization of conftest.py
leaves them alone. Seeding takes a while (about 20-40 s on a 2-core machine), so
they run only when this file is named on the command line (or with
GPUBENCH_HUB_BENCH=1); ``pytest benchmarks/`` skips them and says so.
``GPUBENCH_HUB_BENCH_RUNS`` changes the number of seeded runs (default 10000).
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")

from sqlalchemy import event

from gpubench.hardware import match_gpu
from gpubench.hub import store
from gpubench.hub.validate import validate_document

ROOT = Path(__file__).resolve().parents[1]
N_RUNS = int(os.environ.get("GPUBENCH_HUB_BENCH_RUNS") or 10_000)
API = "/api/v1"

# The GPU models of the seeded runs: name, memory, and what each delivers here
# (FP32 and BF16 matmul TFLOP/s at the largest shape, copy GB/s at the largest size).
GPU_MODELS = [
    ("NVIDIA H100 80GB HBM3", 80, 51.0, 720.0, 2900.0),
    ("NVIDIA A100-SXM4-80GB", 80, 18.5, 265.0, 1750.0),
    ("NVIDIA L40S", 48, 60.0, 250.0, 760.0),
    ("AMD Instinct MI300X", 192, 110.0, 800.0, 4100.0),
    ("NVIDIA L4", 24, 22.0, 90.0, 260.0),
    ("NVIDIA GeForce RTX 4090", 24, 70.0, 150.0, 900.0),
]
# (suite, share of runs): "mixed-precision" holds both kinds of records.
SUITES = [("mixed-precision", 5), ("matmul", 3), ("membw", 2)]

# Result files written here once per session (in parallel, about 10 s).
COMMANDS = {
    "membw": ["run", "--suite", "membw", "--device", "cpu", "--quick"],
    "matmul": ["run", "--benchmark", "matmul", "--dtype", "fp32,bf16", "--shape", "256x256x256",
               "--shape", "512x512x512", "--device", "cpu", "--quick"],
}


def _hub_live():
    """tests/hub_live.py (LiveHub: `gpubench hub serve` as a subprocess), loaded by path so
    that tests/ need not be on sys.path."""
    spec = importlib.util.spec_from_file_location("gpubench_tests_hub_live", ROOT / "tests" / "hub_live.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _named_on_command_line(config) -> bool:
    here = Path(__file__).resolve()
    base = Path(config.invocation_params.dir)
    for arg in config.invocation_params.args:
        arg = str(arg)
        if arg.startswith("-"):
            continue
        try:
            if (base / arg.split("::", 1)[0]).resolve() == here:
                return True
        except OSError:
            continue
    return False


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(pytestconfig):
    if not (_named_on_command_line(pytestconfig) or os.environ.get("GPUBENCH_HUB_BENCH") == "1"):
        pytest.skip("hub benchmarks seed 10,000 runs first: run them by name "
                    "(pytest benchmarks/test_hub.py) or set GPUBENCH_HUB_BENCH=1")


# ---- realistic documents ----

def real_results(out: Path) -> dict[str, dict]:
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    procs = {name: subprocess.Popen([sys.executable, "-m", "gpubench", *args, "--out", str(out / f"{name}.json")],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
             for name, args in COMMANDS.items()}
    docs = {}
    for name, p in procs.items():
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, log.decode(errors="replace")[-3000:]
        docs[name] = json.loads((out / f"{name}.json").read_text())
    return docs


class Documents:
    """Document i: a suite's real records, as run on GPU model i % 6 by one of its hosts."""

    def __init__(self, real: dict[str, dict]):
        mixed = copy.deepcopy(real["matmul"])
        mixed["records"] = real["matmul"]["records"] + real["membw"]["records"]
        templates = {"matmul": real["matmul"], "membw": real["membw"], "mixed-precision": mixed}
        self.suites = [s for s, share in SUITES for _ in range(share)]
        self.text = {}
        for suite, template in templates.items():
            doc = copy.deepcopy(template)
            doc["suite"] = suite
            # The CLI's argv is no part of what is compared; keep the files small and plain.
            doc["env"]["argv"] = ["run", "--suite", suite]
            self.text[suite] = json.dumps(doc)
        self.specs = {name: match_gpu(name, None) for name, *_ in GPU_MODELS}
        self.t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self, i: int, salt: str = "") -> dict:
        rng = random.Random(f"{i}/{salt}")
        suite = self.suites[i % len(self.suites)]
        name, mem_gb, fp32, bf16, gbps = GPU_MODELS[i % len(GPU_MODELS)]
        spec = self.specs[name]
        doc = json.loads(self.text[suite])
        doc["run_id"] = f"seed-{i:06d}{salt}"
        started = self.t0 + timedelta(minutes=47 * i)
        doc["started_at"] = started.isoformat(timespec="seconds")
        doc["finished_at"] = (started + timedelta(minutes=3)).isoformat(timespec="seconds")
        dev = doc["env"]["device"]
        dev.update(name=name, type="cuda", index=0, label="cuda:0", spec_key=None,
                   total_memory_bytes=mem_gb * 2**30, capability=[9, 0], cache_bytes=50 * 2**20,
                   peak_tflops=None, peak_mem_bandwidth_gbps=None, unsupported={})
        doc["env"]["host"].update(hostname=f"{name.split()[1].lower()}-node-{i % 37:02d}", cpu="x86_64",
                                  cpu_count=64)
        doc["env"]["gpu"] = {"count": 8, "names": [name] * 8, "nvml": {"available": True,
                                                                        "driver_version": "560.35.03"}}
        for rec in doc["records"]:
            rec["device"] = "cuda:0"
            m, t, w = rec["metrics"], rec["timing"], rec["work"]
            noise = rng.uniform(0.88, 1.04)
            if rec["benchmark"] == "matmul":
                dtype = rec["params"]["dtype"]
                size = rec["params"]["m"]
                tflops = (fp32 if dtype == "fp32" else bf16) * (0.55 if size <= 256 else 0.8) * noise
                m["tflops"] = tflops
                peak = spec.peak(dtype) if spec else None
                m["peak_tflops"] = peak
                m["pct_of_peak"] = 100 * tflops / peak if peak else None
                scale = w["flops"] / (tflops * 1e12) / t["median_s"]
            else:
                rate = gbps * min(1.0, rec["params"]["size_bytes"] / 2**26) ** 0.3 * noise
                m["gbps"] = rate
                bw = spec.mem_bandwidth_gbps if spec else None
                m["peak_gbps"] = bw
                m["pct_of_peak"] = 100 * rate / bw if bw else None
                scale = w["bytes"] / (rate * 1e9) / t["median_s"]
            for key, value in list(t.items()):
                if key.endswith("_s") and isinstance(value, (int, float)) and key != "warmup_s":
                    t[key] = value * scale
            if isinstance(t.get("samples_s"), list):
                t["samples_s"] = [v * scale for v in t["samples_s"]]
        return doc


# ---- the seeded hub ----

def seed(url: str, make, n: int) -> dict:
    """n runs stored through gpubench.hub.store; what a check needs to know about them."""
    engine = store.create_engine(url)
    # Seeding only: no fsync per commit (the hub itself keeps synchronous=FULL).
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
    store.migrate(engine)
    sf = store.session_factory(engine)
    t0 = datetime(2026, 6, 1)
    info = {"ids": {}, "gpu_runs": {}, "bench_runs": {"matmul": 0, "membw": 0}}
    try:
        for i in range(n):
            doc = make(i)
            if i < 2 * len(GPU_MODELS) * len(SUITES):      # every GPU x suite once: the hub accepts them
                validate_document(copy.deepcopy(doc))
            rid, created = store.add_run(sf, doc, json.dumps(doc), "seed", uploaded_at=t0 + timedelta(seconds=i))
            assert created
            count(info, rid, doc)
    finally:
        engine.dispose()
    return info


def count(info: dict, rid: str, doc: dict) -> None:
    info["ids"].setdefault(doc["suite"], []).append(rid)
    gpu = doc["env"]["device"]["name"]
    info["gpu_runs"][gpu] = info["gpu_runs"].get(gpu, 0) + 1
    for b in {r["benchmark"] for r in doc["records"]}:
        info["bench_runs"][b] += 1


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-bench")
    make = Documents(real_results(d))
    url = f"sqlite:///{d / 'hub.db'}"
    started = time.perf_counter()
    info = seed(url, make, N_RUNS)
    seconds = time.perf_counter() - started
    print(f"\nseeded {N_RUNS} runs in {seconds:.1f} s ({(d / 'hub.db').stat().st_size / 2**20:.0f} MiB)")
    live = _hub_live()
    with live.LiveHub(url, log_dir=d) as h:
        h.make, h.info, h.seed_s = make, info, seconds
        h.http = h.client()
        yield h
        h.http.close()
        assert "Traceback" not in h.log_tail(200_000)


def _get(hub, path: str) -> dict:
    status, _, body = hub.http.request("GET", path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body) if body[:1] in (b"{", b"[") else {"html": body}


def _budget(benchmark, seconds: float):
    """A generous ceiling (about 10x what a 2-core VM measures): catches a query that
    stopped using its index, not noise."""
    if benchmark.stats:
        assert benchmark.stats.stats.median < seconds, benchmark.stats.stats.median


# ---- the measurements ----

def test_seeding_was_fast_enough(hub):
    assert hub.seed_s < 120, hub.seed_s
    totals = _get(hub, f"{API}/runs?limit=1")
    assert totals["total"] == N_RUNS


def test_upload(benchmark, hub):
    counter = itertools.count()
    sizes, statuses = [], []

    def setup():
        doc = hub.make(N_RUNS + next(counter), salt="-upload")
        body = json.dumps(doc).encode()
        sizes.append(len(body))
        return (doc, body), {}

    def upload(doc, body):
        status, _, data = hub.http.request("POST", f"{API}/runs", body)
        statuses.append(status)
        if status == 201:
            count(hub.info, json.loads(data)["id"], doc)

    benchmark.pedantic(upload, setup=setup, rounds=100, warmup_rounds=3, iterations=1)
    assert statuses and set(statuses) == {201}      # distinct documents: every one stored
    if benchmark.stats:
        benchmark.extra_info["uploads_per_s"] = 1 / benchmark.stats.stats.mean
    benchmark.extra_info["document_bytes"] = sum(sizes) // len(sizes)
    benchmark.extra_info["stored_runs"] = N_RUNS
    _budget(benchmark, 0.5)


@pytest.mark.parametrize("n", [2, 4])
def test_compare(benchmark, hub, n):
    ids = hub.info["ids"]["mixed-precision"] + hub.info["ids"]["matmul"]
    rng = random.Random(n)
    sets = [rng.sample(ids, n) for _ in range(50)]
    cycle = itertools.cycle(sets)
    out = {}

    def get(path):
        out["body"] = _get(hub, path)

    benchmark.pedantic(get, setup=lambda: ((f"{API}/compare?ids={','.join(next(cycle))}",), {}),
                       rounds=50, warmup_rounds=2, iterations=1)
    body = out["body"]
    assert len(body["runs"]) == n and body["rows"]
    assert all(len(row["values"]) == n for row in body["rows"])
    benchmark.extra_info.update(stored_runs=N_RUNS, runs_compared=n)
    _budget(benchmark, 0.3)


@pytest.mark.parametrize("query", ["benchmark=matmul&metric=tflops", "benchmark=matmul",
                                   "benchmark=membw&metric=gbps&suite=membw"])
def test_leaderboard(benchmark, hub, query):
    body = benchmark.pedantic(_get, args=(hub, f"{API}/leaderboard?{query}"), rounds=20, warmup_rounds=1,
                              iterations=1)
    assert len(body["items"]) == len(GPU_MODELS)
    assert body["metric"] in ("tflops", "gbps")
    if "suite" not in query:
        assert sum(it["uploads"] for it in body["items"]) == hub.info["bench_runs"][query.split("&")[0][10:]]
    benchmark.extra_info.update(stored_runs=N_RUNS, query=query)
    _budget(benchmark, 1.5)


@pytest.mark.parametrize("gpu", ["h100", "NVIDIA"])
def test_list_runs_by_gpu(benchmark, hub, gpu):
    body = benchmark.pedantic(_get, args=(hub, f"{API}/runs?gpu={quote(gpu)}"), rounds=30, warmup_rounds=1,
                              iterations=1)
    expected = sum(k for name, k in hub.info["gpu_runs"].items() if gpu.lower() in name.lower())
    # (the uploads of test_upload are newer runs of the same models: at least the seeded ones)
    assert body["total"] >= expected > 0 and len(body["items"]) == 50
    benchmark.extra_info.update(stored_runs=N_RUNS, gpu=gpu)
    _budget(benchmark, 0.5)


@pytest.mark.parametrize("path", ["/", "/leaderboard?benchmark=matmul"])
def test_page(benchmark, hub, path):
    body = benchmark.pedantic(_get, args=(hub, path), rounds=10, warmup_rounds=1, iterations=1)
    assert b"<svg" in body["html"] or path == "/"
    assert b"matmul" in body["html"]
    benchmark.extra_info.update(stored_runs=N_RUNS, path=path)
    _budget(benchmark, 3.0)
