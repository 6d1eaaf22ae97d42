"""The results file as types: every key the writers produce, at the current `schema_version`.

`ResultsFile.from_dict(doc)` reads a document `io.load` returned (upgraded to the current version) and
`to_dict()` gives it back exactly; `results/schema.py` turns these classes into docs/results.schema.json.
Each field's meaning is in docs/results-format.md, in the same order. Keys that older version-3
writers may leave out are OPTIONAL; objects whose keys vary (per process group, per etcd metric)
are `dict[str, T]`. `config` and `scenario` are the RunConfig and the scenario file as dictionaries:
their own modules (config/run.py, config/file.py) define them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from etcdbench.results.record import ABSENT, OPTIONAL, Absent, Record

FORMAT_NAME: Final = "etcdbench-results"
SCHEMA_VERSION: Final = 3  # its history: docs/results-format.md, and io.UPGRADERS reads older versions

Point = list[float]  # [seconds since t0, value]


# --- shared blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Summary(Record):
    """An HDR summary: percentiles, max and mean (null when nothing was recorded) and the histogram."""

    p50: int | None
    p90: int | None
    p99: int | None
    p999: int | None
    max: int | None
    mean: float | None
    count: int
    out_of_range: int
    hdr: str | None = field(
        default=None, metadata=OPTIONAL
    )  # absent where only the figures are kept (object_sizes)


@dataclass(frozen=True, kw_only=True)
class Relist(Record):
    """One lost-history incident of a watch."""

    reason: str  # "v2-401" or "v3-compacted"
    revision: int
    keys: int
    after_revision: int | None = field(default=None, metadata=OPTIONAL)
    duration_s: float | None = field(default=None, metadata=OPTIONAL)
    bytes: int | None = field(default=None, metadata=OPTIONAL)
    watch: int | None = field(
        default=None, metadata=OPTIONAL
    )  # in runs[].relists, not in runs[].watches[].relists
    shard: int | None = field(default=None, metadata=OPTIONAL)  # merged runs


@dataclass(frozen=True, kw_only=True)
class WatchCounters(Record):
    """One watch's books (runs[].watches[].counters), and the part of the run's counters they sum to."""

    written: int
    received: int
    missed: int
    missed_relist: int
    missed_undelivered: int
    missed_expiries: int
    expiries_received: int
    expiries_pending: int
    duplicates: int
    out_of_order: int
    relists: int
    unacknowledged_seen: int
    decode_errors: int
    foreign_events: int
    # Absent in version-2 files that predate them, where they cannot be derived (see io._v2_to_v3).
    duplicates_retried: int | None = field(default=None, metadata=OPTIONAL)
    duplicates_redelivered: int | None = field(default=None, metadata=OPTIONAL)
    other_shard_events: int | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class Counters(WatchCounters):
    """The run's exact event accounting."""

    attempted: int
    writes: int
    errors: int
    unsent: int
    stream_reopens: int
    watch_reconnects: int
    write_retries: int
    expired_before_update: int | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class Operations(Record):
    create: int
    update: int
    delete: int


@dataclass(frozen=True, kw_only=True)
class Preload(Record):
    keys: int
    seconds: float
    db_size_bytes: int | None


@dataclass(frozen=True, kw_only=True)
class Latencies(Record):
    watch: Summary
    put: Summary
    schedule_slip: Summary


@dataclass(frozen=True, kw_only=True)
class WatchLatency(Record):
    watch: Summary


@dataclass(frozen=True, kw_only=True)
class Watch(Record):
    """One of several watches of a run."""

    watch: int
    stream: int
    counters: WatchCounters
    watch_events_per_s: float
    latency_us: WatchLatency
    relists: list[Relist]
    events_received: list[int]


@dataclass(frozen=True, kw_only=True)
class Timeseries(Record):
    """Per-second counts, and per-group series of CPU and RSS (each with its `interval_s`)."""

    interval_s: float
    writes_acked: list[int]
    events_received: list[int]
    cpu_cores: dict[str, float | list[Point]]  # "interval_s" and one series per process group
    rss_bytes: dict[str, float | list[Point]] | None = field(default=None, metadata=OPTIONAL)
    etcd: dict[str, list[Point]] | None = field(
        default=None, metadata=OPTIONAL
    )  # etcd's own view, per quantity
    cpu_cores_shards: list[dict[str, float | list[Point]]] | None = field(
        default=None, metadata=OPTIONAL
    )  # merged runs
    rss_bytes_shards: list[dict[str, float | list[Point]]] | None = field(
        default=None, metadata=OPTIONAL
    )  # merged runs


