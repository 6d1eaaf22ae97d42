"""Ctrl-C and SIGTERM: the first stops a run and keeps what it measured, the next one gives that up.

`install()` (the CLI does it) makes SIGINT and SIGTERM raise `Interrupted`, a KeyboardInterrupt that
knows its signal and when it came. A run that catches it asks its processes for their books (a bounded
wait) and attaches the partial run as `partial`; a second signal during that wait raises again and
abandons it. Cleanup (children, etcd, its data dir) runs `shielded()`: a signal there is held until the
cleanup is done, so a quick second Ctrl-C cannot leave an etcd or a data dir behind. What a `with`
block starts and must stop (a local etcd, a cluster, the delay proxy) is a `ChildProcesses`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from types import FrameType, TracebackType
from typing import Self

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM. `partial`: the run measured until then (marked incomplete), if any."""

    def __init__(self, signum: int = signal.SIGINT, *, repeated: bool = False) -> None:
        self.signal = signal.Signals(signum).name
        self.at_ns = time.monotonic_ns()
        self.repeated = repeated  # a second signal: the partial results were given up
        self.partial: object = None  # a results.model.Run (results is a later stage than this module)
        super().__init__(self.signal)


class _State:
    count = 0  # signals received since install()
    shield = 0  # depth of shielded() sections
    held: int | None = None  # a signal that came inside a shielded section


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    _state.count += 1
    if _state.shield:
        _state.held = _state.held or signum
        return
    raise Interrupted(signum, repeated=_state.count > 1)


def install() -> None:
    """Handle SIGINT and SIGTERM as above (from the main thread; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.count, _state.shield, _state.held = 0, 0, None
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """`exc` itself, or an Interrupted for a KeyboardInterrupt raised without our handler."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


@contextmanager
def shielded(*, collecting: bool = False) -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done; then raise for a held one, unless the block is
    the cleanup of an exception already under way. `collecting`: raise it even then (the handler of
    a first interrupt gathering the partial run, which a second one gives up)."""
    _state.shield += 1
    try:
        yield
    except BaseException:
        _state.shield -= 1
        if not _state.shield:
            _state.held = None
        raise
    _state.shield -= 1
    if not _state.shield and _state.held is not None:
        signum, _state.held = _state.held, None
        if collecting or sys.exc_info()[1] is None:  # else: cleanup of an exception that goes on anyway
            raise Interrupted(signum, repeated=_state.count > 1)


def start_child(proc: BaseProcess) -> None:
    """Start a child process with SIGINT ignored, which it inherits (kept across exec): a terminal's
    Ctrl-C reaches the whole process group, but only the parent should act on it, by stopping its
    children in order. (Handlers can only be changed from the main thread.)"""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        proc.start()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)


class ChildProcesses(ABC):
    """Processes this one starts and must stop however it ends (a local etcd, a cluster of them, the
    delay proxy): `with` starts them, and leaving the block stops them, by an exception or a Ctrl-C too."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Stop every process; idempotent, and safe before start."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
