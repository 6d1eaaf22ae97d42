"""Safety checks that need no etcd: dangerous input refused before anything starts, the prefix rules and
their opt-ins, the run id, and stale data dirs of dead runs removed while live ones are kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_console import run_cli

from etcdbench.bench.target import Target, check_prefix
from etcdbench.config.run import RunConfig
from etcdbench.errors import EXIT_USAGE, UsageError
from etcdbench.etcd.barrier import resolve_run_id
from etcdbench.etcd.local import DATA_DIR_PREFIX, OWNER_FILE, _owner, remove_stale_data_dirs


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["watch", "--shard", "0/2"], "--shard: 0/2: shards meet in the etcd they share"),
        (["watch", "--fault", "defrag@0.5", "--backend", "v2"], "--fault defrag@0.5: acts on"),
        (["capacity", "--endpoints", "http://127.0.0.1:9", "--prefix", "/"], "--prefix: '/'"),
        (["run", "SCENARIO", "--endpoints", "http://127.0.0.1:9", "--prefix", "/registry/"], "--allow-regis"),
        (["run", "SCENARIO", "--endpoints", "http://127.0.0.1:9", "--prefix", "/e/"], "--allow-disruptive"),
    ],
)
@pytest.mark.usefixtures("no_embedded_etcd")
def test_refusals_come_before_anything_starts(argv: list[str], names: str, tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"  # the second cell compacts
    scenario.write_text(
        '[run]\nrate = 40\nduration_s = 1\n[matrix]\nvariants = [{objects = 5}, {faults = ["compact@0.5"]}]\n'
    )
    argv = [str(scenario) if a == "SCENARIO" else a for a in argv]
    code, out, err = run_cli(*argv, "--output", str(tmp_path / "r.json"))
    assert (code, out) == (EXIT_USAGE, "")
    assert err.count("\n") == 1 and names in err, err
    assert not (tmp_path / "r.json").exists()


def test_a_scenario_on_an_external_etcd_writes_under_etcdbench_own_prefix(tmp_path: Path) -> None:
    from etcdbench.cli.app import build_parser
    from etcdbench.cli.run import _scenario

    scenario = tmp_path / "s.toml"
    scenario.write_text("[run]\nrate = 40\nduration_s = 1\n")
    external = build_parser().parse_args(["run", str(scenario), "--endpoints", "http://127.0.0.1:9"])
    assert [c.prefix for c in _scenario(external).cells] == ["/etcdbench/registry/"]
    embedded = build_parser().parse_args(["run", str(scenario)])
    assert [c.prefix for c in _scenario(embedded).cells] == ["/registry/"]


def test_opt_ins_allow_what_they_name() -> None:
    target = Target(
        endpoints=["http://127.0.0.1:9"],
        allow_registry_prefix=True,
        allow_disruptive_faults=True,
        run_id="r1",
    )
    target.check(RunConfig(prefix="/registry/", faults=("compact@1", "defrag@2"), shard=1, shards=2))
    with pytest.raises(UsageError, match=r"^--prefix: '/'"):
        target.check(RunConfig(prefix="/"))  # the root: never, whatever the flags
    embedded = Target(endpoints=None)
    embedded.check(RunConfig(prefix="/registry/", faults=("compact@1",)))  # the embedded etcd is ours


@pytest.mark.parametrize("prefix", ["/etcdbench/registry/", "/registryx/", "/reg/istry/", "/a/registry/"])
def test_prefixes_beside_kubernetes_are_allowed(prefix: str) -> None:
    check_prefix(prefix, external=True, allow_registry=False)


def test_run_id_comes_from_the_flag_then_the_environment() -> None:
    assert resolve_run_id("a", 2, {"ETCDBENCH_RUN_ID": "b"}) == "a"
    assert resolve_run_id(None, 2, {"ETCDBENCH_RUN_ID": "3f0e5c2a-1b2c-4d5e-8f90-0123456789ab"}).startswith(
        "3f0e"
    )
    assert resolve_run_id(None, 1, {}) == ""
    with pytest.raises(UsageError, match=r"^ETCDBENCH_RUN_ID: 'a/b' is not"):
        resolve_run_id(None, 2, {"ETCDBENCH_RUN_ID": "a/b"})


def _fake_dir(tmp: Path, name: str, owner: dict[str, Any] | None) -> Path:
    path = tmp / f"{DATA_DIR_PREFIX}{name}"
    (path / "data").mkdir(parents=True)
    if owner is not None:
        (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def test_data_dirs_of_dead_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = _owner()
    dirs = {
        "dead": _fake_dir(tmp_path, "dead", {**me, "pid": dead.pid, "start": None}),
        "reused pid": _fake_dir(tmp_path, "reused", {**me, "start": "1"}),  # our pid, another start
        "rebooted": _fake_dir(tmp_path, "rebooted", {**me, "boot": "another-boot"}),
        "live": _fake_dir(tmp_path, "live", me),
        "other namespace": _fake_dir(tmp_path, "ns", {**me, "pid": dead.pid, "pid_namespace": "pid:[1]"}),
        "no owner file": _fake_dir(tmp_path, "old", None),
    }
    other = tmp_path / "not-etcdbench"
    other.mkdir()
    removed = remove_stale_data_dirs(str(tmp_path))
    assert sorted(removed) == sorted(str(dirs[k]) for k in ("dead", "reused pid", "rebooted"))
    assert {k for k, p in dirs.items() if p.exists()} == {"live", "other namespace", "no owner file"}
    assert other.exists()