@dataclass(frozen=True, kw_only=True)
class Memory(Record):
    """RSS of one process group over the measured window."""

    start_bytes: int
    end_bytes: int
    max_bytes: int
    slope_bytes_per_min: float


@dataclass(frozen=True, kw_only=True)
class Fault(Record):
    fault: str
    started_s: float
    ended_s: float
    error: str | None = field(default=None, metadata=OPTIONAL)
    member: int | None = field(default=None, metadata=OPTIONAL)
    shard: int | None = field(default=None, metadata=OPTIONAL)  # merged runs


@dataclass(frozen=True, kw_only=True)
class EtcdServer(Record):
    """The etcd that served one run."""

    requested: str | None
    server_version: str | None
    member_versions: list[str | None]
    binary: str | None = field(default=None, metadata=OPTIONAL)  # embedded only
    flag_notes: list[str] | None = field(default=None, metadata=OPTIONAL)  # embedded only


@dataclass(frozen=True, kw_only=True)
class RttMs(Record):
    p50: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True, kw_only=True)
class Network(Record):
    """The emulated network of a run through the delay proxy."""

    rtt_ms_asked: float
    jitter_ms: float
    bandwidth_mbit: float | None
    measured_rtt_ms: RttMs
    rtt_probes: int
    proxy_cpu_cores: float | None
    proxy_lag_p99_ms: float | None
    proxy_lag_max_ms: float | None
    proxy_fell_behind: bool
    forwarded_mb: float
    proxy_cpu_ms_per_mb: float | None
    connections: int
    refused_connections: int
    proxy_scheduling: str | None = field(
        default=None, metadata=OPTIONAL
    )  # "realtime", "nice -10" or "normal"


@dataclass(frozen=True, kw_only=True)
class BackgroundStream(Record):
    """One stream of the background load: LISTs, GETs or Events."""

    rate: float
    done: int
    errors: int
    unsent: int
    bytes: int
    latency_us: Summary
    slip_us: Summary
    error_sample: str | None = field(default=None, metadata=OPTIONAL)
    keys: int | None = field(default=None, metadata=OPTIONAL)  # lists
    pages: int | None = field(default=None, metadata=OPTIONAL)  # lists
    page_limit: int | None = field(default=None, metadata=OPTIONAL)  # lists
    not_found: int | None = field(default=None, metadata=OPTIONAL)  # gets
    inflight_at_stop: int | None = field(default=None, metadata=OPTIONAL)  # events
    ttl_s: float | None = field(default=None, metadata=OPTIONAL)  # events
    prefix: str | None = field(default=None, metadata=OPTIONAL)  # lists, events


@dataclass(frozen=True, kw_only=True)
class BackgroundWatches(Record):
    count: int
    events_received: int
    bytes: int
    relists: int
    errors: list[str]


@dataclass(frozen=True, kw_only=True)
class Background(Record):
    """The apiserver's other traffic beside the measured writes."""

    lists: BackgroundStream
    gets: BackgroundStream
    events: BackgroundStream
    watches: BackgroundWatches
    stopped_after_s: float
    slip_us: Summary
    fell_behind: bool
    fell_behind_because: list[str]


@dataclass(frozen=True, kw_only=True)
class EtcdView(Record):
    """etcd's own view of a run, from its /metrics."""

    members: int
    scraped: int
    restarted: int
    errors: list[str]
    increase: dict[str, int]
    max: dict[str, int]
    last: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class Verdict(Record):
    pass_: bool = field(metadata={"key": "pass"})
    reasons: list[str]
    client_bound: bool
    client_bound_reasons: list[str]
    warnings: list[str]


@dataclass(frozen=True, kw_only=True)
class Run(Record):
    """One measured run."""

    label: str
    scenario: str | None
    backend: str
    encoding: str
    kind: str
    workload: str
    v2_watch: str | None
    watchers: int
    target_rate: float
    duration_s: float
    warmup_s: float
    config: dict[str, Any]  # RunConfig.to_dict()
    object_bytes: int
    object_sizes: dict[str, Summary] | None
    preload: Preload
    operations: Operations
    counters: Counters
    watch_events_per_s: float
    watch_events_per_s_total: float
    write_rate_achieved: float
    drain_s: float
    latency_us: Latencies
    relists: list[Relist]
    timeseries: Timeseries
    cpu: dict[str, float | None]  # per process group, "host", "watcher_max", "writer_max"
    error_samples: list[str]
    verdict: Verdict
    etcd_server: EtcdServer | None = field(default=None, metadata=OPTIONAL)
    memory: dict[str, Memory] | None = field(default=None, metadata=OPTIONAL)
    watches: list[Watch] | None = field(default=None, metadata=OPTIONAL)
    faults: list[Fault] | None = field(default=None, metadata=OPTIONAL)
    etcd: EtcdView | None = field(default=None, metadata=OPTIONAL)
    network: Network | None = field(default=None, metadata=OPTIONAL)
    background: Background | None = field(default=None, metadata=OPTIONAL)
    incomplete: str | None = field(default=None, metadata=OPTIONAL)
    missing: list[str] | None = field(default=None, metadata=OPTIONAL)
    # merged runs (etcdbench merge)
    shards: int | None = field(default=None, metadata=OPTIONAL)
    cpu_shards: list[dict[str, float | None]] | None = field(default=None, metadata=OPTIONAL)
    memory_shards: list[dict[str, int | Memory]] | None = field(default=None, metadata=OPTIONAL)


