"""A run's parameters as one frozen value, validated once, so every process and the results agree."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from etcdbench.errors import UsageError

BACKENDS = ("v2", "v3")
ENCODINGS = ("json", "protobuf")
KINDS = ("pod", "node", "event")
V2_WATCH_MODES = ("poll", "stream")
DEFAULT_PREFIX = "/registry/"


@dataclass(frozen=True)
class RunConfig:
    backend: str = "v3"
    encoding: str = "protobuf"
    kind: str = "pod"
    rate: float = 500.0  # total intended writes/s over all writers
    writers: int = 1
    objects: int = 1000  # distinct objects, updated round-robin
    duration_s: float = 10.0  # the measured window
    warmup_s: float = 2.0  # writes before the window: same load, not measured
    slo_p99_us: int = 1_000_000  # Kubernetes' API SLO: 99% of calls within 1 s
    v2_watch: str = "poll"
    prefix: str = DEFAULT_PREFIX
    max_inflight: int = 64  # per writer process; a full window shows up as schedule slip
    drain_s: float = 5.0  # after the last write, how long the watcher may go without an event
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice("--backend", self.backend, BACKENDS)
        _choice("--encoding", self.encoding, ENCODINGS)
        _choice("--kind", self.kind, KINDS)
        _choice("--v2-watch", self.v2_watch, V2_WATCH_MODES)
        _positive("--rate", self.rate)
        _positive("--writers", self.writers)
        _positive("--objects", self.objects)
        _positive("--duration", self.duration_s)
        _positive("--slo-p99", self.slo_p99_us)
        _positive("--max-inflight", self.max_inflight)
        _positive("--drain", self.drain_s)
        if self.warmup_s < 0:
            raise UsageError(f"--warmup: must be >= 0, got {self.warmup_s:g}")
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise UsageError(f"--prefix: must start and end with '/', got {self.prefix!r}")
        if self.writers > self.total_writes:
            raise UsageError(
                f"--writers: {self.writers} writers for {self.total_writes} writes leaves some idle; "
                "lower --writers or raise --rate/--duration"
            )

    @property
    def total_writes(self) -> int:
        return round(self.rate * (self.warmup_s + self.duration_s))

    @property
    def label(self) -> str:
        mode = f"({self.v2_watch})" if self.backend == "v2" else ""
        return f"{self.backend}{mode}+{self.encoding} {self.kind} @{self.rate:g}/s"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{flag}: unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive(flag: str, value: float) -> None:
    if not value > 0:  # also rejects NaN
        raise UsageError(f"{flag}: must be > 0, got {value:g}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)\s*$")
_UNIT_US = {"us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000}


def parse_duration_us(flag: str, text: str) -> int:
    """'1s', '250ms', '500us', '2m' -> microseconds. A bare number is refused: its unit would be a guess."""
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"{flag}: {text!r} is not a duration with a unit (e.g. 1s, 250ms, 500us)")
    return round(float(m.group(1)) * _UNIT_US[m.group(2)])
