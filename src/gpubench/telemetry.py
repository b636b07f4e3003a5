"""What the GPU did while a benchmark was being timed: energy, power, clocks, heat, throttling.

A throughput number alone cannot say whether the GPU ran at its rated clocks or
was held back by a power cap or by heat, and cost per run needs energy. So the
benchmark timer wraps every measured region in a :class:`Sampler`, which reads
NVML on a background thread and reduces the readings to one summary dict.

Energy comes from NVML's total-energy counter (the difference between the
first and the last reading) where the GPU has one (Volta and newer). The power
reading is averaged by the driver over a window that can be as long as a short
measured region, so power x time smears exactly where precision matters; it is
only the fallback (trapezoid rule over the samples) when the counter is missing,
has gone backwards (driver reload), or did not tick during the region.

Without NVML (no driver, a CPU run, pynvml not installed) everything here is a
no-op: :func:`open_source` gives ``None``, the sampler samples nothing, and the
summary is ``None`` (``null`` in the result record). A benchmark must never fail
because of telemetry, so NVML errors during sampling are counted, not raised.

pynvml spans 12.535 to 13.x across the machines this runs on and NVIDIA renamed
things in between ("clocks throttle reasons" became "clocks event reasons", the
plain temperature getter is deprecated), so every NVML function is looked up by
name with fallbacks instead of being imported.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

__all__ = [
    "Sample",
    "TelemetrySource",
    "NvmlSource",
    "Sampler",
    "open_source",
    "nvml_unavailable_reason",
    "device_unavailable_reason",
    "decode_throttle_reasons",
    "summarize",
    "nvml_uuid",
]


@dataclass
class Sample:
    t_s: float  # time.perf_counter()
    power_w: float | None
    energy_mj: int | None  # mJ since driver load; None if unsupported
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    temperature_c: int | None
    throttle_mask: int | None
    # Fields that failed transiently in this reading (they are None above):
    # a partial sample is still worth keeping, but the failures must be counted.
    errors: int = 0


class TelemetrySource(Protocol):
    name: str

    def read(self) -> Sample: ...


# --------------------------------------------------------------------------
# Throttle ("clocks event") reasons
# --------------------------------------------------------------------------

# The bit values come from nvml.h and are the same under both pynvml spellings
# (nvmlClocksThrottleReason* and nvmlClocksEventReason*); hard-coding them keeps
# decoding available without pynvml, e.g. when reading old result files.
THROTTLE_REASON_BITS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
GPU_IDLE_BIT = 0x001


def decode_throttle_reasons(mask: int) -> list[str]:
    """Bit mask -> sorted snake_case names; bits nvml.h did not define -> ``unknown_0x...``."""
    names = []
    bit = 1
    # NVML's mask is a uint64; masking also keeps a negative int from looping forever.
    remaining = int(mask) & 0xFFFF_FFFF_FFFF_FFFF
    while remaining:
        if remaining & bit:
            names.append(THROTTLE_REASON_BITS.get(bit, f"unknown_{bit:#x}"))
            remaining &= ~bit
        bit <<= 1
    return sorted(names)


# --------------------------------------------------------------------------
# NVML, initialised once per process
# --------------------------------------------------------------------------

_nvml_lock = threading.Lock()
_nvml_tried = False
_nvml: Any = None  # the pynvml module once nvmlInit succeeded
_nvml_reason: str | None = None
_device_reasons: dict[int, str] = {}


def _ensure_nvml() -> Any:
    """The initialised pynvml module, or None; the first call decides for the whole process.

    nvmlShutdown is never called: NVML reference-counts init, other libraries in
    the process may use it too, and a sampler thread may still be finishing.
    """
    global _nvml_tried, _nvml, _nvml_reason
    with _nvml_lock:
        if _nvml_tried:
            return _nvml
        _nvml_tried = True
        try:
            import pynvml
        except ImportError as exc:
            _nvml_reason = f"pynvml not importable: {exc}"
            return None
        try:
            pynvml.nvmlInit()
        # Not only NVMLError: a broken libnvidia-ml can surface as OSError from ctypes.
        except Exception as exc:
            _nvml_reason = f"nvmlInit failed: {type(exc).__name__}: {exc}"
            return None
        _nvml = pynvml
        return _nvml


def nvml_unavailable_reason() -> str | None:
    """Why NVML cannot be used in this process, or None when it can (for the environment fingerprint)."""
    _ensure_nvml()
    return _nvml_reason


def device_unavailable_reason(cuda_index: int) -> str | None:
    """Why the last :func:`open_source` for this index gave None although NVML itself works."""
    return _device_reasons.get(cuda_index)


# --------------------------------------------------------------------------
# torch index -> NVML handle
# --------------------------------------------------------------------------


def nvml_uuid(raw: Any) -> str | None:
    """A torch device UUID (``_CUuuid``, str, with or without dashes/prefix) in NVML's ``GPU-8-4-4-4-12`` form."""
    text = str(raw).strip()
    if text.startswith(("GPU-", "MIG-")):
        return text
    digits = text.replace("-", "").lower()
    if not _is_hex32(digits):
        # Some torch builds print the object rather than the UUID; its raw bytes still tell.
        raw_bytes = getattr(raw, "bytes", None)
        try:
            digits = bytes(raw_bytes).hex() if raw_bytes is not None else ""
        except (TypeError, ValueError):
            return None
        if not _is_hex32(digits):
            return None
    return f"GPU-{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _is_hex32(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _torch_uuid(cuda_index: int) -> str | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        raw = getattr(torch.cuda.get_device_properties(cuda_index), "uuid", None)
    except Exception:
        return None
    return None if raw is None else nvml_uuid(raw)


