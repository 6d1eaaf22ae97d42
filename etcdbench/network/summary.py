"""One line of the console summary about a run's emulated network (the `network` block)."""

from __future__ import annotations

from etcdbench.results.model import Network


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def network_line(net: Network | None) -> str | None:
    """'rtt asked 2 ms ± 0.2 ms · measured p50 2.05 ms, p99 2.6 ms, max 3.1 ms · proxy 0.12 cores,
    lag p99 0.3 ms'; None for a run without a delay proxy."""
    if net is None:
        return None
    asked = f"rtt asked {_ms(net.rtt_ms_asked)}"
    if net.jitter_ms:
        asked += f" ± {_ms(net.jitter_ms)}"
    if net.bandwidth_mbit:
        asked += f" at {net.bandwidth_mbit:g} Mbit/s"
    m = net.measured_rtt_ms
    cores = net.proxy_cpu_cores
    proxy = f"proxy {'-' if cores is None else f'{cores:.2f}'} cores, lag p99 {_ms(net.proxy_lag_p99_ms)}"
    if net.proxy_fell_behind:
        proxy += " (fell behind)"
    return f"{asked} · measured p50 {_ms(m.p50)}, p99 {_ms(m.p99)}, max {_ms(m.max)} · {proxy}"
