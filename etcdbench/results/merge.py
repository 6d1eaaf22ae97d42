"""`etcdbench merge`: the results files of cooperating shards (`--shard I/N`) as one run's.

Shards follow one schedule at the full rate, each with its own writers and its own watcher timing
only its own writers' events, so their books add up exactly: counters and operations are summed,
HDR histograms added (percentiles are those of the added histograms, not averages of percentiles),
per-second series summed index by index (the shards share t0), rates summed. The verdict is taken
again, by the same rule, for the whole rate. What cannot be added stays per shard: each shard's CPU
(`cpu_shards`) and environment (`environment.shards`).

Files that are not the N shards of one run are refused: every run must appear in every file with
the same configuration (but for the shard index), and the files must be shards 0..N-1 of N, once each.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etcdbench.config.run import RunConfig
from etcdbench.errors import UsageError
from etcdbench.results.io import environment, load, new_results
from etcdbench.results.verdict import add_series, merge_summaries, verdict

SHARD_FIELDS = frozenset({"shard"})  # config fields that differ between the shards of one run
_SHARD_LABEL = re.compile(r" shard \d+/\d+$")


def _base_label(label: str) -> str:
    return _SHARD_LABEL.sub("", label)


def _key(run: dict[str, Any]) -> tuple[str, str]:
    config = {k: v for k, v in run.get("config", {}).items() if k not in SHARD_FIELDS}
    return _base_label(str(run.get("label", ""))), repr(sorted(config.items()))


def _shard_of(name: str, results: dict[str, Any]) -> tuple[int, int]:
    """(shard, shards) of a file, the same for all its runs; UsageError otherwise."""
    runs = results.get("runs") or []
    if not runs:
        raise UsageError(f"merge: {name} has no runs")
    found = {(r.get("config", {}).get("shard", 0), r.get("config", {}).get("shards", 1)) for r in runs}
    if len(found) != 1:
        raise UsageError(f"merge: {name} mixes runs of different shards: {sorted(found)}")
    shard, shards = found.pop()
    if shards < 2:
        raise UsageError(f"merge: {name} is not a shard's results (its runs were made without --shard I/N)")
    etcd = (results.get("environment") or {}).get("etcd") or {}
    if etcd.get("embedded"):
        raise UsageError(
            f"merge: {name} ran against its own embedded etcd; shards of one run share one etcd (--endpoints)"
        )
    return int(shard), int(shards)


def _run_config(config: dict[str, Any], rate: float) -> RunConfig:
    """The RunConfig of the merged run: the shards' own, one load generator at the total rate."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: v for k, v in config.items() if k in known}
    values["faults"] = tuple(values.get("faults", ()))
    values.update(rate=rate, shard=0, shards=1)
    return RunConfig(**values)