def _visible_devices_entry(cuda_index: int) -> str | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    return entries[cuda_index] if 0 <= cuda_index < len(entries) else None


def _handle_candidates(nvml: Any, cuda_index: int) -> list[tuple[str, Callable[[], Any]]]:
    """Ways to find the device, most trustworthy first.

    The UUID is the only identity torch and NVML agree on: CUDA numbers devices
    fastest-first by default while NVML numbers them by PCI bus, and
    CUDA_VISIBLE_DEVICES renumbers them again, so the index-based ways are only
    right when those orders happen to coincide.
    """
    candidates: list[tuple[str, Callable[[], Any]]] = []
    uuid = _torch_uuid(cuda_index)
    if uuid:
        candidates.append((f"torch uuid {uuid}", lambda: nvml.nvmlDeviceGetHandleByUUID(uuid)))
    entry = _visible_devices_entry(cuda_index)
    if entry is not None:
        if entry.isdigit():
            candidates.append(
                (f"CUDA_VISIBLE_DEVICES index {entry}", lambda: nvml.nvmlDeviceGetHandleByIndex(int(entry)))
            )
        elif entry.startswith(("GPU-", "MIG-")):
            candidates.append(
                (f"CUDA_VISIBLE_DEVICES uuid {entry}", lambda: nvml.nvmlDeviceGetHandleByUUID(entry))
            )
    candidates.append((f"index {cuda_index}", lambda: nvml.nvmlDeviceGetHandleByIndex(cuda_index)))
    return candidates


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def open_source(cuda_index: int | None) -> TelemetrySource | None:
    """NVML source for torch's cuda device ``cuda_index``, or None when NVML is not usable.

    None also for ``cuda_index`` None (a CPU run). Never raises.
    """
    if cuda_index is None:
        return None
    nvml = _ensure_nvml()
    if nvml is None:
        return None
    failures = []
    for how, get_handle in _handle_candidates(nvml, cuda_index):
        try:
            handle = get_handle()
        except Exception as exc:
            failures.append(f"{how}: {exc}")
            continue
        _device_reasons.pop(cuda_index, None)
        return NvmlSource(handle, nvml, found_by=how)
    _device_reasons[cuda_index] = "; ".join(failures) or "no way to find the device"
    return None


# --------------------------------------------------------------------------
# NVML source
# --------------------------------------------------------------------------


class _Field:
    """One reading with fallbacks; gives up for good on what this GPU or driver cannot do.

    "Not supported" and "function not found" will not change during a run, so
    asking again every 10 ms would only count them as errors and waste time;
    anything else (a timeout, a lost GPU) is transient and is counted.
    """

    def __init__(self, nvml: Any, calls: Sequence[Callable[[], Any] | None]):
        self._nvml = nvml
        self._calls = [c for c in calls if c is not None]
        codes = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_NO_PERMISSION")
        self._permanent = {getattr(nvml, name) for name in codes if hasattr(nvml, name)}

    @property
    def supported(self) -> bool:
        return bool(self._calls)

    def read(self) -> tuple[Any, bool]:
        """(value or None, whether it failed transiently)."""
        while self._calls:
            try:
                return self._calls[0](), False
            except Exception as exc:
                if getattr(exc, "value", None) in self._permanent:
                    self._calls.pop(0)
                    continue
                return None, True
        return None, False


