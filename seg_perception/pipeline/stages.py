"""Background stages for replay, so reading the bag and writing results overlap inference: a prefetching
iterator and an in-order worker, each one thread behind a bounded queue (memory stays bounded and a
slow stage slows the others instead of piling frames up).

The stages keep order, so a replay with them gives the same results as one without.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.05


def prefetch(items: Iterable[T], depth: int, *, name: str = "seg-perception-prefetch") -> Iterator[T]:
    """Iterate `items` on a background thread, up to `depth` items ahead of the consumer.

    An exception raised while iterating `items` is raised here, after the items that came before it.
    Closing this iterator early stops the thread.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, not {depth}")
    ahead: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ahead.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, who decides
            put((_END, exc))
            return
        put((_END, None))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = ahead.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


class SerialWorker:
    """Runs the submitted calls one at a time, in submission order, on a background thread.

    At most `depth` calls wait; `submit` blocks beyond that. The first exception a call raises stops
    the worker from running further calls and is raised by the next `submit` or by `close`.
    """

    def __init__(self, depth: int, *, name: str = "seg-perception-writer") -> None:
        if depth < 1:
            raise ValueError(f"worker queue depth must be at least 1, not {depth}")
        self._calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None  # raised once, by the next submit() or close()
        self._failed = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        """Queue `call(*args)`.

        Raises:
            RuntimeError: after close().
            Exception: the first exception an earlier call raised.
        """
        if self._closed:
            raise RuntimeError("submit() after close(): this SerialWorker is closed")
        self._raise_error()
        self._calls.put((call, args))

    def close(self) -> None:
        """Run what is queued, stop the thread and raise the first exception a call raised, if any."""
        if not self._closed:
            self._closed = True
            self._calls.put(None)
            self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while (entry := self._calls.get()) is not None:
            if not self._failed:  # after a failure the rest is drained, not run
                call, args = entry
                try:
                    call(*args)
                except BaseException as exc:
                    self._failed, self._error = True, exc
