"""Requests that arrive together run as one batch; a bounded number wait, the rest are turned away."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import numpy as np


class Busy(Exception):
    """The queue is full: the caller answers 503 with Retry-After."""


class Budget:
    """At most ``limit`` units of work at once; a request that would pass it is turned away at once (``Busy``:
    503, Retry-After) rather than queued in memory. One request alone always runs. The server's memory
    budget counts bytes (the images being decoded, run and encoded; each checked against --max-pixels and
    the memory budget already); ``Admission`` counts requests."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.lock = limit, 0, threading.Lock()

    def acquire(self, need: int) -> None:
        with self.lock:
            if self.used and self.used + need > self.limit:
                raise Busy
            self.used += need

    def release(self, need: int) -> None:
        with self.lock:
            self.used -= need

    @contextmanager
    def take(self, need: int) -> Iterator[None]:
        self.acquire(need)
        try:
            yield
        finally:
            self.release(need)


class Admission(Budget):
    """At most ``limit`` requests inside the server (running or waiting) at a time."""

    @property
    def count(self) -> int:
        return self.used

    def __enter__(self) -> Admission:
        self.acquire(1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release(1)


class Batcher:
    """One worker thread runs ``forward(list of inputs) -> list of outputs`` on inputs that share a key
    (their prepared shape), taking up to ``max_batch`` that arrive within ``max_wait`` seconds of the first,
    or within ``max_hold`` while requests already inside the server (``arriving``: admitted, still being
    read or decoded) are on their way."""

    def __init__(self, forward: Callable[[list[Any]], list[Any]], max_batch: int = 8, max_wait: float = 0.005,
                 max_hold: float = 0.05) -> None:
        self.forward, self.max_batch, self.max_wait, self.max_hold = forward, max_batch, max_wait, max_hold
        self.arriving = 0
        self.count_lock = threading.Lock()
        self.inbox: queue.Queue[tuple[Any, Any, Future] | None] = queue.Queue()
        self.batches: list[int] = []  # sizes of the batches run (for tests and the load benchmark)
        self.thread = threading.Thread(target=self._loop, name="unetseg-batcher", daemon=True)
        self.thread.start()

    def expect(self, delta: int) -> None:
        """A request that will submit an input arrived (+1) or left without one (-1)."""
        with self.count_lock:
            self.arriving += delta

    def submit(self, key: Any, item: Any) -> Future:
        """Queue an input announced with ``expect(1)``; the future holds its output."""
        fut: Future = Future()
        self.expect(-1)
        self.inbox.put((key, item, fut))
        return fut

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        held: list[tuple[Any, Any, Future]] = []
        while True:
            first = held.pop(0) if held else self.inbox.get()
            if first is None:
                return
            group = [first]
            start = time.monotonic()
            while len(group) < self.max_batch:
                hold = self.max_hold if self.arriving > 0 else self.max_wait
                try:
                    nxt = self.inbox.get(timeout=max(0.0, start + hold - time.monotonic()))
                except queue.Empty:
                    if self.arriving > 0 and time.monotonic() - start < self.max_hold:
                        continue
                    break
                if nxt is None:
                    held.append(nxt)  # type: ignore[arg-type]
                    break
                (group if nxt[0] == first[0] else held).append(nxt)
            self.batches.append(len(group))
            try:
                outputs = self.forward([item for _, item, _ in group])
                for (_, _, fut), out in zip(group, outputs, strict=True):
                    fut.set_result(out)
            except BaseException as e:  # noqa: BLE001 - every waiting request gets the error
                for _, _, fut in group:
                    fut.set_exception(e)


def shape_key(image: np.ndarray, spec: Any) -> tuple[int, ...]:
    """Images batch together when their prepared network input has the same shape."""
    from unetseg.data.transforms import plan_placement

    placement = plan_placement(image.shape[:2], spec.size, spec.mode, spec.divisor)
    return tuple(placement.out)
