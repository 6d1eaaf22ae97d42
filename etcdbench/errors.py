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
    """Bad flag, bad file, bad value: the user must change the input.

    `field`: the RunConfig field the bad value is for, when there is one. The message names it the
    command line's way (`--duration: must be > 0`) and `reason` is what follows that name, so that a
    scenario file can name its own key instead (`run.duration_s: must be > 0`).
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.reason = message if reason is None else reason


class EtcdError(EtcdbenchError):
    """etcd could not be started, reached or used."""

    exit_code = EXIT_RUNTIME
