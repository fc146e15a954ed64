"""Tests of ``unetseg.core.threads``."""

from __future__ import annotations

import pytest

from unetseg.core.errors import UnetsegError


def test_prefetch_keeps_order_raises_errors_and_stops_early() -> None:
    import threading

    from unetseg.core.threads import Prefetch

    assert list(Prefetch(iter(range(100)), depth=3)) == list(range(100))

    def broken():
        yield 1
        raise UnetsegError("x.wav: cannot decode audio")

    with pytest.raises(UnetsegError, match="x.wav"):
        list(Prefetch(broken()))
    made = []

    def endless():
        n = 0
        while True:
            made.append(n)
            yield n
            n += 1

    before = threading.active_count()
    for n in Prefetch(endless(), depth=2):
        if n == 5:
            break
    assert threading.active_count() == before and len(made) <= 5 + 4  # the thread stopped, a few items ahead


def test_behind_keeps_order_and_raises_the_workers_error() -> None:
    from unetseg.core.threads import Behind

    seen: list[int] = []
    behind = Behind(seen.append)
    for i in range(50):
        behind.put(i)
    behind.finish()
    assert seen == list(range(50))

    def fails(item: int) -> None:
        if item == 3:
            raise UnetsegError("events: broken")

    behind = Behind(fails)
    with pytest.raises(UnetsegError, match="broken"):
        for i in range(10):
            behind.put(i)
        behind.finish()
