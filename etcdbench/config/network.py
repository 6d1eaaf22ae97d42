"""The network between the clients and etcd (--rtt, --jitter, --bandwidth) as RunConfig stores it:
delays in microseconds, bandwidth in Mbit/s, read from the units a user writes."""

from __future__ import annotations

import re

from etcdbench.config.run import field_error, parse_duration_us

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
        raise field_error(
            "bandwidth_mbit", f"{text!r} is not a rate like 1gbit, 100mbit or 512kbit (0: unlimited)"
        )
    return float(m.group(1)) * _MBIT[m.group(2).lower()]
