"""The command line on a real etcd: refusals that need one (no v2, a prefix in use), the default prefix
on an external etcd, and a small scenario run with exact counts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cli_console import etcdbench, run_cli, tiny_scenario

from etcdbench.bench import target
from etcdbench.etcd.local import LocalEtcd
from etcdbench.results.io import load


def test_v2_run_against_etcd_without_v2_is_one_clear_error(tmp_path: Path) -> None:
    from etcdbench.etcd import LocalEtcd, find_etcd_binary

    with LocalEtcd(find_etcd_binary(), enable_v2=False) as server:
        proc = etcdbench(
            "watch", "--backend", "v2", "--endpoints", server.client_url, "--duration", "1", cwd=tmp_path
        )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        f"error: etcd at {server.client_url} does not serve the v2 API: start it with --enable-v2=true"
    ]
    assert not (tmp_path / "results").exists()


def test_non_empty_prefix_on_external_etcd_is_refused(etcd_server: object, tmp_path: Path) -> None:
    from etcdbench.backends.base import Endpoint
    from etcdbench.backends.v3 import V3Backend
    from etcdbench.etcd import LocalEtcd

    assert isinstance(etcd_server, LocalEtcd)
    prefix = "/etcdbench-test/occupied/"
    admin = V3Backend(Endpoint((etcd_server.client_url,)))
    acked = threading.Event()
    admin.put_async(prefix + "someone-elses-key", b"x", lambda exc: acked.set())
    assert acked.wait(10)
    admin.close()
    proc = etcdbench(
        "watch", "--endpoints", etcd_server.client_url, "--prefix", prefix, "--duration", "1", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: --prefix: {prefix} already holds 1 keys")
    check = V3Backend(Endpoint((etcd_server.client_url,)))
    assert check.count_prefix(prefix) == 1  # untouched
    check.close()


def test_external_etcd_gets_etcdbench_own_prefix_by_default(etcd_server: object, tmp_path: Path) -> None:
    from etcdbench.backends.base import Endpoint
    from etcdbench.backends.v3 import V3Backend
    from etcdbench.etcd import LocalEtcd

    assert isinstance(etcd_server, LocalEtcd)
    admin = V3Backend(Endpoint((etcd_server.client_url,)))
    acked = threading.Event()
    admin.put_async("/registry/pods/default/a-real-pod", b"k8s data", lambda exc: acked.set())
    assert acked.wait(10)
    proc = etcdbench(
        "watch", "--endpoints", etcd_server.client_url, "--rate", "50", "--duration", "1", "--warmup", "0",
        "--objects", "5", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr  # PASS or FAIL: a loaded host may change the verdict
    run = json.loads(proc.stdout)["runs"][0]
    assert run["verdict"]["pass"] == (proc.returncode == 0)
    assert run["config"]["prefix"] == "/etcdbench/registry/"
    assert run["counters"]["received"] == 50
    assert admin.get_prefix("/registry/") == {"/registry/pods/default/a-real-pod": b"k8s data"}  # untouched
    assert admin.count_prefix("/etcdbench/") == 0  # and ours is gone
    admin.delete_prefix("/registry/")
    admin.close()


def test_run_two_cells_on_the_embedded_etcd(tmp_path: Path) -> None:
    out_path = tmp_path / "r.json"
    code, out, _ = run_cli("run", str(tiny_scenario(tmp_path)), "--output", str(out_path))
    results = load(out_path)
    assert results["complete"] and len(results["runs"]) == 2
    assert results["scenario"]["name"] == "tiny" and results["scenario"]["run"]["rate"] == 100.0
    for run in results["runs"]:
        c = run["counters"]
        assert c["written"] == c["received"] == 150  # 100/s over 0.5 s + 1 s
        assert c["missed"] == c["errors"] == 0
    assert [r["backend"] for r in results["runs"]] == ["v3", "v2"]
    assert code == (0 if all(r["verdict"]["pass"] for r in results["runs"]) else 1)
    assert "2 of 2 runs passed." in out or code == 1


@pytest.mark.parametrize("fresh", [False, True])
def test_fresh_etcd_starts_a_new_embedded_etcd_for_every_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: bool
) -> None:
    started: list[LocalEtcd] = []

    class Recorded(LocalEtcd):  # the real etcd, each start recorded
        def __enter__(self) -> Recorded:
            super().__enter__()
            started.append(self)
            return self

    monkeypatch.setattr(target, "LocalEtcd", Recorded)
    out_path = tmp_path / "r.json"
    argv = ["run", str(tiny_scenario(tmp_path)), "--output", str(out_path)]
    run_cli(*argv, *(["--fresh-etcd"] if fresh else []))
    runs = load(out_path)["runs"]
    assert len(started) == (2 if fresh else 1)
    for run in runs:  # each cell's books as exact on its own etcd
        assert run["counters"]["written"] == run["counters"]["received"] == 150


def test_fresh_etcd_refuses_an_external_etcd(tmp_path: Path) -> None:
    scenario = str(tiny_scenario(tmp_path))
    code, _, err = run_cli("run", scenario, "--fresh-etcd", "--endpoints", "http://127.0.0.1:1")
    assert code == 2 and "--fresh-etcd: starts a new embedded etcd for every cell" in err
