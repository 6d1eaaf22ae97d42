"""Nothing of the user's is ever lost: on an etcd given by --endpoints, etcdbench deletes and overwrites
only keys it wrote itself, on every way a run ends (end, error, Ctrl-C, shards, matrix cells,
--force); dangerous inputs are refused before anything starts; the data dir of a killed run goes (the
checks that need no etcd: tests/unit/test_safety_checks.py).

Every test seeds keys that are not etcdbench's, under and beside the prefix, and compares the whole
store (v3: every key with its value, create and mod revision; v2: every node) before and after.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_console import run_cli
from etcd_store import Snapshot, Store

import etcdbench.bench.target
from etcdbench.backends.base import Endpoint
from etcdbench.backends.v3 import V3Backend
from etcdbench.bench.target import OwnKeys
from etcdbench.config.run import RunConfig
from etcdbench.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, EtcdError, UsageError
from etcdbench.etcd import LocalEtcd, find_etcd_binary
from etcdbench.etcd.barrier import BARRIER_PREFIX, Barrier
from etcdbench.etcd.local import OWNER_FILE
from etcdbench.results.model import Run
from etcdbench.workload.ops import written_keys
from etcdbench.workload.runner import run_once

SMALL = ("--rate", "40", "--duration", "1", "--warmup", "0", "--objects", "6", "--drain", "2")


@pytest.fixture
def prefix() -> str:
    return f"/etcdbench-safety/{uuid.uuid4().hex[:12]}/"


def seed_foreign(store: Store, prefix: str) -> None:
    """Someone else's keys: under the prefix, beside it, and sharing its first letters."""
    for key, value in [
        (prefix + "pods/team-00/someone-elses-pod", b"theirs 1"),
        (prefix + "minions/a-real-node", b"theirs 2"),
        (prefix.rstrip("/"), b"the prefix without its slash"),
        (prefix.rstrip("/") + "x/pods/team-00/beside", b"theirs 3"),
    ]:
        store.put(key, value)
        store.v2_put(key.rstrip("/") + "-v2", value.decode())


def config_of(prefix: str, *argv: str) -> RunConfig:
    """The RunConfig `etcdbench watch --prefix prefix SMALL argv` runs (to name the keys it writes)."""
    from etcdbench.cli.app import build_parser
    from etcdbench.cli.watch import watch_config

    return watch_config(build_parser().parse_args(["watch", "--prefix", prefix, *SMALL, *argv]))


def new_keys(store: Store, before: Snapshot) -> int:
    """How many v3 keys exist now that did not before."""
    return len(store.v3()[1].keys() - before.keys())


def later_foreign_key(store: Store, prefix: str, v2: bool) -> Callable[[], tuple[str, bytes]]:
    """Put a foreign key under the prefix once the run is writing; returns a join() giving it."""
    made: list[tuple[str, bytes]] = []
    position = store.v2_index if v2 else store.revision
    start = position()

    def put_when_writing() -> None:
        deadline = time.monotonic() + 60
        while position() < start + 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        key, value = prefix + "pods/team-00/made-during-the-run", b"theirs, made while etcdbench ran"
        if v2:
            store.v2_put(key, value.decode())
        else:
            store.put(key, value)
        made.append((key, value))

    thread = threading.Thread(target=put_when_writing, daemon=True)
    thread.start()

    def join() -> tuple[str, bytes]:
        thread.join(60)
        return made[0]

    return join


# ------------------------------------------------------------------------------------ every way out


@pytest.mark.parametrize(
    "argv",
    [("--workload", "mix", "--mix", "update=2,create=1,delete=1"), ("--backend", "v2", "--encoding", "json")],
    ids=["v3 mix", "v2 update"],
)
def test_a_run_with_force_leaves_every_foreign_key_as_it_found_it(
    store: Store, prefix: str, argv: tuple[str, ...]
) -> None:
    seed_foreign(store, prefix)
    before_v3, before_v2 = store.both()
    v2 = "v2" in argv
    made_later = later_foreign_key(store, prefix, v2)
    code, out, err = run_cli(
        "watch", "--endpoints", store.url, "--prefix", prefix, *SMALL, *argv, "--force", "--json"
    )
    assert code in (0, 1), err  # the verdict of a 1 s run on a busy host is not the point
    run = json.loads(out)["runs"][0]
    assert run["counters"]["writes"] > 0
    key, value = made_later()
    after_v3, after_v2 = store.both()
    assert (after_v2 if v2 else after_v3).pop(key)[0] == value  # made under the prefix meanwhile: kept
    assert after_v3 == before_v3  # every key as it was: same value, same revisions; ours are gone
    assert after_v2 == before_v2


