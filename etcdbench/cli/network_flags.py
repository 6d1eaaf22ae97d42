"""The network flags (--rtt, --jitter, --bandwidth): parsed here, stored as RunConfig fields."""

from __future__ import annotations

import argparse
import re
from typing import Any

from etcdbench.config.run import parse_duration_us
from etcdbench.errors import UsageError

_ZERO = re.compile(r"^\s*0+(?:\.0*)?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(kbit|mbit|gbit)(?:/s|ps)?\s*$", re.IGNORECASE)
_MBIT = {"kbit": 1e-3, "mbit": 1.0, "gbit": 1e3}


def parse_network_duration(flag: str, text: str) -> int:
    """'2ms', '500us', '0' -> microseconds (0 alone needs no unit: it means no delay)."""
    if _ZERO.match(text):
        return 0
    return parse_duration_us(flag, text)


def parse_bandwidth(text: str) -> float:
    """'1gbit', '100mbit', '512kbit' (bits per second, as tc writes them), or '0' -> Mbit/s."""
    if _ZERO.match(text):
        return 0.0
    m = _RATE.match(text)
    if not m:
        raise UsageError(f"--bandwidth: {text!r} is not a rate like 1gbit, 100mbit or 512kbit (0: unlimited)")
    return float(m.group(1)) * _MBIT[m.group(2).lower()]


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
    """The RunConfig fields of the flags that were given (all of them, with their defaults)."""
    values: dict[str, Any] = {}
    if args.rtt is not None:
        values["rtt_us"] = parse_network_duration("--rtt", args.rtt)
    if args.jitter is not None:
        values["jitter_us"] = parse_network_duration("--jitter", args.jitter)
    if args.bandwidth is not None:
        values["bandwidth_mbit"] = parse_bandwidth(args.bandwidth)
    return values