def _bind(nvml: Any, fn_name: str, *args: Any) -> Callable[[], Any] | None:
    fn = getattr(nvml, fn_name, None)
    return None if fn is None else (lambda: fn(*args))


class NvmlSource:
    """Reads one GPU through NVML. ``nvml`` is the (initialised) pynvml module."""

    def __init__(self, handle: Any, nvml: Any, found_by: str = ""):
        self.handle = handle
        self.found_by = found_by
        self.name = f"nvml:{self._device_name(nvml, handle)}"
        n = nvml
        temp_sensor = getattr(n, "NVML_TEMPERATURE_GPU", 0)
        self._energy = _Field(n, [_bind(n, "nvmlDeviceGetTotalEnergyConsumption", handle)])
        self._power = _Field(n, [_bind(n, "nvmlDeviceGetPowerUsage", handle)])
        self._sm_clock = _Field(n, [_bind(n, "nvmlDeviceGetClockInfo", handle, getattr(n, "NVML_CLOCK_SM", 1))])
        self._mem_clock = _Field(n, [_bind(n, "nvmlDeviceGetClockInfo", handle, getattr(n, "NVML_CLOCK_MEM", 2))])
        # The newer name first; the older one is deprecated and goes away with CUDA 14.
        self._temperature = _Field(
            n,
            [
                _bind(n, "nvmlDeviceGetTemperatureV", handle, temp_sensor),
                _bind(n, "nvmlDeviceGetTemperature", handle, temp_sensor),
            ],
        )
        self._throttle = _Field(
            n,
            [
                _bind(n, "nvmlDeviceGetCurrentClocksEventReasons", handle),
                _bind(n, "nvmlDeviceGetCurrentClocksThrottleReasons", handle),
            ],
        )

    @staticmethod
    def _device_name(nvml: Any, handle: Any) -> str:
        try:
            return _text(nvml.nvmlDeviceGetName(handle))
        except Exception:
            return "unknown"

    def read(self) -> Sample:
        # The energy counter is read first and the timestamp taken right before it,
        # so the first-to-last counter difference and the duration cover the same span.
        t_s = time.perf_counter()
        energy, e_err = self._energy.read()
        power_mw, p_err = self._power.read()
        sm, sm_err = self._sm_clock.read()
        mem, mem_err = self._mem_clock.read()
        temp, t_err = self._temperature.read()
        mask, m_err = self._throttle.read()
        return Sample(
            t_s=t_s,
            power_w=None if power_mw is None else power_mw / 1000.0,
            energy_mj=None if energy is None else int(energy),
            sm_clock_mhz=None if sm is None else int(sm),
            mem_clock_mhz=None if mem is None else int(mem),
            temperature_c=None if temp is None else int(temp),
            throttle_mask=None if mask is None else int(mask),
            errors=sum((e_err, p_err, sm_err, mem_err, t_err, m_err)),
        )


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------


def _values(samples: Sequence[Sample], field: str) -> list:
    return [getattr(s, field) for s in samples if getattr(s, field) is not None]


