"""Telemetry: the summary arithmetic, the sampler thread, and the no-NVML path.

Everything except the last two tests runs on scripted fake sources, so the
numbers are exact and nothing depends on a GPU or on thread timing luck.
"""

import json
import threading
import time
import types

import pytest

from gpubench import telemetry
from gpubench.telemetry import (
    NvmlSource,
    Sample,
    Sampler,
    decode_throttle_reasons,
    nvml_unavailable_reason,
    nvml_uuid,
    open_source,
    summarize,
)


def sample(t, power=None, energy=None, sm=None, mem=None, temp=None, mask=None, errors=0):
    return Sample(t, power, energy, sm, mem, temp, mask, errors)


class ScriptedSource:
    """Returns the scripted samples in order, then keeps repeating the last one."""

    name = "fake"

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def read(self):
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        return item


class CountingSource:
    """Real timestamps, thread-safe call count: for testing the background thread itself."""

    name = "counting"

    def __init__(self):
        self.calls = 0
        self.threads = set()
        self._lock = threading.Lock()

    def read(self):
        with self._lock:
            self.calls += 1
            self.threads.add(threading.get_ident())
        return sample(time.perf_counter(), power=100.0, energy=self.calls, sm=1500)


# ---------------------------------------------------------------- energy


def test_energy_from_counter_difference():
    s = summarize([sample(0.0, 250.0, 1000), sample(0.5, 260.0, 3000), sample(1.0, 270.0, 6000)])
    assert s["energy_j"] == pytest.approx(5.0)
    assert s["energy_method"] == "counter"
    assert s["duration_s"] == pytest.approx(1.0)
    assert s["samples"] == 3


def test_energy_falls_back_to_power_integral_without_counter():
    s = summarize([sample(t, power=300.0) for t in (0.0, 0.5, 1.0, 1.5, 2.0)])
    assert s["energy_j"] == pytest.approx(600.0)
    assert s["energy_method"] == "power_integral"


def test_power_integral_is_trapezoidal_and_mean_time_weighted():
    # 100 W for 1 s, ramp to 300 W over the next 3 s: 100 + 3 * 200 = 700 J over 4 s.
    s = summarize([sample(0.0, 100.0), sample(1.0, 100.0), sample(4.0, 300.0)])
    assert s["energy_j"] == pytest.approx(700.0)
    assert s["power_w_mean"] == pytest.approx(175.0)  # a plain mean would say 166.7
    assert s["power_w_max"] == 300.0


def test_counter_reset_falls_back_to_power_integral():
    s = summarize([sample(0.0, 200.0, 9_000_000), sample(1.0, 200.0, 500)])
    assert s["energy_method"] == "power_integral"
    assert s["energy_j"] == pytest.approx(200.0)


def test_counter_that_did_not_tick_falls_back_to_power_integral():
    s = summarize([sample(0.0, 200.0, 4000), sample(0.01, 200.0, 4000)])
    assert s["energy_method"] == "power_integral"
    assert s["energy_j"] == pytest.approx(2.0)


def test_counter_uses_first_and_last_available_readings():
    s = summarize([sample(0.0, None, 1000), sample(0.5), sample(1.0, None, 3500), sample(1.1)])
    assert s["energy_j"] == pytest.approx(2.5)
    assert s["energy_method"] == "counter"


def test_nothing_readable_gives_nones_not_errors():
    s = summarize([sample(0.0), sample(1.0)])
    for key in (
        "energy_j",
        "energy_method",
        "power_w_mean",
        "power_w_max",
        "sm_clock_mhz_median",
        "sm_clock_mhz_min",
        "sm_clock_mhz_max",
        "mem_clock_mhz_median",
        "temperature_c_max",
        "throttle_reasons",
        "idle_fraction",
    ):
        assert s[key] is None, key
    assert summarize([])["samples"] == 0
    assert summarize([])["duration_s"] is None


# ---------------------------------------------------------------- clocks, heat, throttling


def test_clocks_and_temperature():
    samples = [
        sample(0.0, sm=1980, mem=2619, temp=40),
        sample(0.1, sm=1410, mem=2619, temp=55),
        sample(0.2, sm=1755, mem=1593, temp=61),
        sample(0.3, sm=None, mem=None, temp=None),
    ]
    s = summarize(samples)
    assert s["sm_clock_mhz_median"] == 1755
    assert s["sm_clock_mhz_min"] == 1410
    assert s["sm_clock_mhz_max"] == 1980
    assert s["mem_clock_mhz_median"] == 2619
    assert s["temperature_c_max"] == 61