def _sum_counters(counters: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counters:
        for name, n in c.items():
            out[name] = out.get(name, 0) + n
    return out


def _sizes(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Object sizes, when exact: the histograms are not kept, so percentiles are known only when
    every shard has the same ones (the same objects, as with the same config); else null."""
    sizes: list[dict[str, Any]] = [r["object_sizes"] for r in runs if r.get("object_sizes")]
    if len(sizes) != len(runs):
        return None
    pct = ("p50", "p90", "p99", "p999")
    out: dict[str, Any] = {}
    for name in sizes[0]:
        per: list[dict[str, Any]] = [s[name] for s in sizes if name in s]
        if len(per) != len(sizes) or len({tuple(p[k] for k in pct) for p in per}) != 1:
            return None
        count = sum(p["count"] for p in per)
        mean = sum((p["mean"] or 0) * p["count"] for p in per) / count if count else None
        out[name] = {
            **{k: per[0][k] for k in pct},
            "max": max((p["max"] for p in per if p["max"] is not None), default=None),
            "mean": None if mean is None else round(mean, 1),
            "count": count,
            "out_of_range": sum(p["out_of_range"] for p in per),
        }
    return out


def _cpu(shards: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cores of all shards' processes together; the busiest process and host of any shard."""

    def values(name: str) -> list[float]:
        return [float(c[name]) for c in shards if c.get(name) is not None]

    def total(name: str) -> float | None:
        found = values(name)
        return round(sum(found), 3) if found else None

    def most(name: str) -> float | None:
        return max(values(name), default=None)

    return {
        "watcher": total("watcher"),
        "writers": total("writers"),
        "etcd": total("etcd"),
        "host": most("host"),
        "watcher_max": most("watcher_max"),
        "writer_max": most("writer_max"),
    }


def _tagged(items: Sequence[dict[str, Any]], shard: int) -> list[dict[str, Any]]:
    return [dict(item, shard=shard) for item in items]


def _watches(runs: Sequence[dict[str, Any]], shards: Sequence[int]) -> list[dict[str, Any]]:
    """Watch i of the merged run: watch i of every shard (each watched its own writers' events)."""
    out = []
    for i, first in enumerate(runs[0]["watches"]):
        per = [r["watches"][i] for r in runs]
        out.append(
            {
                "watch": i,
                "stream": first["stream"],
                "counters": _sum_counters([w["counters"] for w in per]),
                "watch_events_per_s": round(sum(w["watch_events_per_s"] for w in per), 2),
                "latency_us": {"watch": merge_summaries([w["latency_us"]["watch"] for w in per])},
                "relists": [x for w, s in zip(per, shards, strict=True) for x in _tagged(w["relists"], s)],
                "events_received": add_series([w["events_received"] for w in per]),
            }
        )
    return out


def merge_runs(runs: Sequence[dict[str, Any]], shards: Sequence[int]) -> dict[str, Any]:
    """One run from the same run of every shard (`shards[i]` is the index of `runs[i]`'s shard)."""
    first = runs[0]
    # A shard's rate is its share of the schedule: config.rate / config.shards (as its verdict).
    rate = sum(r["config"]["rate"] / r["config"].get("shards", 1) for r in runs)
    config = _run_config(first["config"], rate)
    lat = {
        name: merge_summaries([r["latency_us"][name] for r in runs])
        for name in ("watch", "put", "schedule_slip")
    }
    counters = _sum_counters([r["counters"] for r in runs])
    ops = _sum_counters([r.get("operations") or {} for r in runs])
    sizes = _sizes(runs)
    weights = [((r.get("object_sizes") or {}).get("stored") or {}).get("count") or 1 for r in runs]
    object_bytes = round(
        sum(r["object_bytes"] * w for r, w in zip(runs, weights, strict=True)) / sum(weights)
    )
    multi = all(len(r.get("watches") or []) == len(first.get("watches") or []) > 1 for r in runs)
    watches = _watches(runs, shards) if multi else []
    if watches:
        rates = [w["watch_events_per_s"] for w in watches]
        slowest, total = min(rates), round(sum(rates), 2)
    else:
        slowest = round(sum(r["watch_events_per_s"] for r in runs), 2)
        total = round(sum(r.get("watch_events_per_s_total", r["watch_events_per_s"]) for r in runs), 2)
    preloads = [r.get("preload") or {} for r in runs]
    db_sizes = [p["db_size_bytes"] for p in preloads if p.get("db_size_bytes") is not None]
    run: dict[str, Any] = {
        "label": config.label,
        "scenario": first.get("scenario"),
        "backend": first["backend"],
        "encoding": first["encoding"],
        "kind": first["kind"],
        "workload": first.get("workload", "update"),
        "v2_watch": first.get("v2_watch"),
        "watchers": first.get("watchers", 1),
        "target_rate": rate,
        "duration_s": first["duration_s"],
        "warmup_s": first["warmup_s"],
        "config": config.to_dict(),
        "shards": len(runs),
        "object_bytes": object_bytes,
        "object_sizes": sizes,
        "preload": {
            "keys": sum(p.get("keys", 0) for p in preloads),
            "seconds": max((p.get("seconds", 0.0) for p in preloads), default=0.0),
            "db_size_bytes": max(db_sizes) if db_sizes else None,
        },
        "operations": ops,
        "counters": counters,
        "watch_events_per_s": slowest,
        "watch_events_per_s_total": total,
        "write_rate_achieved": round(sum(r["write_rate_achieved"] for r in runs), 2),
        "drain_s": max(r.get("drain_s", 0.0) for r in runs),
        "latency_us": lat,
        "relists": [x for r, s in zip(runs, shards, strict=True) for x in _tagged(r.get("relists", []), s)],
        "timeseries": {
            "interval_s": first["timeseries"].get("interval_s", 1),
            "writes_acked": add_series([r["timeseries"]["writes_acked"] for r in runs]),
            "events_received": add_series([r["timeseries"]["events_received"] for r in runs]),
            "cpu_cores": {},  # per shard, under cpu_cores_shards: cores of different hosts do not add
            "cpu_cores_shards": [r["timeseries"].get("cpu_cores", {}) for r in runs],
            "rss_bytes": {},  # likewise: each shard's own processes, under rss_bytes_shards
            "rss_bytes_shards": [r["timeseries"].get("rss_bytes", {}) for r in runs],
        },
        "cpu": _cpu([r["cpu"] for r in runs]),
        "cpu_shards": [dict(r["cpu"], shard=s) for r, s in zip(runs, shards, strict=True)],
        "error_samples": sorted({e for r in runs for e in r.get("error_samples", [])}),
    }
    if any(r.get("memory") for r in runs):
        run["memory_shards"] = [
            dict(r.get("memory") or {}, shard=s) for r, s in zip(runs, shards, strict=True)
        ]
    missing = [f"shard {s}: {m}" for r, s in zip(runs, shards, strict=True) for m in r.get("missing", [])]
    if missing:
        run["missing"] = missing
    if watches:
        run["watches"] = watches
    faults = [x for r, s in zip(runs, shards, strict=True) for x in _tagged(r.get("faults", []), s)]
    if faults:
        run["faults"] = faults
    incomplete = [
        f"shard {s}: {r['incomplete']}" for r, s in zip(runs, shards, strict=True) if "incomplete" in r
    ]
    if incomplete:
        run["incomplete"] = "; ".join(incomplete)
    run["verdict"] = verdict(run, config)
    return run


def _etcd(envs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    etcds = [e.get("etcd") or {} for e in envs]
    endpoints = list(dict.fromkeys(u for e in etcds for u in e.get("endpoints", [])))
    versions = list(dict.fromkeys(str(e["server_version"]) for e in etcds if e.get("server_version")))
    etcd: dict[str, Any] = {"embedded": False, "endpoints": endpoints}
    if versions:
        etcd["server_version"] = ", ".join(versions)
    members = next((e["members"] for e in etcds if e.get("members")), None)
    if members is not None:
        etcd["members"] = members
    return etcd


def merge(named: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One results document from the files of the N shards of one run (`named`: (name, document))."""
    if len(named) < 2:
        raise UsageError("merge: needs the results files of at least two shards")
    placed: dict[int, tuple[str, dict[str, Any]]] = {}
    count = 0
    for name, results in named:
        shard, shards = _shard_of(name, results)
        if count and shards != count:
            raise UsageError(
                f"merge: not shards of the same run: {name} is shard {shard}/{shards}, not of {count}"
            )
        count = shards
        if shard in placed:
            raise UsageError(f"merge: {placed[shard][0]} and {name} are both shard {shard}/{shards}")
        placed[shard] = (name, results)
    if len(placed) != count:
        missing = sorted(set(range(count)) - placed.keys())
        raise UsageError(f"merge: {count} shards make this run; shard(s) {missing} missing")
    ordered = [placed[i] for i in range(count)]

    base_name, base = ordered[0]
    keys = [_key(r) for r in base["runs"]]
    if len(set(keys)) != len(keys):
        raise UsageError(f"merge: {base_name} holds the same run twice")
    for name, results in ordered[1:]:
        other = [_key(r) for r in results["runs"]]
        if sorted(other) != sorted(keys):
            extra = [k[0] for k in other if k not in keys] or [k[0] for k in keys if k not in other]
            raise UsageError(
                f"merge: not shards of the same run: {name} and {base_name} differ in run "
                f"'{extra[0] if extra else '?'}' (its label or configuration)"
            )

    runs = []
    for key in keys:
        same = [next(r for r in results["runs"] if _key(r) == key) for _, results in ordered]
        runs.append(merge_runs(same, list(range(count))))

    envs = [results.get("environment") or {} for _, results in ordered]
    env = environment(etcd=_etcd(envs))
    env["merge"] = {"files": [name for name, _ in ordered], "shards": count}
    env["shards"] = [dict(e, shard=i) for i, e in enumerate(envs)]
    doc = new_results(env)
    doc["scenario"] = base.get("scenario")
    doc["runs"] = runs
    doc["complete"] = all(r.get("complete", False) for _, r in ordered) and not any(
        "incomplete" in r for r in runs
    )
    return doc


def merge_files(paths: Sequence[Path]) -> dict[str, Any]:
    """Load and merge results files (each checked and upgraded like any other)."""
    return merge([(str(p), load(p)) for p in paths])
