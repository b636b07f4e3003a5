"""Benchmarks and suites, registered by name.

A *benchmark* is a definition, never a timer: given parameters and a device it
builds a ``Workload`` (the callable to time, its FLOPs and bytes, a correctness
check against a float64 reference, and whether to flush L2 or use a CUDA graph),
and afterwards turns the runner's measurement into derived metrics.

A *suite* is data: a list of ``Case`` (benchmark + parameters) for GPUs and a
list for CPUs, plus optional ``Search`` entries for work whose cases depend on
earlier answers (the max-achievable-matmul search).
"""

from __future__ import annotations

import contextlib
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping

from gpubench.device import DeviceInfo
from gpubench.errors import UnknownNameError
from gpubench.results import case_id


@dataclass
class Workload:
    fn: Callable[[], object]                         # one iteration of the timed work
    flops: float | None = None                       # per iteration
    bytes_moved: float | None = None                 # fewest bytes an iteration must move
    check: Callable[[], dict] | None = None          # raises CheckFailed; returns the check block
    flush_l2: bool = False
    cuda_graph: bool = False
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    aux: dict[str, Callable[[], object]] = field(default_factory=dict)   # timed separately
    info: dict[str, Any] = field(default_factory=dict)                   # facts for the record
    timer: Mapping[str, Any] | None = None           # TimerConfig fields this work needs (long steps)


class Benchmark(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    # The parameters a person may set with `run --benchmark NAME -p KEY=VALUE`; None: the
    # benchmark's normalize refuses unknown ones itself. A key outside the set would be
    # carried, ignored, and the run would look like a measurement of it.
    user_params: ClassVar[frozenset[str] | None] = None

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and fill in defaults; raise GpubenchError naming a bad parameter."""
        return dict(params)

    def memory_bytes(self, params: Mapping[str, Any]) -> int | None:
        """Device memory the case needs, to refuse it before allocating; None if unknown."""
        return None

    @abstractmethod
    def prepare(self, params: Mapping[str, Any], device: DeviceInfo) -> Workload:
        """Allocate inputs on fresh random data; raise SkipCase if the case means nothing here."""

    @abstractmethod
    def metrics(self, params: Mapping[str, Any], work: Workload, seconds: float,
                device: DeviceInfo, telemetry: dict | None,
                aux_s: Mapping[str, float]) -> dict[str, Any]:
        """Derived figures for one iteration taking ``seconds`` (the median);
        ``aux_s`` holds the median of each of the workload's ``aux`` callables."""

    def label(self, params: Mapping[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in params.items())


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(cls: type[Benchmark]) -> type[Benchmark]:
    BENCHMARKS[cls.name] = cls()
    return cls


def get_benchmark(name: str) -> Benchmark:
    _load_builtin()
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UnknownNameError("benchmark", name, BENCHMARKS) from None


@dataclass(frozen=True)
class Case:
    benchmark: str
    params: Mapping[str, Any]

    @property
    def id(self) -> str:
        return case_id(self.benchmark, dict(self.params))


@dataclass(frozen=True)
class Search:
    """A search the runner drives: ``strategy`` names an entry of ``SEARCHES``."""

    strategy: str
    params: Mapping[str, Any]

    @property
    def id(self) -> str:
        return case_id(self.strategy, dict(self.params))


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    gpu: tuple[Case | Search, ...]
    cpu: tuple[Case | Search, ...]
    # What the suite runs with two or more ranks (--nproc N, torchrun), when it differs:
    # e.g. one model trained alone, with DDP and with FSDP, to measure scaling.
    multi_gpu: tuple[Case | Search, ...] = ()
    multi_cpu: tuple[Case | Search, ...] = ()

    def items(self, device: DeviceInfo, dtypes: Iterable[str] | None = None,
              world_size: int = 1) -> list[Case | Search]:
        multi = self.multi_gpu if device.is_cuda else self.multi_cpu
        if world_size > 1 and multi:
            chosen = list(multi)
        else:
            chosen = list(self.gpu if device.is_cuda else self.cpu)
        if dtypes is not None:
            wanted = set(dtypes)
            chosen = [c for c in chosen if c.params.get("dtype") in wanted or "dtype" not in c.params]
        return chosen


def sweep(benchmark: str, fixed: Mapping[str, Any] | None = None, **axes: Iterable) -> list[Case]:
    """The cartesian product of ``axes`` as cases, in the spirit of triton.testing.Benchmark.

    An axis whose values are dicts (e.g. ``shape=[{"m": 1, "n": 2, "k": 3}]``) is merged
    into the parameters rather than stored under its own name.
    """
    names = list(axes)
    cases = []
    for values in itertools.product(*(list(axes[n]) for n in names)):
        params: dict[str, Any] = dict(fixed or {})
        for name, value in zip(names, values):
            if isinstance(value, Mapping):
                params.update(value)
            else:
                params[name] = value
        cases.append(Case(benchmark, params))
    return cases


SUITES: dict[str, Suite] = {}
SEARCHES: dict[str, Callable] = {}


def register_suite(suite: Suite) -> Suite:
    SUITES[suite.name] = suite
    return suite


def get_suite(name: str) -> Suite:
    _load_builtin()
    try:
        return SUITES[name]
    except KeyError:
        raise UnknownNameError("suite", name, SUITES) from None


def _load_builtin() -> None:
    # Importing the modules runs their register_* calls.
    import gpubench.benches  # noqa: F401
    import gpubench.suites  # noqa: F401
