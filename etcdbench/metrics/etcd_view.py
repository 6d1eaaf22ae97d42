"""etcd's own view of a run: the Prometheus metrics every member serves at `/metrics`.

etcdbench counts what its writers had acknowledged and what its watchers received; etcd counts what it
applied and what it sent. Scraped before the first write, during the run and after the drain, the two
can be held side by side: etcd applying fewer puts than we count as written, or reporting slow
(unsynced) watchers while we say the watcher kept up, is a disagreement the summary flags — it is also
what an etcd operator looks at first.

Counters are turned into increases the way Prometheus' `increase()` does: a counter that went down
(the member restarted) starts again from zero, so a restart fault loses nothing that was counted.
Across the members of a cluster, what every member does (apply a put) is the largest member's figure,
what one member does for its clients (send watch events) is summed.
"""

from __future__ import annotations

import bisect
import itertools
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from etcdbench.backends.credentials import Credentials

SCRAPE_TIMEOUT_S = 2.0
# A v2 store write's `action` label: these put a value, the others remove one.
V2_PUT_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
V2_DELETE_ACTIONS = frozenset({"delete", "compareAndDelete"})


@dataclass(frozen=True)
class Quantity:
    """One figure read from the metrics: the sum of the samples of `sample` that `labels` accepts."""

    sample: str  # the sample's name as exposed, e.g. etcd_mvcc_put_total
    counter: bool  # True: reported as its increase over the run; False: a gauge, reported as max/last
    across_members: str  # "max": each member does it (applies a put); "sum": one member does it
    labels: Callable[[dict[str, str]], bool] | None = None


def _action(actions: frozenset[str]) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get("action") in actions


QUANTITIES: dict[str, Quantity] = {
    "mvcc_puts": Quantity("etcd_mvcc_put_total", True, "max"),  # v3 puts applied (Put and Txn)
    "mvcc_deletes": Quantity("etcd_mvcc_delete_total", True, "max"),  # v3 deletes, lease expiries too
    "v2_puts": Quantity("etcd_debugging_store_writes_total", True, "max", _action(V2_PUT_ACTIONS)),
    "v2_deletes": Quantity("etcd_debugging_store_writes_total", True, "max", _action(V2_DELETE_ACTIONS)),
    "v2_expires": Quantity("etcd_debugging_store_expires_total", True, "max"),
    "proposals_applied": Quantity("etcd_server_proposals_applied_total", True, "max"),
    "watch_events_sent": Quantity("etcd_debugging_mvcc_events_total", True, "sum"),  # v3, to all watchers
    "v2_watch_requests": Quantity("etcd_debugging_store_watch_requests_total", True, "sum"),
    "grpc_sent_bytes": Quantity("etcd_network_client_grpc_sent_bytes_total", True, "sum"),
    "grpc_received_bytes": Quantity("etcd_network_client_grpc_received_bytes_total", True, "sum"),
    "slow_watchers": Quantity("etcd_debugging_mvcc_slow_watcher_total", False, "sum"),  # unsynced
    "pending_events": Quantity("etcd_debugging_mvcc_pending_events_total", False, "sum"),
    "watchers": Quantity("etcd_debugging_mvcc_watcher_total", False, "sum"),
    "v2_watchers": Quantity("etcd_debugging_store_watchers", False, "sum"),
    "db_bytes": Quantity("etcd_mvcc_db_total_size_in_bytes", False, "max"),
}
COUNTERS = tuple(name for name, q in QUANTITIES.items() if q.counter)
_SAMPLES = frozenset(q.sample for q in QUANTITIES.values())


def parse_metrics(text: str) -> dict[str, float]:
    """Each quantity of QUANTITIES in one scrape (those the member does not expose are left out).

    Only the lines of the families we read reach the parser: a member exposes ~160 kB of metrics,
    and parsing all of them every second would cost the parent a noticeable share of a core.
    """
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(maxsplit=3)
            keep = len(parts) > 2 and parts[1] in ("TYPE", "HELP") and _family_of_ours(parts[2])
        else:
            keep = line.split("{", 1)[0].split(" ", 1)[0] in _SAMPLES
        if keep:
            lines.append(line)
    values: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            for name, q in QUANTITIES.items():
                if sample.name == q.sample and (q.labels is None or q.labels(sample.labels)):
                    values[name] = values.get(name, 0.0) + float(sample.value)
    return values