def test_decode_throttle_reasons():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1) == ["gpu_idle"]
    assert decode_throttle_reasons(0x4 | 0x20) == ["sw_power_cap", "sw_thermal_slowdown"]
    assert decode_throttle_reasons(0x1FF) == sorted(
        [
            "gpu_idle",
            "applications_clocks_setting",
            "sw_power_cap",
            "hw_slowdown",
            "sync_boost",
            "sw_thermal_slowdown",
            "hw_thermal_slowdown",
            "hw_power_brake_slowdown",
            "display_clock_setting",
        ]
    )
    assert decode_throttle_reasons(0x8 | 0x10000) == ["hw_slowdown", "unknown_0x10000"]


def test_throttle_bits_match_installed_pynvml_under_both_spellings():
    pynvml = pytest.importorskip("pynvml")
    camel = {
        "gpu_idle": "GpuIdle",
        "applications_clocks_setting": "ApplicationsClocksSetting",
        "sw_power_cap": "SwPowerCap",
        "hw_slowdown": "HwSlowdown",
        "sync_boost": "SyncBoost",
        "sw_thermal_slowdown": "SwThermalSlowdown",
        "hw_thermal_slowdown": "HwThermalSlowdown",
        "hw_power_brake_slowdown": "HwPowerBrakeSlowdown",
        "display_clock_setting": "DisplayClockSetting",
    }
    checked = 0
    for bit, name in telemetry.THROTTLE_REASON_BITS.items():
        for prefix in ("nvmlClocksEventReason", "nvmlClocksThrottleReason"):
            value = getattr(pynvml, prefix + camel[name], None)
            if value is not None:
                assert value == bit, (prefix, name)
                checked += 1
    assert checked >= len(camel)


def test_gpu_idle_excluded_from_reasons_but_counted_in_idle_fraction():
    masks = [0x1, 0x0, 0x1 | 0x4, 0x0, None]
    s = summarize([sample(i * 0.1, mask=m) for i, m in enumerate(masks)])
    assert s["throttle_reasons"] == ["sw_power_cap"]
    assert s["idle_fraction"] == pytest.approx(2 / 4)  # over samples whose mask was read


def test_only_idle_gives_empty_reasons():
    s = summarize([sample(0.0, mask=0x1), sample(0.1, mask=0x1)])
    assert s["throttle_reasons"] == []
    assert s["idle_fraction"] == 1.0


def test_summary_is_json_serialisable():
    s = summarize([sample(0.0, 300.0, 1000, 1980, 2619, 50, 0x5), sample(1.0, 310.0, 1300, 1965, 2619, 52, 0x0)])
    assert json.loads(json.dumps(s)) == s


# ---------------------------------------------------------------- Sampler


def test_sampler_with_scripted_source_summarises_every_reading():
    src = ScriptedSource([sample(0.0, 300.0, 1000), sample(2.0, 300.0, 6000)])
    with Sampler(src, interval_s=10.0) as sampler:  # interval longer than the region: sync samples only
        pass
    s = sampler.summary()
    assert s["samples"] == 2
    assert s["energy_j"] == pytest.approx(5.0)
    assert s["read_errors"] == 0


def test_failing_reads_are_counted_never_raised():
    script = [
        sample(0.0, 300.0),
        RuntimeError("NVML timeout"),
        sample(1.0, 300.0),
        RuntimeError("GPU is lost"),
    ]
    src = ScriptedSource(script)
    sampler = Sampler(src, interval_s=0.002)
    with sampler:
        deadline = time.monotonic() + 2.0
        while src.calls < 6 and time.monotonic() < deadline:
            time.sleep(0.002)
    assert src.calls >= 6, "sampler stopped after the first failure"
    s = sampler.summary()
    assert s["samples"] == 2  # the two good readings
    assert s["read_errors"] == src.calls - 2
    assert "GPU is lost" in sampler.last_error
    assert not sampler.running


def test_field_errors_inside_samples_are_counted():
    s = summarize([sample(0.0, 300.0, errors=1), sample(1.0, None, errors=2)], read_errors=3)
    assert s["read_errors"] == 6


def test_sampler_without_source_is_a_no_op():
    sampler = Sampler(None)
    with sampler as entered:
        assert entered is sampler
        assert not sampler.running
    assert sampler.summary() is None


def test_sampler_does_not_swallow_the_benchmarks_exception():
    src = ScriptedSource([sample(0.0, 1.0)])
    with pytest.raises(ZeroDivisionError):
        with Sampler(src, interval_s=0.005) as sampler:
            1 / 0
    assert not sampler.running
    assert sampler.summary()["samples"] >= 2


