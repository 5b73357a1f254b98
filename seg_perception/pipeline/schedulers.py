"""Who runs when: replay processes every bundle (frame-parallel where it may) and reports them in order;
live keeps only the newest and drops the rest.

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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

B = TypeVar("B")
R = TypeVar("R")
DEFAULT_MAX_LATENCIES = 4096

_log = logging.getLogger(__name__)


class SchedulerClosed(RuntimeError):
    """A bundle was submitted to a scheduler after close(); create a new scheduler instead."""


class ReplayScheduler(Generic[B, R]):
    """Processes every bundle, and reports the results in submission order (deterministic).

    With one worker, each bundle is processed in the caller's thread during `submit`. With more,
    `process` runs on up to `workers` bundles at once on a thread pool (frame-parallel: it must be
    safe to call concurrently), and `then`, the callbacks and the counters stay in the caller's
    thread, in submission order, so whatever `then` accumulates (a voxel map) sees the bundles in
    order. `submit` waits while `2 * workers` bundles are in flight; `close` finishes them.

    Args:
        process: bundle → intermediate result (the frame-parallel stage).
        then: (bundle, intermediate) → result, in order in the caller's thread; default: the
            intermediate is the result.
        workers: bundles processed at once.
        on_result: called with (bundle, result) after each bundle.
        on_error: called with (bundle, exception) when `process` or `then` raises; without it the
            exception propagates out of the `submit` or `close` that finishes the bundle (counted
            either way).
        clock: monotonic ns clock for `latencies_ns`.
        max_latencies: how many recent latencies to keep.
    """

    def __init__(self, process: Callable[[B], Any], *, then: Callable[[B, Any], R] | None = None, workers: int = 1,
                 on_result: Callable[[B, R], None] | None = None,
                 on_error: Callable[[B, Exception], None] | None = None, clock: Callable[[], int] = time.monotonic_ns,
                 max_latencies: int = DEFAULT_MAX_LATENCIES) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._process = process
        self._then = then
        self._on_result = on_result
        self._on_error = on_error
        self._clock = clock
        self._closed = False
        self.stats = {"received": 0, "processed": 0, "dropped": 0, "errors": 0}
        self._latencies: deque[int] = deque(maxlen=max_latencies)
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="seg-perception-segment") if workers > 1 else None
        self._in_flight: deque[tuple[B, int, Future]] = deque()

    @property
    def latencies_ns(self) -> list[int]:
        """Submit → result of the most recent bundles, oldest first."""
        return list(self._latencies)

    def submit(self, bundle: B) -> None:
        """Process `bundle`: now with one worker, else on the pool, finishing the oldest bundles in flight.

        Raises:
            SchedulerClosed: after close().
            Exception: whatever `process` or `then` raised for a bundle this call finished, when no
                `on_error` was given.
        """
        if self._closed:
            raise SchedulerClosed("submit() after close(): this ReplayScheduler is closed")
        self.stats["received"] += 1
        submitted = self._clock()
        if self._pool is None:
            self._finish(bundle, submitted, lambda: self._process(bundle))
            return
        self._in_flight.append((bundle, submitted, self._pool.submit(self._process, bundle)))
        while len(self._in_flight) > 2 * self._workers:  # the pool has the next bundles while one is finished
            self._finish_oldest()

    def close(self, timeout: float | None = None) -> bool:
        """Finish the bundles in flight and refuse further ones; returns True (nothing is left running).

        Raises:
            Exception: as `submit`.
        """
        self._closed = True
        try:
            while self._in_flight:
                self._finish_oldest()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
        return True

    def _finish_oldest(self) -> None:
        bundle, submitted, future = self._in_flight.popleft()
        self._finish(bundle, submitted, future.result)

    def _finish(self, bundle: B, submitted: int, processed: Callable[[], Any]) -> None:
        self.stats["processed"] += 1
        try:
            value = processed()
            result = value if self._then is None else self._then(bundle, value)
        except Exception as exc:
            self.stats["errors"] += 1
            if self._on_error is None:
                raise
            self._on_error(bundle, exc)
            return
        self._latencies.append(self._clock() - submitted)
        if self._on_result is not None:
            self._on_result(bundle, result)


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