def _power_points(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    return [(s.t_s, s.power_w) for s in samples if s.power_w is not None]


def _trapezoid_j(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(points, points[1:]))


def _counter_energy_j(samples: Sequence[Sample], power_integral_j: float | None) -> float | None:
    """Energy from the counter, or None when it cannot be trusted for this region."""
    readings = [s.energy_mj for s in samples if s.energy_mj is not None]
    if len(readings) < 2:
        return None
    delta_mj = readings[-1] - readings[0]
    if delta_mj < 0:  # driver reloaded or counter reset mid-region
        return None
    if delta_mj == 0 and power_integral_j:
        # The counter updates in steps; a region shorter than one step reads 0 J
        # although power readings show the GPU drew power.
        return None
    return delta_mj / 1000.0


def _energy(samples: Sequence[Sample]) -> tuple[float | None, str | None]:
    integral = _trapezoid_j(_power_points(samples))
    counter = _counter_energy_j(samples, integral)
    if counter is not None:
        return counter, "counter"
    if integral is not None:
        return integral, "power_integral"
    return None, None


def _power_mean_w(samples: Sequence[Sample]) -> float | None:
    points = _power_points(samples)
    if not points:
        return None
    span = points[-1][0] - points[0][0]
    integral = _trapezoid_j(points)
    if integral is None or span <= 0:
        return statistics.fmean(p for _, p in points)
    return integral / span


def _median(values: list) -> float | int | None:
    return statistics.median(values) if values else None


def _throttle_summary(samples: Sequence[Sample]) -> tuple[list[str] | None, float | None]:
    masks = _values(samples, "throttle_mask")
    if not masks:
        return None, None
    # The GPU is briefly "idle" between kernel launches, so that bit is noise as a
    # reason; how often it was set is reported separately as idle_fraction.
    reasons = set()
    for mask in masks:
        reasons.update(decode_throttle_reasons(mask & ~GPU_IDLE_BIT))
    idle = sum(1 for m in masks if m & GPU_IDLE_BIT)
    return sorted(reasons), idle / len(masks)


def summarize(samples: Sequence[Sample], read_errors: int = 0) -> dict:
    """Reduce samples to the JSON-serialisable summary stored in the result record.

    ``read_errors`` counts readings that failed as a whole; fields that failed
    inside a sample (``Sample.errors``) are added to it.
    """
    samples = sorted(samples, key=lambda s: s.t_s)
    energy_j, energy_method = _energy(samples)
    power = _values(samples, "power_w")
    sm = _values(samples, "sm_clock_mhz")
    mem = _values(samples, "mem_clock_mhz")
    temps = _values(samples, "temperature_c")
    reasons, idle_fraction = _throttle_summary(samples)
    return {
        "samples": len(samples),
        "duration_s": samples[-1].t_s - samples[0].t_s if samples else None,
        "energy_j": energy_j,
        "energy_method": energy_method,
        "power_w_mean": _power_mean_w(samples),
        "power_w_max": max(power) if power else None,
        "sm_clock_mhz_median": _median(sm),
        "sm_clock_mhz_min": min(sm) if sm else None,
        "sm_clock_mhz_max": max(sm) if sm else None,
        "mem_clock_mhz_median": _median(mem),
        "temperature_c_max": max(temps) if temps else None,
        "throttle_reasons": reasons,
        "idle_fraction": idle_fraction,
        "read_errors": int(read_errors) + sum(s.errors for s in samples),
    }


# --------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------


class Sampler:
    """Context manager that samples ``source`` every ``interval_s`` on a daemon thread.

    The first and the last sample are taken synchronously on entry and exit, so
    the readings bracket the measured region whatever the thread's timing. With
    ``source`` None it does nothing and :meth:`summary` is None.
    """

    # A hung NVML call must not hang the benchmark; the daemon thread is then abandoned.
    JOIN_TIMEOUT_S = 2.0

    def __init__(self, source: TelemetrySource | None, interval_s: float = 0.01):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.source = source
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.read_errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._accepting = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "Sampler":
        if self.source is None:
            return self
        self.samples, self.read_errors, self.last_error = [], 0, None
        self._stop.clear()
        self._accepting = True
        self._read_once()
        self._thread = threading.Thread(target=self._run, name="gpubench-telemetry", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.source is None:
            return False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.JOIN_TIMEOUT_S)
        self._read_once()
        with self._lock:
            # A thread that outlived the join must not change the samples afterwards.
            self._accepting = False
        return False  # a benchmark's own exception is not ours to swallow

    def _run(self) -> None:
        # Event.wait rather than sleep, so __exit__ does not wait out a whole interval.
        while not self._stop.wait(self.interval_s):
            self._read_once()

    def _read_once(self) -> None:
        try:
            sample = self.source.read()
        except Exception as exc:  # telemetry must never fail a benchmark
            with self._lock:
                if self._accepting:
                    self.read_errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            if self._accepting:
                self.samples.append(sample)

    def summary(self) -> dict | None:
        if self.source is None:
            return None
        with self._lock:
            samples, errors = list(self.samples), self.read_errors
        return summarize(samples, errors)
