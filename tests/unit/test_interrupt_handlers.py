"""The signal handling itself (etcdbench.interrupt): which signal, a held signal in cleanup, a second one."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from etcdbench.interrupt import Interrupted, as_interrupted, install, shielded


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    install()
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_sigterm_raises_an_interrupt_that_names_it(handlers: None) -> None:
    with pytest.raises(Interrupted) as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # delivered before this returns; never reached otherwise
    assert caught.value.signal == "SIGTERM" and not caught.value.repeated
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.partial is None
    with pytest.raises(Interrupted) as again:
        os.kill(os.getpid(), signal.SIGINT)
        signal.pause()
    assert again.value.signal == "SIGINT" and again.value.repeated


def test_a_signal_in_a_shielded_block_is_raised_when_it_ends(handlers: None) -> None:
    done = []
    with pytest.raises(Interrupted) as caught:
        with shielded(), shielded():  # nested: raised once, at the outer end
            os.kill(os.getpid(), signal.SIGINT)
            done.append("cleanup")
        done.append("after")
    assert done == ["cleanup"] and caught.value.signal == "SIGINT"


def test_a_shielded_cleanup_of_an_interrupt_keeps_that_interrupt(handlers: None) -> None:
    first = Interrupted(signal.SIGINT)
    first.partial = {"label": "partial run"}
    with pytest.raises(Interrupted) as caught:
        try:
            raise first
        finally:
            with shielded():
                os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while etcd is being stopped
    assert caught.value is first and caught.value.partial == {"label": "partial run"}


def test_a_plain_keyboard_interrupt_counts_as_sigint() -> None:
    assert as_interrupted(KeyboardInterrupt()).signal == "SIGINT"
    mine = Interrupted(signal.SIGTERM)
    assert as_interrupted(mine) is mine


def test_a_second_signal_while_collecting_is_raised_even_in_the_handler(handlers: None) -> None:
    with pytest.raises(Interrupted) as caught:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.pause()
        except Interrupted:
            with shielded(collecting=True):
                os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.signal == "SIGTERM" and caught.value.repeated
