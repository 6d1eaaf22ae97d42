"""B (what our watcher costs etcd's writers, and its CPU per event) and J (the JSON watcher's CPU per
event), each against Go's watcher behind the same Go writer."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from harness import Bench, Trial
from reference import PutReport, WatcherReport
from table import Table, f0, f1, fr, log, ms, ratio, status

from etcdbench.encoding.codec import JSON_DECODER
from sections.end_to_end import T_E2E
from sections.recording import decode_cost

T_WATCHER_COST = 0.95  # the target: etcd's write rate with our watcher over that with Go's
WHO = {
    "go": "Go",
    "go-decode": "Go (decoding JSON)",
    "py": "etcdbench",
    "py-both": "etcdbench (--decode-prev always)",
}
# pywatch flags per watcher of J: the target decodes the new and the previous object of every
# event; "py" decodes what the apiserver's v3 watcher does (an update's new object only).
J_ARGS = {"go": [], "go-decode": ["-decode-json"], "py": [], "py-both": ["--decode-prev", "always"]}


@dataclass(frozen=True)
class Saturation:
    """The Go writer at max with each watcher attached, trials alternating Go and ours."""

    trials: dict[str, list[Trial]]  # "go" | "py" -> its trials in order

    def rates(self, who: str) -> list[float]:
        return [trial.put.writes_per_s for trial in self.trials[who]]

    def cpu_us_per_event(self, who: str) -> list[float]:
        return [trial.watch.cpu_us_per_event or 0 for trial in self.trials[who]]

    def catch_up_s(self, who: str) -> list[float]:
        return [trial.catch_up_s for trial in self.trials[who]]


@dataclass(frozen=True)
class FixedRate:
    """Each watcher behind the Go writer at --cost-rate: CPU per event."""

    go: dict[str, WatcherReport]  # encoding -> Go's watcher
    py: dict[str, WatcherReport]  # encoding -> ours
    transport_only: dict[str, WatcherReport]  # v3 client -> ours without decode or books (protobuf)


@dataclass(frozen=True)
class WatcherCost:
    saturation: Saturation | None  # None without Go
    fixed_rate: FixedRate | None
    decode_us: dict[str, float]  # encoding -> WatchBook.event alone, no I/O

    @property
    def go_us_per_event(self) -> float | None:
        """Go's watcher's CPU per event at the fixed rate, protobuf Pods."""
        return self.fixed_rate.go["protobuf"].cpu_us_per_event if self.fixed_rate else None


@dataclass(frozen=True)
class JsonWatcher:
    cpu_us_per_event: dict[str, list[float]]  # a key of WHO -> per trial
    received: dict[str, list[int]]
    decoder: str


def _checked(trial: Trial) -> Trial:
    if trial.watch.decode_errors:
        raise RuntimeError(f"etcdbench watcher could not decode {trial.watch.decode_errors} events")
    return trial


def section_b(b: Bench, t: Table, go_max: PutReport | None) -> WatcherCost:
    """`go_max`: the Go writer alone at max (A1), when A ran."""
    saturation = fixed = None
    if b.etcdref:
        saturation = _saturation(b, t, go_max)
        fixed = _fixed_rate(b, t)
    # Where the watcher's time goes: the per-event Python work alone, no network (in this process).
    decode_us: dict[str, float] = {}
    for encoding in ("protobuf", "json"):
        us = decode_us[encoding] = decode_cost(encoding)
        t.add(
            f"B. of which WatchBook.event alone ({encoding}: decode new + prev object, stamp, books), no I/O",
            f"{f1(us)} µs",
            "—",
            "—",
            "(stated)",
            "info",
        )
    return WatcherCost(saturation, fixed, decode_us)


def _saturation(b: Bench, t: Table, go_max: PutReport | None) -> Saturation:
    trials: dict[str, list[Trial]] = {"go": [], "py": []}
    for trial in range(b.args.trials):
        for who in ("go", "py"):
            log(f"B{trial + 1} Go writer at max + {WHO[who]} watcher (protobuf Pods)")
            writer = ["-max", "-value-file", str(b.values["protobuf"])]
            trials[who].append(_checked(b.watch_trial(who, "v3", "protobuf", writer, "put")))
    s = Saturation(trials)
    go_rate, py_rate = statistics.mean(s.rates("go")), statistics.mean(s.rates("py"))
    r = ratio(py_rate, go_rate)
    t.add(
        "B. etcd write rate (Go writer at max) with the watcher attached, "
        f"mean of {b.args.trials} alternating",
        f"{f0(py_rate)}/s ({', '.join(f0(x) for x in s.rates('py'))})",
        f"{f0(go_rate)}/s ({', '.join(f0(x) for x in s.rates('go'))})",
        fr(r),
        f">= {T_WATCHER_COST}",
        status(r is not None and r >= T_WATCHER_COST),
    )
    py_us, go_us = statistics.mean(s.cpu_us_per_event("py")), statistics.mean(s.cpu_us_per_event("go"))
    t.add(
        "B. same runs: watcher CPU µs/event at saturation; s to catch up after the last write",
        f"{f1(py_us)} µs; {f1(statistics.mean(s.catch_up_s('py')))} s",
        f"{f1(go_us)} µs; {f1(statistics.mean(s.catch_up_s('go')))} s",
        fr(ratio(py_us, go_us)),
        "(stated)",
        "info",
    )
    if go_max:
        t.add(
            "B. context for A: Go writer + Go watcher (above) against the Go writer alone at max (A1)",
            "—",
            f"{f0(go_rate)}/s vs {f0(go_max.writes_per_s)}/s",
            fr(ratio(go_rate, go_max.writes_per_s)),
            f"A asks etcdbench for >= {T_E2E}",
            "info",
        )
    return s


def _fixed_rate(b: Bench, t: Table) -> FixedRate:
    fixed = b.args.cost_rate
    go: dict[str, WatcherReport] = {}
    py: dict[str, WatcherReport] = {}
    bare: dict[str, WatcherReport] = {}

    def writer(encoding: str) -> list[str]:
        return ["-rate", f"{fixed:g}", "-value-file", str(b.values[encoding])]

    for encoding in ("protobuf", "json"):
        log(f"B Go writer at {fixed:g}/s ({encoding} Pods) + Go watcher")
        go[encoding] = b.watch_trial("go", "v3", encoding, writer(encoding), "put").watch
    for encoding in ("protobuf", "json"):
        log(f"B Go writer at {fixed:g}/s ({encoding} Pods) + etcdbench watcher")
        py[encoding] = ours = b.watch_trial("py", "v3", encoding, writer(encoding), "put").watch
        if encoding == "protobuf":
            for client in ("native", "grpcio"):
                log(f"B Go writer at {fixed:g}/s (protobuf) + etcdbench watcher, transport, {client}")
                bare[client] = b.watch_trial(
                    "py", "v3", encoding, writer(encoding), "put", ["--transport-only"], v3_client=client
                ).watch
        theirs = go[encoding]
        t.add(
            f"B. watcher CPU µs/event at {fixed:g}/s, {encoding} Pods ({b.values_bytes[encoding]:,} B) "
            "+ prev_kv, the new object decoded as the apiserver does (Go: no k8s decode)",
            f"{f1(ours.cpu_us_per_event)} µs (received {ours.received:,}, p99 {ms(ours.p99_us)})",
            f"{f1(theirs.cpu_us_per_event)} µs (received {theirs.events:,})",
            fr(ratio(ours.cpu_us_per_event, theirs.cpu_us_per_event)),
            "(stated)",
            "info",
        )
    go_us = go["protobuf"].cpu_us_per_event
    figures = {
        "native": "B. of which etcdbench's v3 transport alone (V3Backend.watch, no decode/books) "
        f"at {fixed:g}/s, protobuf",
        "grpcio": "B. the same transport-only watcher on grpcio (ETCDBENCH_V3_CLIENT=grpcio), for comparison",
    }
    for client, figure in figures.items():
        w = bare[client]
        t.add(
            figure,
            f"{f1(w.cpu_us_per_event)} µs (received {w.events:,})",
            f"{f1(go_us)} µs",
            fr(ratio(w.cpu_us_per_event, go_us)),
            "(stated)",
            "info",
        )
    return FixedRate(go, py, bare)


def section_j(b: Bench, t: Table) -> JsonWatcher:
    """The JSON watcher's CPU per event against Go's whole watcher, alternating, same rate and values."""
    args = b.args
    fixed = args.cost_rate
    watchers = ("go", "go-decode", "py-both", "py") if b.etcdref else ("py-both", "py")
    per_event: dict[str, list[float]] = {who: [] for who in watchers}
    received: dict[str, list[int]] = {who: [] for who in watchers}
    writer = ["-rate", f"{fixed:g}", "-value-file", str(b.values["json"])]
    for trial in range(args.trials):
        for who in watchers:
            log(f"J{trial + 1} Go writer at {fixed:g}/s (json Pods) + {WHO[who]} watcher")
            go_or_py = who.split("-")[0]
            watch = _checked(b.watch_trial(go_or_py, "v3", "json", writer, "put", J_ARGS[who])).watch
            per_event[who].append(watch.cpu_us_per_event or 0)
            received[who].append(watch.received)
    go = statistics.mean(per_event["go"]) if b.etcdref else None

    def ours(who: str, what: str, target: str) -> None:
        us = statistics.mean(per_event[who])
        r = ratio(us, go)
        verdict = "info" if target == "(stated)" else "n/a" if r is None else status(r <= 1.0)
        t.add(
            f"J. JSON watcher CPU µs/event at {fixed:g}/s, json Pods ({b.values_bytes['json']:,} B) "
            f"+ prev_kv, {what} ({JSON_DECODER}; Go: no k8s decode), mean of {args.trials} alternating",
            f"{f1(us)} µs ({', '.join(f1(x) for x in per_event[who])}; received {min(received[who]):,} each)",
            f"{f1(go)} µs ({', '.join(f1(x) for x in per_event['go'])})" if go else "—",
            fr(r),
            target,
            verdict,
        )

    ours("py-both", "both objects decoded (--decode-prev always)", "<= 1.0")
    ours(
        "py", "the objects the apiserver's v3 watcher decodes: an update's new one (the default)", "(stated)"
    )
    if b.etcdref:
        decoding = per_event["go-decode"]
        go_decode = statistics.mean(decoding)
        py = statistics.mean(per_event["py-both"])
        t.add(
            "J. for context: Go's watcher decoding both objects too, with encoding/json into "
            "map[string]interface{} (generic; the apiserver decodes into typed structs), same runs",
            f"{f1(py)} µs (--decode-prev always)",
            f"{f1(go_decode)} µs ({', '.join(f1(x) for x in decoding)}; "
            f"received {min(received['go-decode']):,} each)",
            fr(ratio(py, go_decode)),
            "(stated)",
            "info",
        )
    us = decode_cost("json")
    t.add(
        "J. of which WatchBook.event alone "
        f"(json: decode new + prev object with {JSON_DECODER}, stamp, books)",
        f"{f1(us)} µs",
        "—",
        "—",
        "(stated)",
        "info",
    )
    return JsonWatcher(per_event, received, JSON_DECODER)