def test_background_thread_samples_and_stops():
    src = CountingSource()
    with Sampler(src, interval_s=0.005) as sampler:
        assert sampler.running
        time.sleep(0.1)
    assert not sampler.running
    assert sampler._thread is not None and not sampler._thread.is_alive()
    s = sampler.summary()
    # ~20 expected; 5 leaves room for a loaded CI machine but not for a dead thread.
    assert s["samples"] >= 5
    assert len(src.threads) == 2  # the caller (first/last sample) and the sampler thread
    assert s["duration_s"] >= 0.09
    calls_at_exit = src.calls
    time.sleep(0.03)
    assert src.calls == calls_at_exit, "thread kept sampling after exit"


def test_sampler_rejects_non_positive_interval():
    with pytest.raises(ValueError):
        Sampler(ScriptedSource([sample(0.0)]), interval_s=0)


# ---------------------------------------------------------------- NvmlSource on a fake pynvml


class FakeNVMLError(Exception):
    def __init__(self, value):
        super().__init__(f"nvml error {value}")
        self.value = value


def fake_nvml(**overrides):
    NOT_SUPPORTED, FUNCTION_NOT_FOUND, TIMEOUT = 3, 13, 10

    def raises(code):
        def fn(*args):
            raise FakeNVMLError(code)

        return fn

    calls = {"energy": 0}

    def energy(handle):
        calls["energy"] += 1
        raise FakeNVMLError(NOT_SUPPORTED)

    mod = types.SimpleNamespace(
        NVMLError=FakeNVMLError,
        NVML_ERROR_NOT_SUPPORTED=NOT_SUPPORTED,
        NVML_ERROR_FUNCTION_NOT_FOUND=FUNCTION_NOT_FOUND,
        NVML_ERROR_TIMEOUT=TIMEOUT,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetName=lambda h: b"Fake GPU",
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=lambda h: 312_500,  # mW
        nvmlDeviceGetClockInfo=lambda h, kind: {1: 1980, 2: 2619}[kind],
        # A driver older than the bindings: the new names exist in Python but not in the library.
        nvmlDeviceGetTemperatureV=raises(FUNCTION_NOT_FOUND),
        nvmlDeviceGetTemperature=lambda h, sensor: 47,
        nvmlDeviceGetCurrentClocksEventReasons=raises(FUNCTION_NOT_FOUND),
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x5,
        calls=calls,
        raises=raises,
    )
    for key, value in overrides.items():
        setattr(mod, key, value)
    return mod


def test_nvml_source_reads_through_fallbacks_and_gives_up_on_unsupported():
    nvml = fake_nvml()
    src = NvmlSource(object(), nvml)
    assert src.name == "nvml:Fake GPU"
    first, second = src.read(), src.read()
    for s in (first, second):
        assert s.power_w == pytest.approx(312.5)
        assert s.energy_mj is None
        assert (s.sm_clock_mhz, s.mem_clock_mhz, s.temperature_c) == (1980, 2619, 47)
        assert s.throttle_mask == 0x5
        assert s.errors == 0  # "not supported" is a fact about the GPU, not a read error
    assert nvml.calls["energy"] == 1, "asked again for an unsupported counter"


def test_nvml_source_without_newer_functions_in_old_bindings():
    nvml = fake_nvml()
    del nvml.nvmlDeviceGetCurrentClocksEventReasons  # pynvml 12.535 has only the throttle name
    del nvml.nvmlDeviceGetTemperatureV
    s = NvmlSource(object(), nvml).read()
    assert (s.temperature_c, s.throttle_mask) == (47, 0x5)


def test_nvml_source_counts_transient_field_errors():
    nvml = fake_nvml()
    nvml.nvmlDeviceGetPowerUsage = nvml.raises(nvml.NVML_ERROR_TIMEOUT)
    src = NvmlSource(object(), nvml)
    s1, s2 = src.read(), src.read()
    assert s1.power_w is None and s1.errors == 1
    assert s2.errors == 1, "a transient error must not disable the field"
    assert s1.sm_clock_mhz == 1980
    assert summarize([s1, s2])["read_errors"] == 2


# ---------------------------------------------------------------- device lookup


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("GPU-6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab", "GPU-6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab"),
        ("6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab", "GPU-6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab"),
        ("6B9B0B4A1F1E2A3B4C5D0123456789AB", "GPU-6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab"),
        ("MIG-11111111-2222-3333-4444-555555555555", "MIG-11111111-2222-3333-4444-555555555555"),
        ("not a uuid", None),
    ],
)
def test_nvml_uuid_normalises_torch_forms(raw, expected):
    assert nvml_uuid(raw) == expected


