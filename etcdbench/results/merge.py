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
from typing import Any, TypeVar

from etcdbench.config.run import RunConfig
from etcdbench.errors import UsageError
from etcdbench.results.io import environment, load_results, new_results
from etcdbench.results.model import (
    Counters,
    Environment,
    EtcdInfo,
    Fault,
    Latencies,
    MergeInfo,
    Operations,
    Preload,
    Relist,
    ResultsFile,
    Run,
    Summary,
    Timeseries,
    Watch,
    WatchCounters,
    WatchLatency,
)
from etcdbench.results.record import ABSENT
from etcdbench.results.verdict import add_series, judged, merged, unjudged

SHARD_FIELDS = frozenset({"shard"})  # config fields that differ between the shards of one run
_SHARD_LABEL = re.compile(r" shard \d+/\d+$")


def _base_label(label: str) -> str:
    return _SHARD_LABEL.sub("", label)


def _key(run: Run) -> tuple[str, str]:
    config = {k: v for k, v in run.config.items() if k not in SHARD_FIELDS}
    return _base_label(run.label), repr(sorted(config.items()))


def _shard_of(name: str, results: ResultsFile) -> tuple[int, int]:
    """(shard, shards) of a file, the same for all its runs; UsageError otherwise."""
    runs = results.runs
    if not runs:
        raise UsageError(f"merge: {name} has no runs")
    found = {(r.config.get("shard", 0), r.config.get("shards", 1)) for r in runs}
    if len(found) != 1:
        raise UsageError(f"merge: {name} mixes runs of different shards: {sorted(found)}")
    shard, shards = found.pop()
    if shards < 2:
        raise UsageError(f"merge: {name} is not a shard's results (its runs were made without --shard I/N)")
    etcd = results.environment.etcd
    if etcd is not None and etcd.embedded:
        raise UsageError(
            f"merge: {name} ran against its own embedded etcd; shards of one run share one etcd (--endpoints)"
        )
    return int(shard), int(shards)


def _run_config(config: dict[str, Any], rate: float) -> RunConfig:
    """The RunConfig of the merged run: the shards' own, one load generator at the total rate."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: v for k, v in config.items() if k in known}
    values.setdefault("decode_prev", "always")  # what shards decoded before the key existed
    values["faults"] = tuple(values.get("faults", ()))
    values.update(rate=rate, shard=0, shards=1)
    return RunConfig(**values)


C = TypeVar("C", WatchCounters, Counters)


def _sum_counters(counters: Sequence[C]) -> C:
    """Counters added field by field (a counter some shards' files lack: the sum of the others')."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(counters[0]):
        per = [n for c in counters if (n := getattr(c, f.name)) is not None]
        values[f.name] = sum(per) if per else None
    return dataclasses.replace(counters[0], **values)


def _sizes(runs: Sequence[Run]) -> dict[str, Summary] | None:
    """Object sizes, when exact: the histograms are not kept, so percentiles are known only when
    every shard has the same ones (the same objects, as with the same config); else null."""
    sizes = [r.object_sizes for r in runs if r.object_sizes]
    if len(sizes) != len(runs):
        return None
    out: dict[str, Summary] = {}
    for name in sizes[0]:
        per = [s[name] for s in sizes if name in s]
        if len(per) != len(sizes) or len({(p.p50, p.p90, p.p99, p.p999) for p in per}) != 1:
            return None
        count = sum(p.count for p in per)
        mean = sum((p.mean or 0) * p.count for p in per) / count if count else None
        out[name] = Summary(
            p50=per[0].p50,
            p90=per[0].p90,
            p99=per[0].p99,
            p999=per[0].p999,
            max=max((p.max for p in per if p.max is not None), default=None),
            mean=None if mean is None else round(mean, 1),
            count=count,
            out_of_range=sum(p.out_of_range for p in per),
        )
    return out


