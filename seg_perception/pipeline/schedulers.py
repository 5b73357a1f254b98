"""Who runs when: replay processes every bundle in order; live keeps only the newest and drops the rest.

Both schedulers take `process(bundle) -> result` and report through the same callbacks and
counters, so the node and the replay tool drive the pipeline alike:
`stats` = {"received", "processed", "dropped", "errors"} (processed includes the bundles whose
processing raised), `latencies_ns` = submit → result of the recent bundles.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B")
R = TypeVar("R")
DEFAULT_MAX_LATENCIES = 4096

_log = logging.getLogger(__name__)


class SchedulerClosed(RuntimeError):
    """A bundle was submitted to a scheduler after close(); create a new scheduler instead."""


class ReplayScheduler(Generic[B, R]):
    """Processes every bundle, in submission order, in the caller's thread (deterministic).

    Args:
        process: bundle → result.
        on_result: called with (bundle, result) after each bundle.
        on_error: called with (bundle, exception) when `process` raises; without it the exception
            propagates out of `submit` (counted either way).
        clock: monotonic ns clock for `latencies_ns`.
        max_latencies: how many recent latencies to keep.
    """

    def __init__(self, process: Callable[[B], R], *, on_result: Callable[[B, R], None] | None = None,
                 on_error: Callable[[B, Exception], None] | None = None, clock: Callable[[], int] = time.monotonic_ns,
                 max_latencies: int = DEFAULT_MAX_LATENCIES) -> None:
        self._process = process
        self._on_result = on_result
        self._on_error = on_error
        self._clock = clock
        self._closed = False
        self.stats = {"received": 0, "processed": 0, "dropped": 0, "errors": 0}
        self._latencies: deque[int] = deque(maxlen=max_latencies)

    @property
    def latencies_ns(self) -> list[int]:
        """Submit → result of the most recent bundles, oldest first."""
        return list(self._latencies)

    def submit(self, bundle: B) -> R | None:
        """Process `bundle` now.

        Returns:
            The result, or None when `process` raised and `on_error` took the exception.

        Raises:
            SchedulerClosed: after close().
            Exception: whatever `process` raised, when no `on_error` was given.
        """
        if self._closed:
            raise SchedulerClosed("submit() after close(): this ReplayScheduler is closed")
        self.stats["received"] += 1
        submitted = self._clock()
        self.stats["processed"] += 1
        try:
            result = self._process(bundle)
        except Exception as exc:
            self.stats["errors"] += 1
            if self._on_error is None:
                raise
            self._on_error(bundle, exc)
            return None
        self._latencies.append(self._clock() - submitted)
        if self._on_result is not None:
            self._on_result(bundle, result)
        return result

    def close(self, timeout: float | None = None) -> bool:
        """Refuse further bundles; there is nothing in flight, so it returns True at once."""
        self._closed = True
        return True


class LiveScheduler(Generic[B, R]):
    """Runs `process` on one worker thread; the newest bundle wins, older pending ones are dropped.

    `submit` never blocks: it puts the bundle into a single pending slot, replacing (and counting as
    dropped) a bundle still waiting there. So there is never a backlog: a bundle's latency (submit →
    result) is at most the rest of the bundle in progress plus its own processing, under two
    processing times, whatever the input rate. Results come out in submission order, each through
    `on_result(bundle, result)` on the worker thread. An exception from `process` (or `on_result`)
    is counted, handed to `on_error(bundle, exception)` and the worker goes on with the next bundle.

    Args:
        process: bundle → result; runs on the worker thread.
        on_result: called with (bundle, result) on the worker thread.
        on_error: called with (bundle, exception) on the worker thread; without it errors are logged.
        clock: monotonic ns clock for `latencies_ns`.
        max_latencies: how many recent latencies to keep.
        name: the worker thread's name.
    """

    def __init__(self, process: Callable[[B], R], *, on_result: Callable[[B, R], None] | None = None,
                 on_error: Callable[[B, Exception], None] | None = None, clock: Callable[[], int] = time.monotonic_ns,
                 max_latencies: int = DEFAULT_MAX_LATENCIES, name: str = "seg-perception-live") -> None:
        self._process = process
        self._on_result = on_result
        self._on_error = on_error
        self._clock = clock
        self._condition = threading.Condition()
        self._pending: tuple[B, int] | None = None
        self._closed = False
        self._stats = {"received": 0, "processed": 0, "dropped": 0, "errors": 0}
        self._latencies: deque[int] = deque(maxlen=max_latencies)
        # A daemon thread, so a scheduler that is never closed does not keep the interpreter alive.
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters; after close() returns True, processed + dropped == received."""
        with self._condition:
            return dict(self._stats)

    @property
    def latencies_ns(self) -> list[int]:
        """Submit → result of the most recent processed bundles, oldest first."""
        with self._condition:
            return list(self._latencies)

    def submit(self, bundle: B) -> None:
        """Hand over a bundle without waiting; it replaces a bundle still pending.

        Raises:
            SchedulerClosed: after close().
        """
        with self._condition:
            if self._closed:
                raise SchedulerClosed("submit() after close(): this LiveScheduler is closed")
            self._stats["received"] += 1
            if self._pending is not None:
                self._stats["dropped"] += 1
            self._pending = (bundle, self._clock())
            self._condition.notify()

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking bundles, let the worker finish the one in progress and the pending one, and join it.

        Args:
            timeout: seconds to wait for the worker; None waits as long as it takes.

        Returns:
            True when the worker has stopped, False when the timeout ran out first.
        """
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._worker.join(timeout)
        return not self._worker.is_alive()

    def __enter__(self) -> LiveScheduler[B, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closed:
                    self._condition.wait()
                if self._pending is None:
                    return
                bundle, submitted = self._pending
                self._pending = None
            self._handle(bundle, submitted)

    def _handle(self, bundle: B, submitted: int) -> None:
        try:
            result = self._process(bundle)
        except Exception as exc:
            with self._condition:
                self._stats["processed"] += 1
                self._stats["errors"] += 1
            self._report(bundle, exc)
            return
        done = self._clock()
        with self._condition:
            self._stats["processed"] += 1
            self._latencies.append(done - submitted)
        if self._on_result is not None:
            try:
                self._on_result(bundle, result)
            except Exception as exc:
                with self._condition:
                    self._stats["errors"] += 1
                self._report(bundle, exc)

    def _report(self, bundle: B, exc: Exception) -> None:
        if self._on_error is None:
            _log.error("processing a bundle failed: %s", exc, exc_info=exc)
            return
        try:
            self._on_error(bundle, exc)
        except Exception:
            # The worker must outlive a faulty error handler too.
            _log.exception("the on_error callback raised")
