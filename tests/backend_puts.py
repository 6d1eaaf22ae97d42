"""Puts through an etcdbench backend, as a writer sends them, with every acknowledgement awaited; and
what a v3 prefix holds, read back."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from etcdbench.backends.base import Backend, Endpoint
from etcdbench.backends.v3 import V3Backend


def put_all(backend: Backend, items: Iterable[tuple[str, str | bytes]], *, ordered: bool = True) -> None:
    """Write items and wait for every acknowledgement; ordered=True waits for each before the next.
    None may fail."""
    errors: list[BaseException] = []
    done = threading.Semaphore(0)

    def on_done(exc: BaseException | None) -> None:
        if exc is not None:
            errors.append(exc)
        done.release()

    sent = 0
    for key, value in items:
        backend.put_async(key, value.encode() if isinstance(value, str) else value, on_done)
        sent += 1
        if ordered:
            assert done.acquire(timeout=10)
    backend.flush()
    if not ordered:
        for _ in range(sent):
            assert done.acquire(timeout=60)
    assert not errors, errors[:3]


def v3_values(url: str, prefix: str) -> dict[str, bytes]:
    """Every key under prefix and its value, read through the v3 backend."""
    backend = V3Backend(Endpoint((url,)))
    try:
        return backend.get_prefix(prefix)
    finally:
        backend.close()