def _cpu(shards: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """Cores of all shards' processes together; the busiest process and host of any shard."""

    def values(name: str) -> list[float]:
        return [float(v) for c in shards if (v := c.get(name)) is not None]

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


T = TypeVar("T", Relist, Fault)


def _tagged(items: Sequence[T] | None, shard: int) -> list[T]:
    return [dataclasses.replace(item, shard=shard) for item in items or ()]


def _watches(runs: Sequence[Run], shards: Sequence[int]) -> list[Watch]:
    """Watch i of the merged run: watch i of every shard (each watched its own writers' events)."""
    out = []
    for i, first in enumerate(runs[0].watches or ()):
        per = [(r.watches or [])[i] for r in runs]
        out.append(
            Watch(
                watch=i,
                stream=first.stream,
                counters=_sum_counters([w.counters for w in per]),
                watch_events_per_s=round(sum(w.watch_events_per_s for w in per), 2),
                latency_us=WatchLatency(watch=merged([w.latency_us.watch for w in per])),
                relists=[x for w, s in zip(per, shards, strict=True) for x in _tagged(w.relists, s)],
                events_received=add_series([w.events_received for w in per]),
            )
        )
    return out


def merge_runs(runs: Sequence[Run], shards: Sequence[int]) -> Run:
    """One run from the same run of every shard (`shards[i]` is the index of `runs[i]`'s shard)."""
    first = runs[0]
    # A shard's rate is its share of the schedule: config.rate / config.shards (as its verdict).
    rate = sum(r.config["rate"] / r.config.get("shards", 1) for r in runs)
    config = _run_config(first.config, rate)
    lat = Latencies(
        watch=merged([r.latency_us.watch for r in runs]),
        put=merged([r.latency_us.put for r in runs]),
        schedule_slip=merged([r.latency_us.schedule_slip for r in runs]),
    )
    ops = [r.operations for r in runs]
    sizes = _sizes(runs)
    weights = [
        (r.object_sizes or {})["stored"].count if "stored" in (r.object_sizes or {}) else 1 for r in runs
    ]
    weights = [w or 1 for w in weights]
    object_bytes = round(sum(r.object_bytes * w for r, w in zip(runs, weights, strict=True)) / sum(weights))
    multi = all(len(r.watches or []) == len(first.watches or []) > 1 for r in runs)
    watches = _watches(runs, shards) if multi else []
    if watches:
        rates = [w.watch_events_per_s for w in watches]
        slowest, total = min(rates), round(sum(rates), 2)
    else:
        slowest = round(sum(r.watch_events_per_s for r in runs), 2)
        total = round(sum(r.watch_events_per_s_total for r in runs), 2)
    db_sizes = [r.preload.db_size_bytes for r in runs if r.preload.db_size_bytes is not None]
    missing = [f"shard {s}: {m}" for r, s in zip(runs, shards, strict=True) for m in r.missing or ()]
    faults = [x for r, s in zip(runs, shards, strict=True) for x in _tagged(r.faults, s)]
    incomplete = [
        f"shard {s}: {r.incomplete}" for r, s in zip(runs, shards, strict=True) if r.incomplete is not None
    ]
    run = Run(
        label=config.label,
        scenario=first.scenario,
        backend=first.backend,
        encoding=first.encoding,
        kind=first.kind,
        workload=first.workload,
        v2_watch=first.v2_watch,
        watchers=first.watchers,
        target_rate=rate,
        duration_s=first.duration_s,
        warmup_s=first.warmup_s,
        config=config.to_dict(),
        shards=len(runs),
        object_bytes=object_bytes,
        object_sizes=sizes,
        preload=Preload(
            keys=sum(r.preload.keys for r in runs),
            seconds=max((r.preload.seconds for r in runs), default=0.0),
            db_size_bytes=max(db_sizes) if db_sizes else None,
        ),
        operations=Operations(
            create=sum(o.create for o in ops),
            update=sum(o.update for o in ops),
            delete=sum(o.delete for o in ops),
        ),
        counters=_sum_counters([r.counters for r in runs]),
        watch_events_per_s=slowest,
        watch_events_per_s_total=total,
        write_rate_achieved=round(sum(r.write_rate_achieved for r in runs), 2),
        drain_s=max(r.drain_s for r in runs),
        latency_us=lat,
        relists=[x for r, s in zip(runs, shards, strict=True) for x in _tagged(r.relists, s)],
        timeseries=Timeseries(
            interval_s=first.timeseries.interval_s,
            writes_acked=add_series([r.timeseries.writes_acked for r in runs]),
            events_received=add_series([r.timeseries.events_received for r in runs]),
            cpu_cores={},  # per shard, under cpu_cores_shards: cores of different hosts do not add
            cpu_cores_shards=[r.timeseries.cpu_cores for r in runs],
            rss_bytes={},  # likewise: each shard's own processes, under rss_bytes_shards
            rss_bytes_shards=[r.timeseries.rss_bytes or {} for r in runs],
        ),
        cpu=_cpu([r.cpu for r in runs]),
        cpu_shards=[{**r.cpu, "shard": s} for r, s in zip(runs, shards, strict=True)],
        memory_shards=(
            [{**(r.memory or {}), "shard": s} for r, s in zip(runs, shards, strict=True)]
            if any(r.memory for r in runs)
            else None
        ),
        error_samples=sorted({e for r in runs for e in r.error_samples}),
        missing=missing or None,
        watches=watches or None,
        faults=faults or None,
        incomplete="; ".join(incomplete) or None,
        verdict=unjudged(),
    )
    return judged(run, config)


def _etcd(envs: Sequence[Environment]) -> EtcdInfo:
    etcds = [e.etcd for e in envs if e.etcd is not None]
    endpoints = list(dict.fromkeys(u for e in etcds for u in e.endpoints))
    versions = list(
        dict.fromkeys(
            str(e.server_version) for e in etcds if isinstance(e.server_version, str) and e.server_version
        )
    )
    members = next((e.members for e in etcds if e.members), None)
    return EtcdInfo(
        embedded=False,
        endpoints=endpoints,
        server_version=", ".join(versions) if versions else ABSENT,
        members=members,
    )


def merge(named: Sequence[tuple[str, ResultsFile]]) -> ResultsFile:
    """One results document from the files of the N shards of one run (`named`: (name, document))."""
    if len(named) < 2:
        raise UsageError("merge: needs the results files of at least two shards")
    placed: dict[int, tuple[str, ResultsFile]] = {}
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
    keys = [_key(r) for r in base.runs]
    if len(set(keys)) != len(keys):
        raise UsageError(f"merge: {base_name} holds the same run twice")
    for name, results in ordered[1:]:
        other = [_key(r) for r in results.runs]
        if sorted(other) != sorted(keys):
            extra = [k[0] for k in other if k not in keys] or [k[0] for k in keys if k not in other]
            raise UsageError(
                f"merge: not shards of the same run: {name} and {base_name} differ in run "
                f"'{extra[0] if extra else '?'}' (its label or configuration)"
            )

    runs = []
    for key in keys:
        same = [next(r for r in results.runs if _key(r) == key) for _, results in ordered]
        runs.append(merge_runs(same, list(range(count))))

    envs = [results.environment for _, results in ordered]
    env = dataclasses.replace(
        environment(_etcd(envs)),
        merge=MergeInfo(files=[name for name, _ in ordered], shards=count),
        shards=[dataclasses.replace(e, shard=i) for i, e in enumerate(envs)],
    )
    return dataclasses.replace(
        new_results(env),
        scenario=base.scenario,
        runs=runs,
        complete=all(r.complete for _, r in ordered) and not any(r.incomplete is not None for r in runs),
    )


def merge_files(paths: Sequence[Path]) -> ResultsFile:
    """Load and merge results files (each checked and upgraded like any other)."""
    return merge([(str(p), load_results(p)) for p in paths])
