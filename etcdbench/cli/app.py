"""The command line: the parser, dispatch to the commands, `run(argv, out, err)` -> exit code, `main`.

cli/ is the only package that prints or decides an exit code. Library code raises; each command
(watch.py, run.py, archive.py) prints through the consoles it is given and returns its exit code;
`run` turns an EtcdbenchError into one `error:` line and its code; `main` returns the code for the
console script (or `python -m etcdbench`) to exit with.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from typing import Any, NoReturn

from rich.console import Console

from etcdbench import __version__
from etcdbench.cli.archive import register as register_archive_commands
from etcdbench.cli.execute import EXIT_CODES
from etcdbench.cli.run import register as register_run_commands
from etcdbench.cli.watch import register as register_watch_commands
from etcdbench.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EtcdbenchError, UsageError
from etcdbench.interrupt import Interrupted
from etcdbench.interrupt import install as install_interrupt_handlers


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits on its own; we want one line and our exit code.

    No abbreviations: `--pass=X` would otherwise be matched against `--password-file` (and echoed
    whole when ambiguous), and a flag added later would silently change what an abbreviation means.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(redact_argparse(message, _known_flags(self)))

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse drops a '--' value ('--writers=--') and hands the flag an empty list, unchecked.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return super()._get_values(action, arg_strings)


def _closest(flag: str, known: list[str]) -> str | None:
    """The flag a mistyped or shortened `flag` most likely meant."""
    longer = [k for k in known if k.startswith(flag)]
    if longer:
        return longer[0]
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _known_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every documented flag of `parser` and its subcommands (the top parser reports their leftovers)."""
    flags: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                flags.extend(f for f in _known_flags(sub) if f not in flags)
        elif action.help != argparse.SUPPRESS:
            flags.extend(f for f in action.option_strings if f not in flags)
    return flags


_UNRECOGNIZED = "unrecognized arguments: "
_FLAG_VALUE = re.compile(r"(--?[A-Za-z0-9][\w-]*)=\S*")


def redact_argparse(message: str, known: list[str] | None = None) -> str:
    """An argparse error without the values it would echo: a stray word or a `--flag=value` may be a
    password typed in the wrong place. Flag names are kept (with the flag meant, when one is close);
    values are counted, not shown."""
    if message.startswith(_UNRECOGNIZED):
        words = message.removeprefix(_UNRECOGNIZED).split()
        flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
        values = sum(1 for w in words if not w.startswith("-") or "=" in w)
        shown = " ".join(flags)
        if values:
            shown += (" " if flags else "") + f"({values} value(s) not echoed: one may be a secret)"
        close = [c for f in flags if (c := _closest(f, known or [])) is not None]
        hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
        return f"unrecognized arguments: {shown}{hint}"
    return _FLAG_VALUE.sub(r"\1=…", message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="etcdbench",
        description="Can one etcd watcher keep up with a Kubernetes cluster?",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"etcdbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.set_defaults(
        handlers={
            **register_watch_commands(sub),
            **register_archive_commands(sub),
            **register_run_commands(sub),
        }
    )
    return parser


def run(argv: list[str] | None, out: Console, err: Console) -> int:
    """Parse and run one command; an EtcdbenchError becomes one line on `err` and its exit code."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.handlers[args.command](args, out, err))
    except EtcdbenchError as exc:
        err.print(f"error: {one_line(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code


def one_line(message: str) -> str:
    """`message` with what would break the line or drive the terminal (a value may hold a newline or
    an escape sequence) shown escaped, as repr() would."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def main(argv: list[str] | None = None) -> int:
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    install_interrupt_handlers()  # SIGINT and SIGTERM unwind through every `finally`
    try:
        return run(argv, out, err)
    except KeyboardInterrupt as exc:
        by = f" by {exc.signal}" if isinstance(exc, Interrupted) else ""
        err.print(f"interrupted{by}: etcd and child processes stopped", markup=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_RUNTIME


__all__ = ["main", "run"]