def test_a_run_that_fails_deletes_only_its_own_keys(
    store: Store, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_foreign(store, prefix)
    before = store.v3()[1]
    seen_own_keys: list[int] = []

    def failing_run_once(*args: Any, **kwargs: Any) -> Run:
        def progress(phase: str, elapsed: float, total: float) -> None:
            if elapsed > 0.5:
                seen_own_keys.append(new_keys(store, before))
                raise EtcdError("injected failure mid-run")

        # Replaced by name, not by position: however target.py passes (or omits) `progress`.
        call = inspect.signature(run_once).bind(*args, **kwargs)
        call.arguments["progress"] = progress
        return run_once(*call.args, **call.kwargs)

    monkeypatch.setattr(etcdbench.bench.target, "run_once", failing_run_once)
    code, _, err = run_cli(
        "watch", "--endpoints", store.url, "--prefix", prefix, *SMALL, "--duration", "30", "--force", "--json"
    )
    assert (code, err) == (EXIT_RUNTIME, "error: injected failure mid-run\n")
    assert seen_own_keys and seen_own_keys[0] > 0  # it had written keys of its own
    assert store.v3()[1] == before


def test_ctrl_c_deletes_only_its_own_keys(store: Store, prefix: str, tmp_path: Path) -> None:
    seed_foreign(store, prefix)
    before = store.v3()[1]
    start = store.revision()
    proc = subprocess.Popen(
        [sys.executable, "-m", "etcdbench", "watch", "--endpoints", store.url, "--prefix", prefix,
         "--rate", "100", "--duration", "60", "--warmup", "0", "--objects", "10", "--force", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while store.revision() < start + 10 + 50:  # the preload and half a second of writes
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no writes within 90 s"
        time.sleep(0.05)
    assert new_keys(store, before) == 10
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert store.v3()[1] == before


def test_a_key_the_run_would_write_is_never_overwritten_even_with_force(store: Store, prefix: str) -> None:
    seed_foreign(store, prefix)
    own = sorted(written_keys(config_of(prefix)))
    store.put(own[3], b"someone made this key first")
    revision, before = store.v3()
    code, _, err = run_cli("watch", "--endpoints", store.url, "--prefix", prefix, *SMALL, "--force", "--json")
    assert code == EXIT_USAGE
    assert err.count("\n") == 1 and err.startswith("error: --prefix: 1 of the keys this run would write")
    assert own[3] in err
    assert store.v3() == (revision, before)  # nothing written at all


def test_without_force_others_keys_under_the_prefix_are_refused_untouched(store: Store, prefix: str) -> None:
    seed_foreign(store, prefix)
    revision, before = store.v3()
    code, _, err = run_cli("watch", "--endpoints", store.url, "--prefix", prefix, *SMALL, "--json")
    assert code == EXIT_USAGE and err.count("\n") == 1
    assert err.startswith(f"error: --prefix: {prefix} already holds 2 keys") and "--force" in err
    assert store.v3() == (revision, before)


def test_two_shards_each_delete_only_their_own_keys_and_meeting_keys(
    store: Store, prefix: str, tmp_path: Path
) -> None:
    seed_foreign(store, prefix)
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    # An earlier run's meeting keys, as a crashed run leaves them: a new run id never meets them.
    for phase in ("ready", "done"):
        store.put(f"{BARRIER_PREFIX}earlier-{run_id}/{phase}/0", b"1")
    before = store.v3()[1]
    common = [*SMALL, "--endpoints", store.url, "--prefix", prefix, "--force", "--run-id", run_id, "--json"]
    procs = []
    for i in range(2):
        keep = ["--keep"] if i == 1 else []  # shard 1 keeps its keys: shard 0 must not take them
        argv = [sys.executable, "-m", "etcdbench", "watch", *common, "--shard", f"{i}/2", *keep]
        procs.append(
            subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode in (0, 1), err
    after = store.v3()[1]
    kept = after.keys() - before.keys()
    shard1 = written_keys(config_of(prefix, "--shard", "1/2"))
    assert kept == shard1  # shard 1's keys, all of them, and nothing else: shard 0 took only its own
    assert not any(k.startswith(f"{BARRIER_PREFIX}{run_id}/") for k in after)  # meeting keys gone
    assert {k: after[k] for k in before} == before
    v3 = V3Backend(Endpoint((store.url,)))  # shard 1's keys: gone for the next tests
    v3.delete_keys(sorted(kept))
    v3.close()


def test_a_shard_interrupted_mid_run_leaves_nothing_and_does_not_hold_up_the_other(
    store: Store, prefix: str, tmp_path: Path
) -> None:
    seed_foreign(store, prefix)
    before = store.v3()[1]
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    start = store.revision()
    argv = [sys.executable, "-m", "etcdbench", "watch", "--endpoints", store.url, "--prefix", prefix,
            "--rate", "100", "--duration", "4", "--warmup", "0", "--objects", "10", "--drain", "2",
            "--force", "--run-id", run_id, "--json"]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*argv, "--shard", f"{i}/2"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 90
    while store.revision() < start + 10 + 4 + 50:  # both preloads, the meeting, half a second of writes
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "no writes within 90 s"
        time.sleep(0.05)
    os.killpg(procs[1].pid, signal.SIGINT)
    _, err1 = procs[1].communicate(timeout=120)
    assert procs[1].returncode == EXIT_INTERRUPTED, err1
    _, err0 = procs[0].communicate(timeout=400)  # shard 1 is gone, not late: no barrier timeout (exit 3)
    assert procs[0].returncode in (0, 1), err0
    assert store.v3()[1] == before  # both shards' keys and meeting keys gone, the rest as it was


def test_a_matrix_checks_each_cell_and_leaves_foreign_keys(store: Store, prefix: str, tmp_path: Path) -> None:
    seed_foreign(store, prefix)
    scenario = tmp_path / "two.toml"
    scenario.write_text(
        'name = "two"\n[run]\nrate = 40\nduration_s = 1\nwarmup_s = 0\ndrain_s = 2\n'
        "[matrix]\nvariants = [\n"
        '  {backend = "v2", encoding = "json", objects = 5},\n  {backend = "v3", objects = 9},\n]\n'
    )
    # A foreign key with a name only the second cell writes: that cell is refused, the first ran.
    second_only = written_keys(RunConfig(prefix=prefix, rate=40, duration_s=1, warmup_s=0, objects=9))
    first = written_keys(RunConfig(prefix=prefix, rate=40, duration_s=1, warmup_s=0, objects=5))
    colliding = sorted(second_only - first)[0]
    store.put(colliding, b"theirs, named like etcdbench's")
    before_v3, before_v2 = store.both()
    out_path = tmp_path / "r.json"
    code, _, err = run_cli(
        "run",
        str(scenario),
        "--endpoints",
        store.url,
        "--prefix",
        prefix,
        "--force",
        "--output",
        str(out_path),
    )
    assert code == EXIT_USAGE and f"e.g. {colliding};" in err, err
    results = json.loads(out_path.read_text())
    assert [r["backend"] for r in results["runs"]] == ["v2"] and not results["complete"]
    assert results["runs"][0]["counters"]["writes"] > 0
    assert store.both() == (before_v3, before_v2)


def test_each_shard_checks_its_own_keys_and_counts_its_peers_keys_as_the_runs(
    store: Store, prefix: str
) -> None:
    shard0, shard1 = (config_of(prefix, "--shard", f"{i}/2") for i in range(2))
    store.put(sorted(written_keys(shard1))[0], b"a peer's key, or someone's named like it")
    keys = V3Backend(Endpoint((store.url,)))
    try:
        OwnKeys(shard0).claim(keys, store.url, beside_others=False)  # the run's, not someone else's
        with pytest.raises(UsageError, match=r"^--prefix: 1 of the keys this run would write exist"):
            OwnKeys(shard1).claim(keys, store.url, beside_others=True)  # whose name shard 1 writes
    finally:
        keys.close()


def test_a_capacity_search_leaves_every_foreign_key(store: Store, prefix: str) -> None:
    seed_foreign(store, prefix)
    before = store.v3()[1]
    code, out, err = run_cli(
        "capacity", "--endpoints", store.url, "--prefix", prefix, "--force", "--json", "--start", "40",
        "--duration", "1", "--warmup", "0", "--objects", "6", "--drain", "2", "--budget", "4s",
    )  # fmt: skip
    assert code in (0, 1), err
    assert len(json.loads(out)["runs"]) >= 1
    assert store.v3()[1] == before


# ------------------------------------------------------------------------------------ refused up front

REFUSALS = [
    (["--prefix", "/"], "--prefix: '/' is the root of every key"),
    (["--prefix", "/registry/"], "--allow-registry-prefix"),
    (["--prefix", "/registry/pods/"], "--allow-registry-prefix"),
    (["--prefix", "PREFIX", "--fault", "compact@0.5"], "--allow-disruptive-faults"),
    (["--prefix", "PREFIX", "--fault", "defrag@0.5"], "--allow-disruptive-faults"),
    (["--prefix", "PREFIX", "--fault", "compact@0.5", "--backend", "v2"], "--fault compact@0.5: acts on"),
    (["--prefix", "PREFIX", "--shard", "0/2"], "--run-id: the 2 shards meet under a run id"),
    (["--prefix", "PREFIX", "--shard", "0/2", "--run-id", "no spaces"], "--run-id: 'no spaces' is not"),
]


@pytest.mark.parametrize(("argv", "names"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
@pytest.mark.usefixtures("no_embedded_etcd")
def test_dangerous_input_on_an_external_etcd_is_one_line_and_writes_nothing(
    store: Store, prefix: str, argv: list[str], names: str
) -> None:
    argv = [prefix if a == "PREFIX" else a for a in argv]
    before = store.v3(), store.v2()
    code, out, err = run_cli("watch", "--endpoints", store.url, *SMALL, *argv, "--json")
    assert (code, out) == (EXIT_USAGE, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and names in err, err
    assert (store.v3(), store.v2()) == before  # same revision: not one key written


# ------------------------------------------------------------------------------------ meeting keys


def test_shards_meet_under_their_run_id_and_remove_their_keys(store: Store, prefix: str) -> None:
    run_id = f"meet-{uuid.uuid4().hex[:8]}"
    endpoint = Endpoint((store.url,))
    shards = [Barrier(endpoint, prefix, run_id, i, 2, timeout_s=60) for i in range(2)]
    starts: list[int] = []
    threads = [threading.Thread(target=lambda b=b: starts.append(b.start_ns())) for b in shards]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(starts) == 2
    mine = [k for k in store.v3()[1] if k.startswith(f"{BARRIER_PREFIX}{run_id}/")]
    assert len(mine) == 2
    shards[1].close()  # shard 1 failed and left: shard 0 does not wait for it
    shards[0].finish()
    shards[0].close()
    assert not [k for k in store.v3()[1] if k.startswith(f"{BARRIER_PREFIX}{run_id}/")]

    again = Barrier(endpoint, prefix, run_id, 0, 1, timeout_s=60)
    stale = f"{again.root}ready/0"
    store.put(stale, b"1")  # this run id met before (a crashed run, within the lease)
    with pytest.raises(UsageError, match=f"^--run-id: shard 0 of run {run_id} has met before"):
        again.start_ns()
    again.close()
    assert store.v3()[1][stale][0] == b"1"  # not ours: left to its lease


def test_a_sigkilled_runs_data_dir_is_removed_by_the_next_run(tmp_path: Path) -> None:
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-m", "etcdbench", "watch", "--duration", "60", "--rate", "10", "--warmup", "0",
         "--objects", "5", "--json"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    data_dir = None
    deadline = time.monotonic() + 90
    while data_dir is None:
        assert proc.poll() is None and time.monotonic() < deadline
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                argv = child.cmdline()
            except psutil.Error:
                continue
            if "--data-dir" in argv:
                data_dir, etcd = Path(argv[argv.index("--data-dir") + 1]).parent, child
        time.sleep(0.1)
    assert json.loads((data_dir / OWNER_FILE).read_text())["pid"] == proc.pid
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    psutil.wait_procs([etcd], timeout=30)  # it follows its parent (parent-death signal)
    assert data_dir.exists()
    with LocalEtcd(find_etcd_binary()):  # the next run
        assert not data_dir.exists()
