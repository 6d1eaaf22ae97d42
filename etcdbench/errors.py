"""Typed errors. Library code raises these; only the CLI turns them into a message and an exit code."""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
# Ctrl-C or SIGTERM (either: 128 + SIGINT, as shells report a Ctrl-C), whether or not partial results
# were written.
EXIT_INTERRUPTED = 130


class EtcdbenchError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = EXIT_RUNTIME


class UsageError(EtcdbenchError):
    """Bad flag, bad file, bad value: the user must change the input."""

    exit_code = EXIT_USAGE


class EtcdError(EtcdbenchError):
    """etcd could not be started, reached or used."""

    exit_code = EXIT_RUNTIME
