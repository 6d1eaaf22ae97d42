"""deploy/'s files read, not run: the Dockerfile and its context, the compose etcds' flags and versions,
the CI workflow's gate and baseline, the Kubernetes Job's shards (run for real:
tests/integration/test_deploy.py)."""

from __future__ import annotations

import yaml
from cli_console import run_cli
from deploy_files import (
    DEPLOY,
    DOCS,
    EMBEDDED_VERSION,
    MIN_EVENTS_FOR_P99,
    etcdbench_commands,
    k8s_expand,
    load_yaml,
    parses,
)
from paths import ROOT

from etcdbench.etcd.local import RETENTION_ARGS
from etcdbench.results.io import load


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
    services = load_yaml("compose.yaml")["services"]
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
    workflow = load_yaml("github-workflow-example.yml")
    env = {k: str(v) for k, v in workflow["env"].items()}
    commands = [
        c
        for job in workflow["jobs"].values()
        for s in job["steps"]
        for c in etcdbench_commands(s.get("run", ""), env)
    ]
    for argv in commands:
        parses(argv, "github-workflow-example.yml")
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
        parses([k8s_expand(a, values | {"JOB_COMPLETION_INDEX": str(index)}) for a in args], "k8s Job")
    text = DOCS.read_text()
    assert 'kubectl logs "$(kubectl get pods' not in text
    assert "from Kubernetes\n1.28" in text or "from Kubernetes 1.28" in text
