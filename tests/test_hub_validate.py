"""What the hub accepts as an upload: real files pass; each kind of bad file is
refused with the right status and the path of the field at fault."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("sqlmodel")

from hub_helpers import as_machine, dumps, real_results

from gpubench.hub import vocabulary as V
from gpubench.hub.validate import UploadRejected, parse_upload
from gpubench.results import SCHEMA_VERSION, Run


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    return real_results(tmp_path_factory)


def test_real_files_pass(files):
    for name, raw in files.items():
        doc, run = parse_upload(raw)
        assert isinstance(run, Run) and run.records, name
        assert doc == json.loads(raw)
        assert run.schema_version == SCHEMA_VERSION


def test_real_files_as_a_gpu_pass(files):
    _, run = parse_upload(dumps(as_machine(files["matmul"], scale=100.0)))
    assert run.env["device"]["spec_key"] == "h100-sxm"


def _mutate(raw: bytes, fn) -> bytes:
    doc = json.loads(raw)
    fn(doc)
    return dumps(doc)


def _set(path, value):
    def fn(doc):
        cur = doc
        for p in path[:-1]:
            cur = cur[p]
        cur[path[-1]] = value
    return fn


def _del(path):
    def fn(doc):
        cur = doc
        for p in path[:-1]:
            cur = cur[p]
        del cur[path[-1]]
    return fn


def _nest(depth):
    def fn(doc):
        x: list = []
        for _ in range(depth):
            x = [x]
        doc["config"]["deep"] = x
    return fn


# (id, how to make the body from the membw file's bytes, status, field)
BAD = [
    ("not-utf8", lambda raw: b"\xff\xfe{}", 400, "body"),
    ("not-json", lambda raw: b'{"schema_version": 2,', 400, "body"),
    ("empty", lambda raw: b"   ", 400, "body"),
    ("array", lambda raw: b"[1, 2]", 422, "schema_version"),
    ("no-version", lambda raw: _mutate(raw, _del(["schema_version"])), 422, "schema_version"),
    ("newer-version", lambda raw: _mutate(raw, _set(["schema_version"], SCHEMA_VERSION + 1)), 422, "schema_version"),
    ("text-version", lambda raw: _mutate(raw, _set(["schema_version"], "2")), 422, "schema_version"),
    ("bool-version", lambda raw: _mutate(raw, _set(["schema_version"], True)), 422, "schema_version"),
    ("records-not-list", lambda raw: _mutate(raw, _set(["records"], {"a": 1})), 422, "records"),
    ("no-records", lambda raw: _mutate(raw, _del(["records"])), 422, "records"),
    ("record-not-object", lambda raw: _mutate(raw, _set(["records", 1], 7)), 422, "records[1]"),
    ("no-params", lambda raw: _mutate(raw, _del(["records", 0, "params"])), 422, "records[0].params"),
    ("params-not-object", lambda raw: _mutate(raw, _set(["records", 0, "params"], [1])), 422, "records[0].params"),
    ("bad-record-status", lambda raw: _mutate(raw, _set(["records", 2, "status"], "great")), 422,
     "records[2].status"),
    ("bad-run-status", lambda raw: _mutate(raw, _set(["status"], "perfect")), 422, "status"),
    ("no-suite", lambda raw: _mutate(raw, _del(["suite"])), 422, "suite"),
    ("env-not-object", lambda raw: _mutate(raw, _set(["env"], "gpu")), 422, "env"),
    ("timing-not-object", lambda raw: _mutate(raw, _set(["records", 0, "timing"], 3)), 422, "records[0].timing"),
    ("negative-median", lambda raw: _mutate(raw, _set(["records", 1, "timing", "median_s"], -0.001)), 422,
     "records[1].timing.median_s"),
    ("nan-median", lambda raw: raw.replace(b'"median_s": ', b'"median_s": NaN, "x_median_s": ', 1), 422,
     "records[0].timing.median_s"),
    ("negative-sample", lambda raw: _mutate(raw, lambda d: d["records"][0]["timing"]["samples_s"].__setitem__(
        3, -1.0)), 422, "records[0].timing.samples_s[3]"),
    ("infinity-literal", lambda raw: raw.replace(b'"median_s": ', b'"median_s": Infinity, "y_median_s": ', 1),
     422, "records[0].timing.median_s"),
    ("negative-gbps", lambda raw: _mutate(raw, _set(["records", 0, "metrics", "gbps"], -5.0)), 422,
     "records[0].metrics.gbps"),
    ("negative-bytes", lambda raw: _mutate(raw, _set(["records", 0, "work", "bytes"], -1)), 422,
     "records[0].work.bytes"),
    ("negative-power", lambda raw: _mutate(raw, _set(["records", 0, "telemetry"], {"power_w_mean": -3.0})), 422,
     "records[0].telemetry.power_w_mean"),
    ("negative-energy", lambda raw: _mutate(raw, _set(["records", 0, "telemetry"], {"energy_j": -3.0})), 422,
     "records[0].telemetry.energy_j"),
    ("mfu-out-of-range", lambda raw: _mutate(raw, _set(["records", 0, "metrics", "mfu"], 3.5)), 422,
     "records[0].metrics.mfu"),
    ("negative-hfu", lambda raw: _mutate(raw, _set(["records", 0, "metrics", "hfu"], -0.1)), 422,
     "records[0].metrics.hfu"),
    ("unknown-metric", lambda raw: _mutate(raw, _set(["records", 0, "metrics", "speed"], 1.0)), 422,
     "records[0].metrics.speed"),
    ("long-suite", lambda raw: _mutate(raw, _set(["suite"], "s" * 300)), 422, "suite"),
    ("long-host", lambda raw: _mutate(raw, _set(["env", "host", "hostname"], "h" * 20_000)), 422,
     "env.host.hostname"),
    ("long-gpu-name", lambda raw: _mutate(raw, _set(["env", "device", "name"], "g" * 300)), 422,
     "env.device.name"),
    ("long-param", lambda raw: _mutate(raw, _set(["records", 0, "params", "op"], "x" * 20_000)), 422,
     "records[0].params.op"),
    ("long-benchmark", lambda raw: _mutate(raw, _set(["records", 0, "benchmark"], "b" * 300)), 422,
     "records[0].benchmark"),
    ("nul-in-host", lambda raw: _mutate(raw, _set(["env", "host", "hostname"], "a\x00b")), 422,
     "env.host.hostname"),
    ("lone-surrogate", lambda raw: raw.replace(b'"hostname": "', b'"hostname": "\\ud800', 1), 422,
     "env.host.hostname"),
    ("too-deep", lambda raw: _mutate(raw, _nest(200)), 422, None),
    ("huge-int", lambda raw: _mutate(raw, _set(["records", 0, "work", "seed"], 10 ** 30)), 422,
     "records[0].work.seed"),
    ("bad-started-at", lambda raw: _mutate(raw, _set(["started_at"], "yesterday")), 422, "started_at"),
]


@pytest.mark.parametrize("make, status, field", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_rejections_name_the_field(files, make, status, field):
    body = make(files["membw"])
    with pytest.raises(UploadRejected) as info:
        parse_upload(body)
    e = info.value
    assert e.status_code == status, e
    if field is None:       # nesting: some path inside config
        assert e.field.startswith("config.deep"), e.field
    else:
        assert e.field == field, e
    assert e.message


def test_size_limit_is_413(files):
    raw = files["membw"]
    with pytest.raises(UploadRejected) as info:
        parse_upload(raw, max_bytes=len(raw) - 1)
    assert (info.value.status_code, info.value.field) == (413, "body")
    parse_upload(raw, max_bytes=len(raw))       # exactly at the limit is fine


def test_tflops_above_twice_the_peak(files):
    # fp32 on an H100 SXM: dense peak 67 TFLOP/s, so 2× is 134.
    def with_tflops(value, gpu="NVIDIA H100 80GB HBM3", key="h100-sxm"):
        doc = as_machine(files["matmul"], gpu=gpu, spec_key=key)
        doc["records"][0]["metrics"]["tflops"] = value
        return dumps(doc)

    parse_upload(with_tflops(130.0))
    with pytest.raises(UploadRejected) as info:
        parse_upload(with_tflops(140.0))
    assert (info.value.status_code, info.value.field) == (422, "records[0].metrics.tflops")
    assert "67" in info.value.message
    # Matched by name when the file has no spec_key.
    with pytest.raises(UploadRejected):
        parse_upload(with_tflops(140.0, key=None))
    # A GPU gpubench has no datasheet for: no peak, no check.
    parse_upload(with_tflops(140.0, gpu="Imaginary GPU 9000", key=None))


def test_schema_1_file_is_migrated(files):
    doc = json.loads(files["membw"])
    doc["schema_version"] = 1
    for r in doc["records"]:
        r["stats"] = r.pop("timing")
        for key in ("check", "telemetry"):
            r.pop(key, None)
    _, run = parse_upload(dumps(doc))
    assert run.schema_version == 2
    assert run.records[0].timing["median_s"] == doc["records"][0]["stats"]["median_s"]


def test_metric_vocabulary_covers_what_benches_emit(files):
    # Every metric in the real files, and every name found by reading the benches.
    emitted = {k for raw in files.values() for r in json.loads(raw)["records"] for k in r["metrics"]}
    by_hand = {"tflops", "gbps", "pct_of_peak", "peak_gbps", "peak_tflops", "power_w", "energy_per_tflop_j",
               "flop_per_byte", "quantization_rel_err", "scaling_s", "tflops_incl_scaling", "algbw_gbps",
               "busbw_gbps", "latency_us", "straggler_ratio", "rank_median_s", "step_s", "tokens_per_s",
               "tokens_per_s_per_gpu", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "mfu", "hfu",
               "mfu_vs_bf16_peak", "peak_memory_bytes", "peak_memory_source", "memory_fraction",
               "saved_activation_bytes", "model_state_bytes", "energy_per_token_j", "usd_per_gpu_hour",
               "price_source", "usd_per_million_tokens", "loss", "loss_scale", "fp8_fallback_calls",
               "best_m", "best_n", "best_k", "probes", "search_s", "stopped", "budget_s", "tried",
               "largest_model", "largest_params", "memory_headroom_bytes", "limit_bytes", "top_of_ladder",
               "next_model", "next_needed_bytes_est", "memory_needed_bytes", "memory_free_bytes",
               "memory_requested_bytes", "memory_total_bytes"}
    unknown = sorted(n for n in emitted | by_hand if not V.known_metric_name(n))
    assert unknown == []
    assert not V.known_metric_name("speed") and not V.known_metric_name("score")


def test_direction_of_metrics():
    assert V.higher_is_better("tflops") and V.higher_is_better("busbw_gbps")
    assert V.higher_is_better("tokens_per_s") and V.higher_is_better("tokens_per_s_per_gpu")
    assert not V.higher_is_better("latency_us") and not V.higher_is_better("step_s")
    assert not V.higher_is_better("usd_per_million_tokens")


# ---- property: any body is either stored or refused with UploadRejected ----

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory, files):
    from gpubench.hub import store

    engine = store.create_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'f.db'}")
    store.migrate(engine)
    yield store.session_factory(engine)
    engine.dispose()


def _accept_or_refuse(raw: bytes, sf) -> None:
    from gpubench.hub import store

    try:
        doc, run = parse_upload(raw)
    except UploadRejected as e:
        assert e.status_code in (400, 413, 422) and e.field and e.message
        return
    rid, _ = store.add_run(sf, doc, raw, "fuzz", run=run)      # what passes must be storable
    assert store.get_run(sf, rid) is not None


# HUB_FUZZ_N=5000 for a longer search.
@settings(max_examples=int(os.environ.get("HUB_FUZZ_N") or 150), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_real_files_are_stored_or_refused(files, fuzz_db, data):
    doc = json.loads(files[data.draw(st.sampled_from(sorted(files)))])
    paths = list(_paths(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        try:
            for p in path[:-1]:
                parent = parent[p]
            parent[path[-1]] = data.draw(_json)
        except (KeyError, IndexError, TypeError):
            continue
    raw = json.dumps(doc, allow_nan=True).encode()
    _accept_or_refuse(raw, fuzz_db)


@settings(max_examples=int(os.environ.get("HUB_FUZZ_N") or 100), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200) | _json.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bodies_are_refused_cleanly(fuzz_db, body):
    _accept_or_refuse(body, fuzz_db)
