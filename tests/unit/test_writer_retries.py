"""Retries of failed writes: one thread per writer, in due order, with jittered backoff."""

from __future__ import annotations

import threading

from etcdbench.workload.writer import RETRY_BASE_S, RETRY_MAX_S, _Retries


def test_retries_run_in_due_order_on_one_thread() -> None:
    retries = _Retries(seed=0)
    ran: list[tuple[str, str]] = []
    done = threading.Event()

    def action(name: str) -> None:
        ran.append((name, threading.current_thread().name))
        if len(ran) == 4:
            done.set()

    retries.after(0.03, lambda: action("a"))
    retries.after(0.01, lambda: action("b"))
    retries.after(0.02, lambda: action("c"))
    retries.after(0.01, lambda: action("d"))  # same wait as b, scheduled after it: runs after it
    assert done.wait(10)
    retries.close()
    assert [name for name, _ in ran] == ["b", "d", "c", "a"]
    assert {thread for _, thread in ran} == {"retries"}  # no thread per retry


def test_backoff_doubles_to_its_cap_with_jitter_of_half_either_way() -> None:
    retries = _Retries(seed=1)
    try:
        for attempt in range(10):
            backoff = min(RETRY_BASE_S * 2**attempt, RETRY_MAX_S)
            for _ in range(50):
                assert 0.5 * backoff <= retries.delay(attempt) <= 1.5 * backoff
        assert len({round(retries.delay(9), 6) for _ in range(20)}) > 1  # jittered, not lockstep
    finally:
        retries.close()


def test_two_writers_do_not_retry_in_lockstep() -> None:
    a, b = _Retries(seed=0), _Retries(seed=1)
    try:
        assert [a.delay(3) for _ in range(5)] != [b.delay(3) for _ in range(5)]
    finally:
        a.close()
        b.close()


def test_close_ends_the_thread_with_retries_still_waiting() -> None:
    retries = _Retries(seed=0)
    ran = threading.Event()
    retries.after(60, ran.set)
    retries.close()
    assert not retries._thread.is_alive() and not ran.is_set()