def test_nvml_uuid_from_raw_bytes():
    class CUuuid:  # a torch build whose str() is not the UUID
        bytes = bytes.fromhex("6b9b0b4a1f1e2a3b4c5d0123456789ab")

        def __str__(self):
            return "<torch._C._CUuuid object>"

    assert nvml_uuid(CUuuid()) == "GPU-6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab"


def test_open_source_maps_through_cuda_visible_devices(monkeypatch):
    found = {}
    nvml = fake_nvml(
        nvmlDeviceGetHandleByUUID=lambda u: found.setdefault("uuid", u),
        nvmlDeviceGetHandleByIndex=lambda i: found.setdefault("index", i),
    )
    monkeypatch.setattr(telemetry, "_ensure_nvml", lambda: nvml)
    monkeypatch.setattr(telemetry, "_torch_uuid", lambda i: None)  # e.g. an older torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert open_source(1) is not None
    assert found == {"index": 5}

    found.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa0000-0000-0000-0000-000000000000,GPU-bbbb")
    assert open_source(0) is not None
    assert found == {"uuid": "GPU-aaaa0000-0000-0000-0000-000000000000"}


def test_open_source_prefers_torch_uuid_then_falls_back_to_index(monkeypatch):
    tried = []

    def by_uuid(u):
        tried.append(("uuid", u))
        raise FakeNVMLError(6)  # not found

    def by_index(i):
        tried.append(("index", i))
        return "handle"

    nvml = fake_nvml(nvmlDeviceGetHandleByUUID=by_uuid, nvmlDeviceGetHandleByIndex=by_index)
    monkeypatch.setattr(telemetry, "_ensure_nvml", lambda: nvml)
    monkeypatch.setattr(telemetry, "_torch_uuid", lambda i: "GPU-6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    src = open_source(2)
    assert src is not None and src.handle == "handle"
    assert tried == [("uuid", "GPU-6b9b0b4a-1f1e-2a3b-4c5d-0123456789ab"), ("index", 2)]


def test_open_source_none_when_no_way_finds_the_device(monkeypatch):
    def not_found(*args):
        raise FakeNVMLError(6)

    nvml = fake_nvml(nvmlDeviceGetHandleByUUID=not_found, nvmlDeviceGetHandleByIndex=not_found)
    monkeypatch.setattr(telemetry, "_ensure_nvml", lambda: nvml)
    monkeypatch.setattr(telemetry, "_torch_uuid", lambda i: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert open_source(7) is None
    assert "index 7" in telemetry.device_unavailable_reason(7)


def test_failed_nvml_init_is_recorded_once(monkeypatch):
    inits = []

    def failing_init():
        inits.append(1)
        raise FakeNVMLError(12)

    monkeypatch.setitem(__import__("sys").modules, "pynvml", types.SimpleNamespace(nvmlInit=failing_init))
    monkeypatch.setattr(telemetry, "_nvml_tried", False)
    monkeypatch.setattr(telemetry, "_nvml", None)
    monkeypatch.setattr(telemetry, "_nvml_reason", None)
    assert open_source(0) is None
    assert open_source(0) is None
    assert "nvmlInit failed" in nvml_unavailable_reason()
    assert len(inits) == 1


# ---------------------------------------------------------------- the real machine


def test_open_source_none_is_cpu():
    assert open_source(None) is None


def test_open_source_without_driver_is_none():
    if nvml_unavailable_reason() is None:
        pytest.skip("NVML works on this machine")
    assert open_source(0) is None
    assert nvml_unavailable_reason()


@pytest.mark.gpu
def test_real_gpu_sampling():
    if nvml_unavailable_reason() is not None:
        pytest.skip(f"no NVML: {nvml_unavailable_reason()}")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    src = open_source(0)
    assert src is not None, telemetry.device_unavailable_reason(0)
    with Sampler(src, interval_s=0.01) as sampler:
        time.sleep(0.2)
    s = sampler.summary()
    assert s["samples"] >= 5
    assert s["read_errors"] == 0
    # A sandboxed driver may report none of these: a positive number or None, never a comparison
    # of None with a number.
    assert s["sm_clock_mhz_median"] is None or s["sm_clock_mhz_median"] > 0
    assert s["energy_j"] is None or s["energy_j"] >= 0
    json.dumps(s)
