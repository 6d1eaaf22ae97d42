"""The package's arrows go one way (docs/architecture.md): each stage imports only the stages below it,
no module imports itself back through another, and only backends/ knows which etcd API it talks to."""

from __future__ import annotations

import ast
from pathlib import Path

from paths import ROOT

PACKAGE = ROOT / "etcdbench"

# Lowest first. A module may import its own stage and any stage before it, never one after it.
STAGES = (
    ("errors", "interrupt"),
    ("config",),
    ("encoding",),
    ("backends",),
    ("metrics",),
    ("results",),
    ("network",),
    ("etcd",),
    ("workload",),
    ("bench",),
    ("report",),
    ("cli", "__main__"),
)
ROOT_MODULE = ("__init__",)  # etcdbench/__init__.py: the version, importable from anywhere
GENERATED = "_pb"  # protobuf modules generated from proto/: below everything


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if GENERATED in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The etcdbench modules `name` imports (relative imports resolved), at any depth of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            candidates = [base, *(f"{base}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        out.update(c for c in candidates if c in modules and c != name)
    return out


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if module == "etcdbench":
        return None
    top = parts[1]
    if top in ROOT_MODULE or top == GENERATED:
        return None
    for i, names in enumerate(STAGES):
        if top in names:
            return i
    raise AssertionError(f"{module}: not in any stage of docs/architecture.md; add its folder to STAGES")


def test_every_stage_imports_only_the_stages_below_it() -> None:
    modules = _modules()
    wrong = []
    for name, path in sorted(modules.items()):
        own = _stage(name)
        for dep in sorted(_imports(name, path, modules)):
            theirs = _stage(dep)
            if own is not None and theirs is not None and theirs > own:
                wrong.append(f"{name} imports {dep}")
    assert wrong == []


def test_no_module_imports_itself_back() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles = []

    def visit(node: str, trail: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*trail, nxt], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert cycles == []


def test_only_backends_name_the_v2_and_v3_implementations() -> None:
    named = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("backends", GENERATED):
            continue
        text = path.read_text()
        named += [f"{rel}: {word}" for word in ("V3Backend", "V2Backend") if word in text]
    assert named == []


def test_the_checker_sees_a_violation() -> None:
    """The checks above are not vacuous: the real tree has imports, and a reversed arrow is caught."""
    modules = _modules()
    assert len(modules) > 40
    assert "etcdbench.config.run" in _imports(
        "etcdbench.workload.runner", modules["etcdbench.workload.runner"], modules
    )
    assert _stage("etcdbench.cli.app") > _stage("etcdbench.results.io")  # type: ignore[operator]
