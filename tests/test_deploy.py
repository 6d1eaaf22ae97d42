"""deploy/: the container, compose, CI and Kubernetes files cannot run here (no container engine), so
they are checked for shape, and every etcdbench command they run must parse with today's CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from etcdbench.cli import build_parser
from etcdbench.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _yaml(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(data, dict), name
    return data


def _parses(argv: list[str], where: str) -> None:
    """The command must parse; a scenario file it names must exist in the repository."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        if "--shard" in argv and "--shard" in str(exc):
            pytest.fail(f"{where}: `etcdbench watch --shard I/N` is not in the CLI yet: {exc}")
        pytest.fail(f"{where}: etcdbench {shlex.join(argv)}: {exc}")
    scenario = getattr(args, "scenario", None)
    if scenario is not None:
        assert (ROOT / scenario).is_file(), f"{where}: {scenario} does not exist"


def _commands(script: str) -> list[list[str]]:
    """The etcdbench command lines of a shell script (continuation lines joined)."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "etcdbench":
            out.append(words[1:])
    return out


def test_dockerfile_installs_the_project_and_runs_etcdbench() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert any(ln.startswith("RUN pip install") for ln in instructions)
    assert 'ENTRYPOINT ["etcdbench"]' in instructions
    for ln in instructions:
        if ln.startswith("COPY "):
            for source in ln.split()[1:-1]:  # the build context is the repository root
                assert (ROOT / source).exists(), ln


def test_compose_runs_the_scenario_against_etcd_34_and_35_with_v2() -> None:
    compose = _yaml("compose.yaml")
    services = compose["services"]
    etcds = {name: s for name, s in services.items() if "coreos/etcd" in s.get("image", "")}
    versions = {s["image"].rsplit(":", 1)[1].rsplit(".", 1)[0] for s in etcds.values()}
    assert versions == {"v3.4", "v3.5"}
    for name, etcd in etcds.items():
        assert "--enable-v2=true" in etcd["command"], name
        assert "healthcheck" in etcd, name
    benches = {name: s for name, s in services.items() if "build" in s}
    targets = set()
    for name, bench in benches.items():
        assert (ROOT / "deploy" / bench["build"]["context"] / bench["build"]["dockerfile"]).is_file()
        argv = [str(a) for a in bench["command"]]
        _parses(argv, f"compose.yaml {name}")
        assert argv[:2] == ["run", "scenarios/v2-vs-v3.toml"]
        url = argv[argv.index("--endpoints") + 1]
        host = re.match(r"http://([^:]+):2379$", url)
        assert host and host.group(1) in etcds, url
        assert host.group(1) in bench["depends_on"], name
        targets.add(host.group(1))
    assert targets == set(etcds)


def test_workflow_runs_a_small_scenario_and_gates_on_compare() -> None:
    workflow = _yaml("github-workflow-example.yml")
    assert "on" in workflow or True in workflow  # YAML 1.1 reads a bare `on` key as true
    commands = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            commands += _commands(step.get("run", ""))
    assert commands, "no etcdbench command"
    for argv in commands:
        _parses(argv, "github-workflow-example.yml")
    run = next(a for a in commands if a[0] == "run")
    assert "--scale" in run
    gate = next(a for a in commands if a[0] == "compare")
    assert gate[1:3] == ["baseline.json", "new.json"]
    rules = [gate[i + 1] for i, a in enumerate(gate) if a == "--fail-if"]
    assert rules == ["watch.p99 > +10%", "missed > 0"]


def test_k8s_job_runs_one_shard_per_completion_index() -> None:
    job = _yaml("k8s-sharded-job.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    assert spec["parallelism"] == n  # the shards meet before they start: all must run at once
    (container,) = spec["template"]["spec"]["containers"]
    assert "command" not in container  # the image's entrypoint is etcdbench
    assert any(e["name"] == "JOB_COMPLETION_INDEX" for e in container["env"])
    args = [str(a) for a in container["args"]]
    assert args[0] == "watch"
    shard = args[args.index("--shard") + 1]
    assert shard == f"$(JOB_COMPLETION_INDEX)/{n}"
    for index in range(n):
        _parses([a.replace("$(JOB_COMPLETION_INDEX)", str(index)) for a in args], "k8s-sharded-job.yaml")