# --- the environment -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EtcdTls(Record):
    """How etcd used TLS: embedded, client_cert_auth/peer_tls/certificates; given endpoints, client_cert."""

    client_cert_auth: bool | None = field(default=None, metadata=OPTIONAL)
    peer_tls: bool | None = field(default=None, metadata=OPTIONAL)
    certificates: str | None = field(default=None, metadata=OPTIONAL)
    client_cert: bool | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class Member(Record):
    """One endpoint of several, as it described itself when the first run started."""

    url: str
    version: str | None
    member_id: str | None
    is_leader: bool | None
    args: list[str] | None = field(default=None, metadata=OPTIONAL)  # embedded cluster
    error: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class EtcdInfo(Record):
    """The etcd of the runs (environment.etcd), or one of several (environment.etcds[])."""

    embedded: bool
    endpoints: list[str]
    server_version: str | Absent | None = ABSENT
    binary: str | None = field(default=None, metadata=OPTIONAL)  # embedded only
    requested: str | Absent | None = ABSENT  # embedded only
    args: list[str] | None = field(default=None, metadata=OPTIONAL)  # embedded only
    flag_notes: list[str] | None = field(default=None, metadata=OPTIONAL)  # embedded only
    tls: EtcdTls | Absent | None = ABSENT
    members: list[Member] | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class MergeInfo(Record):
    files: list[str]
    shards: int


@dataclass(frozen=True, kw_only=True)
class Environment(Record):
    """Where the runs happened."""

    host: str
    platform: str
    cpu_model: str
    cpu_count: int | None
    memory_bytes: int
    python: str
    etcdbench_version: str
    etcdbench_git: str | None
    argv: list[str]
    json_decoder: str | None = field(default=None, metadata=OPTIONAL)
    etcd: EtcdInfo | None = field(default=None, metadata=OPTIONAL)
    etcds: list[EtcdInfo] | None = field(default=None, metadata=OPTIONAL)
    v3_client: str | None = field(default=None, metadata=OPTIONAL)
    tls: bool | None = field(default=None, metadata=OPTIONAL)
    # merged files (etcdbench merge): the merge, and each shard's own environment with its index
    merge: MergeInfo | None = field(default=None, metadata=OPTIONAL)
    shards: list[Environment] | None = field(default=None, metadata=OPTIONAL)
    shard: int | None = field(default=None, metadata=OPTIONAL)


# --- capacity --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CurvePoint(Record):
    """One step of the knee search: runs[run] at `rate`."""

    rate: float
    phase: str  # "rise", "fall", "bisect" or "repeat"
    run: int
    events_per_s: float
    p50_us: int | None
    p99_us: int | None
    missed: int
    pass_: bool = field(metadata={"key": "pass"})
    client_bound: bool


@dataclass(frozen=True, kw_only=True)
class Limiter(Record):
    rate: float
    by: str  # "etcd", "watcher", "writers", "watcher+writers" or "client"
    text: str
    reasons: list[str]
    client_bound_reasons: list[str]


@dataclass(frozen=True, kw_only=True)
class Capacity(Record):
    """What `etcdbench capacity` found: the knee and the curve of every step."""

    knee: float | None
    confirmed: bool
    interval: list[float | None]
    relative_width: float | None
    resolution: float
    budget_s: float
    elapsed_s: float
    stopped_by: str  # "resolution", "budget" or "floor"
    limited_by: Limiter | None
    notes: list[str]
    curve: list[CurvePoint]


# --- the file --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Tool(Record):
    name: str
    version: str


@dataclass(frozen=True, kw_only=True)
class ResultsFile(Record):
    """A whole results file."""

    format: Literal["etcdbench-results"]
    schema_version: Literal[3]  # SCHEMA_VERSION
    tool: Tool
    created: str
    complete: bool
    environment: Environment
    scenario: dict[str, Any] | None  # the normalised scenario file of `etcdbench run`
    runs: list[Run]
    capacity: Capacity | None = field(default=None, metadata=OPTIONAL)
