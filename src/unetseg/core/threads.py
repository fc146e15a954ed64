"""Two thread helpers of a pipeline whose stages release the GIL (NumPy, SciPy's FFT, soxr, libsndfile,
torch): ``Prefetch`` makes items ahead of the consumer, ``Behind`` consumes them behind the producer. Both are
bounded queues, so memory stays at ``depth`` items, and both raise a thread's error in the caller."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Prefetch:
    """``items`` made in a thread of their own, started at once, at most ``depth`` ahead of the consumer:
    reading and the spectrogram of the next block (or the next recording) run while the model works on this
    one (NumPy, SciPy's FFT, soxr and libsndfile release the GIL). An error in the thread is raised to the
    consumer; ``close`` (also on leaving the iteration) stops the thread; memory stays bounded by ``depth``."""

    _END = object()

    def __init__(self, items: Iterable, depth: int = 2) -> None:
        self.box: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(items,), name="unetseg-front-end", daemon=True)
        self.thread.start()

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, items: Iterable) -> None:
        try:
            for item in items:
                if not self._put((None, item)):
                    return
            self._put((None, self._END))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((e, None))

    def __iter__(self) -> Iterator:
        try:
            while True:
                error, item = self.box.get()
                if error is not None:
                    raise error
                if item is self._END:
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class Behind:
    """``work(item)`` for each item given to ``put``, in order, in a thread of its own at most ``depth`` items
    behind the caller: the events of a block are decoded while the model runs the next one. An error in
    ``work`` is raised by the next ``put`` or by ``finish``."""

    _END = object()

    def __init__(self, work: Callable[[Any], None], depth: int = 2) -> None:
        self.box: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, args=(work,), name="unetseg-events", daemon=True)
        self.thread.start()

    def _loop(self, work: Callable[[Any], None]) -> None:
        while (item := self.box.get()) is not self._END:
            if self.error is None:
                try:
                    work(item)
                except BaseException as e:  # noqa: BLE001 - raised to the caller by put or finish
                    self.error = e

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.box.put(item)

    def close(self) -> None:
        """Stop the thread once the items given are done (or skipped after an error)."""
        if self.thread.is_alive():
            self.box.put(self._END)
            self.thread.join()

    def finish(self) -> None:
        self.close()
        if self.error is not None:
            raise self.error