def _family_of_ours(family: str) -> bool:
    return family in _SAMPLES or f"{family}_total" in _SAMPLES


def metrics_url(client_url: str) -> str:
    return client_url.rstrip("/") + "/metrics"


def _opener(credentials: Credentials | None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if credentials is not None and credentials.tls:
        context = ssl.create_default_context(cafile=credentials.cacert)
        if credentials.cert and credentials.key:
            context.load_cert_chain(credentials.cert, credentials.key)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


@dataclass
class _Member:
    url: str
    times: list[float]  # monotonic seconds of each successful scrape
    values: list[dict[str, float]]
    error: str = ""


class EtcdMetricsSampler:
    """Scrapes every member's /metrics on a thread: once at `start()`, every `interval_s`, once at
    `stop()`. A member that cannot be scraped is recorded with its error; the run never depends on it."""

    def __init__(
        self, urls: Sequence[str], credentials: Credentials | None = None, interval_s: float = 1.0
    ) -> None:
        self.members = [_Member(url, [], []) for url in urls]
        self.interval_s = interval_s
        self._opener = _opener(credentials)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0  # monotonic seconds the series count from

    def scrape_once(self) -> None:
        for m in self.members:
            try:
                with self._opener.open(metrics_url(m.url), timeout=SCRAPE_TIMEOUT_S) as r:
                    text = r.read().decode("utf-8", "replace")
                values = parse_metrics(text)
            except (OSError, ValueError) as exc:  # URLError, timeouts, a server that is not etcd
                m.error = m.error or f"{m.url}: {exc}"
                continue
            m.times.append(time.monotonic())
            m.values.append(values)

    def start(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.scrape_once()
        self._thread = threading.Thread(target=self._loop, name="etcd-metrics", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.scrape_once()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.scrape_once()

    def view(self) -> dict[str, Any]:
        """What etcd counted over the run: see `summarize`."""
        return summarize(
            [(m.times, m.values) for m in self.members],
            [m.error for m in self.members if m.error],
            self.t0,
            self.interval_s,
        )


def increase(values: Sequence[float]) -> float:
    """A counter's increase over its samples; a drop is a restart, after which it counts from zero."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def summarize(
    members: Sequence[tuple[Sequence[float], Sequence[dict[str, float]]]],
    errors: Sequence[str],
    t0: float,
    interval_s: float,
) -> dict[str, Any]:
    """`{members, scraped, errors, increase, max, last, series}` over every member's samples.

    increase: each counter's rise over the run; max/last: each gauge's largest and final value;
    series: per member-sample step, each counter's increase in that step and each gauge's value,
    combined across members like the totals, at `[seconds since t0, value]` points.
    """
    scraped = [(times, values) for times, values in members if values]
    out: dict[str, Any] = {
        "members": len(members),
        "scraped": len(scraped),
        # Members whose counters went down: they restarted, and what they counted between the last
        # scrape and the restart is lost to these figures.
        "restarted": sum(_restarted(values) for _, values in scraped),
        "errors": list(errors),
        "increase": {},
        "max": {},
        "last": {},
        "series": {},
    }
    if not scraped:
        return out
    for name in QUANTITIES:
        q = QUANTITIES[name]
        per_member = [[v[name] for v in values if name in v] for _, values in scraped]
        per_member = [s for s in per_member if s]
        if not per_member:
            continue
        combine = max if q.across_members == "max" else sum
        if q.counter:
            out["increase"][name] = round(combine(increase(s) for s in per_member))
        else:
            out["max"][name] = round(combine(max(s) for s in per_member))
            out["last"][name] = round(combine(s[-1] for s in per_member))
    out["series"] = _series(scraped, t0, interval_s)
    return out


def _restarted(values: Sequence[dict[str, float]]) -> bool:
    return any(
        after.get(name, 0.0) < before.get(name, 0.0)
        for before, after in itertools.pairwise(values)
        for name in COUNTERS
        if name in before and name in after
    )


def _series(
    scraped: Sequence[tuple[Sequence[float], Sequence[dict[str, float]]]], t0: float, interval_s: float
) -> dict[str, list[list[float]]]:
    """Points on the first member's sample times; the other members' nearest earlier sample joins."""
    times = scraped[0][0]
    series: dict[str, list[list[float]]] = {}
    for name, q in QUANTITIES.items():
        combine = max if q.across_members == "max" else sum
        points = []
        for i in range(1 if q.counter else 0, len(times)):
            values = []
            for m_times, m_values in scraped:
                j = _at_or_before(m_times, times[i])
                if j is None or name not in m_values[j]:
                    continue
                if q.counter:
                    k = _at_or_before(m_times, times[i - 1])
                    if k is None or k == j or name not in m_values[k]:
                        continue
                    values.append(increase([m_values[k][name], m_values[j][name]]))
                else:
                    values.append(m_values[j][name])
            if values:
                points.append([round(times[i] - t0, 3), round(combine(values), 3)])
        if any(value for _, value in points):  # an all-zero series says nothing: kept out of the file
            series[name] = points
    return series


def _at_or_before(times: Sequence[float], t: float) -> int | None:
    """The index of the last sample at or before `t` (samples are in time order): a soak's series has
    thousands of points, looked up once per point."""
    i = bisect.bisect_right(times, t) - 1
    return i if i >= 0 else None


class CountedView(Protocol):
    """What `disagreements` reads of etcd's view of a run (results.model.EtcdView has it)."""

    @property
    def scraped(self) -> int: ...
    @property
    def restarted(self) -> int: ...
    @property
    def increase(self) -> dict[str, int]: ...
    @property
    def max(self) -> dict[str, int]: ...


def disagreements(
    view: CountedView | None, *, backend: str, acked_puts: int, received: int, missed: int
) -> list[str]:
    """Where etcd's count and ours disagree, one line each. Other clients of a shared etcd only add to
    etcd's counts, so etcd counting *fewer* puts than we acknowledged is always a disagreement (unless
    every member restarted during the run: its counters then lost what the last scrape had not seen)."""
    if view is None or not view.scraped:
        return []
    lines = []
    applied_name = "mvcc_puts" if backend == "v3" else "v2_puts"
    applied = view.increase.get(applied_name)
    if applied is not None and applied < acked_puts and view.restarted < view.scraped:
        lines.append(
            f"etcd applied {applied} puts ({applied_name}) but etcdbench counted {acked_puts} acknowledged"
        )
    sent = view.increase.get("watch_events_sent")
    if backend == "v3" and sent is not None and sent < received:
        lines.append(f"etcd sent {sent} watch events but etcdbench's watchers received {received}")
    slow = view.max.get("slow_watchers", 0)
    if slow and not missed:
        lines.append(f"etcd reported up to {slow} slow (unsynced) watchers while etcdbench's missed nothing")
    return lines


class SavedView(Protocol):
    """etcd's view as a results file keeps it (results.model.EtcdView, a stage above this one)."""

    @property
    def scraped(self) -> int: ...
    @property
    def restarted(self) -> int: ...
    @property
    def errors(self) -> list[str]: ...
    @property
    def increase(self) -> dict[str, int]: ...
    @property
    def max(self) -> dict[str, int]: ...
    @property
    def last(self) -> dict[str, int]: ...


def etcd_line(view: SavedView | None, backend: str) -> str | None:
    """'applied 5,000 puts · sent 5,000 watch events · slow watchers max 0 · pending events max 0 ·
    db 25.1 MB' for a run on `backend`; None for a run without etcd's view."""
    if view is None:
        return None
    if not view.scraped:
        return "metrics not scraped: " + (view.errors[0] if view.errors else "no member answered")
    inc, top = view.increase, view.max
    v3 = backend == "v3"
    parts = [f"applied {inc.get('mvcc_puts' if v3 else 'v2_puts', 0):,} puts"]
    if v3:
        parts.append(f"sent {inc.get('watch_events_sent', 0):,} watch events")
        parts.append(f"slow watchers max {top.get('slow_watchers', 0):,}")
        parts.append(f"pending events max {top.get('pending_events', 0):,}")
    else:
        parts.append(f"{inc.get('v2_watch_requests', 0):,} v2 watch requests")
    if v3 and "db_bytes" in view.last:
        parts.append(f"db {view.last['db_bytes'] / 1e6:.1f} MB")
    if view.restarted:
        parts.append(f"{view.restarted} member(s) restarted: counts partial")
    return " · ".join(parts)
