"""Commands on archived results files: compare (and its regression gate), ls, export, plot, merge.

`register` adds their subparsers to the main parser and returns the handlers; app.py dispatches to them
like to the others. Handlers print only through the consoles they are given and return the exit code.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from etcdbench.cli.execute import verdict_code
from etcdbench.cli.flags import Handler
from etcdbench.errors import EXIT_FAIL, EXIT_PASS, UsageError
from etcdbench.report import archive
from etcdbench.report.compare import (
    Source,
    compare,
    comparison_dict,
    comparison_markdown,
    render,
    source_names,
)
from etcdbench.report.export import FORMATS, LATENCY_METRICS, PERFDASH_PREFIX, export, perfdash_artifacts
from etcdbench.report.gate import evaluate, gate_dict, gate_markdown, parse_rule, report
from etcdbench.results.io import check_writable, load_results, malformed, save

FAIL_IF_HELP = (
    "regression rule METRIC OP VALUE, e.g. 'watch.p99 > +10%%', 'watch_events_per_s < -5%%', 'missed > 0'; "
    "repeatable; exit 1 when one breaks (docs/compare-and-gate.md)"
)


def register(sub: argparse._SubParsersAction[Any]) -> dict[str, Handler]:
    c = sub.add_parser(
        "compare", help="compare results files side by side (the first is the baseline); --fail-if gates"
    )
    c.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="results files; the first is the baseline"
    )
    c.add_argument("--fail-if", action="append", default=[], metavar="RULE", help=FAIL_IF_HELP)
    form = c.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the comparison and the gate as JSON")
    form.add_argument("--markdown", action="store_true", help="print markdown tables (e.g. a PR comment)")

    ls = sub.add_parser("ls", help="list the results files in a directory, newest first")
    ls.add_argument("directory", nargs="?", type=Path, default=Path("results"), help="default: results")

    e = sub.add_parser("export", help="write a results file as .hgrm, perfdash JSON or per-second CSV")
    e.add_argument("file", type=Path)
    e.add_argument("--format", required=True, choices=FORMATS, help="hgrm (ms), perfdash (ms) or csv")
    e.add_argument(
        "--metric",
        choices=LATENCY_METRICS,
        help="histogram for hgrm (default watch); perfdash: only this one",
    )
    e.add_argument("--run", metavar="LABEL", help="only the run with this label (hgrm needs one run)")
    e.add_argument("--out", type=Path, metavar="PATH", help="write here instead of stdout")
    e.add_argument(
        "--artifacts",
        type=Path,
        metavar="DIR",
        help="perfdash: one file per metric into DIR, named PREFIX_OP_TIME.json, as perfdash finds them",
    )
    e.add_argument(
        "--perfdash-prefix",
        default=PERFDASH_PREFIX,
        metavar="PREFIX",
        help="file name prefix for --artifacts (default %(default)s, perfdash's etcdAPIBenchmark job type)",
    )

    p = sub.add_parser("plot", help="PNG plots and a self-contained report.html of results files")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for the PNGs and report.html"
    )

    m = sub.add_parser("merge", help="combine the results files of the shards of one run (--shard I/N)")
    m.add_argument("files", nargs="+", type=Path, metavar="FILE", help="one results file per shard")
    m.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.json", help="merged results file")

    return {
        "compare": _cmd_compare,
        "ls": _cmd_ls,
        "export": _cmd_export,
        "plot": _cmd_plot,
        "merge": _cmd_merge,
    }


def _sources(paths: list[Path]) -> list[Source]:
    return [
        Source(name, path, load_results(path)) for name, path in zip(source_names(paths), paths, strict=True)
    ]


def _cmd_compare(args: argparse.Namespace, out: Console, err: Console) -> int:
    rules = [parse_rule(text) for text in args.fail_if]  # a malformed rule fails before any file is read
    if not args.files:
        raise UsageError("compare: needs at least two results files (the first is the baseline)")
    sources = _sources(args.files)
    with malformed(*args.files):
        comparison = compare(sources)
        if args.json or args.markdown:
            checks = evaluate(rules, comparison) if rules else []
            if args.json:
                doc = comparison_dict(comparison)
                doc["gate"] = gate_dict(checks) if rules else None
                text = json.dumps(doc, indent=2, ensure_ascii=False)
            else:
                text = "\n".join(comparison_markdown(comparison) + (gate_markdown(checks) if rules else []))
        else:
            rendered = render(comparison)
    if args.json or args.markdown:
        out.out(text, highlight=False)
        return EXIT_FAIL if any(c.broken for c in checks) else EXIT_PASS
    out.print(rendered, soft_wrap=True)  # long lines stay whole for grep; tables fit the width
    if not rules:
        return EXIT_PASS
    with malformed(*args.files):
        checks = evaluate(rules, comparison)
    out.print()
    for line in report(checks):
        out.print(line, soft_wrap=True)
    return EXIT_FAIL if any(c.broken for c in checks) else EXIT_PASS


def _cmd_ls(args: argparse.Namespace, out: Console, err: Console) -> int:
    out.print(archive.render(archive.scan(args.directory)))
    return EXIT_PASS


def _write(path: Path, data: str | bytes, flag: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{flag}: {path} cannot be written ({exc.strerror})") from None


def _cmd_export(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.artifacts is not None:
        return _export_artifacts(args, out)
    if args.out is not None:
        check_writable(args.out, "--out")
    results = load_results(args.file)
    with malformed(args.file):
        text = export(results, args.format, metric=args.metric, label=args.run)
    if args.out is None:
        out.out(text, end="", highlight=False)
    else:
        _write(args.out, text, "--out")
        out.print(f"wrote {args.out}", markup=False, highlight=False)
    return EXIT_PASS


def _export_artifacts(args: argparse.Namespace, out: Console) -> int:
    if args.format != "perfdash":
        raise UsageError("--artifacts: only with --format perfdash")
    if args.out is not None:
        raise UsageError("--artifacts: writes one file per metric; drop --out")
    if args.artifacts.exists() and not args.artifacts.is_dir():
        raise UsageError(f"--artifacts: {args.artifacts} is not a directory")
    results = load_results(args.file)
    with malformed(args.file):
        files = perfdash_artifacts(results, args.perfdash_prefix, args.run, args.metric)
    if not files:
        raise UsageError(f"{args.file}: no latency recorded, no perfdash file to write")
    for name, text in files.items():
        _write(args.artifacts / name, text, "--artifacts")
        out.print(f"wrote {args.artifacts / name}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_PASS


def _cmd_merge(args: argparse.Namespace, out: Console, err: Console) -> int:
    from etcdbench.report.console import summary
    from etcdbench.results.merge import merge_files

    check_writable(args.output)
    with malformed(*args.files):  # refused before anything is written
        results = merge_files(args.files)
        shown = summary(results)
    save(args.output, results)
    out.print(shown)
    out.print(
        f"merged {len(args.files)} shards: {args.output}", markup=False, highlight=False, soft_wrap=True
    )
    return verdict_code(results.runs)


def _cmd_plot(args: argparse.Namespace, out: Console, err: Console) -> int:
    from etcdbench.report import plot  # matplotlib is imported only here, and only when installed

    plot.require_matplotlib()
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} is not a directory")
    sources = _sources(args.files)
    with malformed(*args.files):
        pngs = plot.render_pngs(sources)
        page = plot.html_report(sources, pngs)
    for name, png in pngs.items():
        _write(args.out / name, png, "--out")
        out.print(f"wrote {args.out / name}", markup=False, highlight=False)
    for name, what in plot.PLOTS.items():
        if name not in pngs:
            out.print(f"not drawn: {name}: no {what} in these files", markup=False, highlight=False)
    _write(args.out / "report.html", page, "--out")
    out.print(f"wrote {args.out / 'report.html'}", markup=False, highlight=False)
    return EXIT_PASS
