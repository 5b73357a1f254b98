"""Replay and live schedulers: order, newest-wins dropping, bounded latency under overload, errors."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

import pytest

from seg_perception.pipeline.schedulers import LiveScheduler, ReplayScheduler, SchedulerClosed

MS = 1_000_000


class FakeClock:
    """A monotonic ns clock that advances 1 ms per reading, safe across threads."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return next(self._ticks) * MS


def test_replay_processes_every_bundle_in_order() -> None:
    seen: list[tuple[int, int]] = []
    replay = ReplayScheduler(lambda b: b * 10, on_result=lambda b, r: seen.append((b, r)), clock=FakeClock())
    for b in range(20):
        replay.submit(b)
        assert seen[-1] == (b, b * 10)  # one worker: processed during submit
    assert seen == [(b, b * 10) for b in range(20)]
    assert replay.stats == {"received": 20, "processed": 20, "dropped": 0, "errors": 0}
    assert replay.latencies_ns == [MS] * 20  # one clock reading before and one after each bundle
    assert replay.close()
    with pytest.raises(SchedulerClosed):
        replay.submit(21)


def test_replay_errors_propagate_or_go_to_on_error() -> None:
    def process(b: int) -> int:
        if b == 2:
            raise ValueError("bad frame")
        return b

    strict = ReplayScheduler(process)
    with pytest.raises(ValueError, match="bad frame"):
        strict.submit(2)
    assert strict.stats["errors"] == 1
    errors: list[tuple[int, str]] = []
    results: list[int] = []
    lenient = ReplayScheduler(process, on_result=lambda b, r: results.append(r),
                              on_error=lambda b, e: errors.append((b, str(e))))
    for b in range(4):
        lenient.submit(b)
    assert results == [0, 1, 3]
    assert errors == [(2, "bad frame")]
    assert lenient.stats == {"received": 4, "processed": 4, "dropped": 0, "errors": 1}


def test_parallel_replay_runs_frames_at_once_and_reports_them_in_order() -> None:
    workers = 3
    both_running = threading.Barrier(workers, timeout=5)  # passes only if `workers` calls run at once
    lock, running, most = threading.Lock(), [0], [0]
    caller = threading.get_ident()

    def process(b: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if b < workers:
            both_running.wait()
        time.sleep(0.001 * ((b * 7) % 5))  # later frames often finish first
        with lock:
            running[0] -= 1
        return b * 10

    order: list[tuple[str, int]] = []

    def then(b: int, value: int) -> int:
        assert threading.get_ident() == caller
        order.append(("then", b))
        return value + 1

    def on_result(b: int, r: int) -> None:
        assert threading.get_ident() == caller
        order.append(("result", b))
        assert r == b * 10 + 1

    replay = ReplayScheduler(process, then=then, workers=workers, on_result=on_result)
    for b in range(30):
        replay.submit(b)
        finished = sum(kind == "result" for kind, _ in order)
        assert b + 1 - finished <= 2 * workers  # in flight stays bounded
    assert replay.close()
    assert order == [(kind, b) for b in range(30) for kind in ("then", "result")]
    assert most[0] == workers
    assert replay.stats == {"received": 30, "processed": 30, "dropped": 0, "errors": 0}
    assert len(replay.latencies_ns) == 30
    with pytest.raises(SchedulerClosed):
        replay.submit(31)


def test_parallel_replay_errors_keep_frame_order() -> None:
    def process(b: int) -> int:
        if b % 4 == 1:
            raise ValueError(f"bad frame {b}")
        return b

    def then(b: int, value: int) -> int:
        if b % 4 == 2:
            raise RuntimeError(f"cannot fuse {b}")
        return value

    seen: list[tuple[int, str]] = []
    lenient = ReplayScheduler(process, then=then, workers=2, on_result=lambda b, r: seen.append((b, "ok")),
                              on_error=lambda b, e: seen.append((b, str(e))))
    for b in range(12):
        lenient.submit(b)
    lenient.close()
    expected = {0: "ok", 1: "bad frame {}", 2: "cannot fuse {}", 3: "ok"}
    assert seen == [(b, expected[b % 4].format(b)) for b in range(12)]
    assert lenient.stats == {"received": 12, "processed": 12, "dropped": 0, "errors": 6}
    strict = ReplayScheduler(process, workers=2)
    strict.submit(0)
    strict.submit(1)
    with pytest.raises(ValueError, match="bad frame 1"):  # raised by the close that finishes frame 1
        strict.close()
    with pytest.raises(ValueError, match="workers"):
        ReplayScheduler(process, workers=0)


def test_live_keeps_only_the_newest_pending_bundle() -> None:
    started, release = threading.Event(), threading.Event()

    def process(b: int) -> int:
        started.set()
        assert release.wait(5)
        return b

    results: list[int] = []
    live = LiveScheduler(process, on_result=lambda b, r: results.append(r), clock=FakeClock())
    live.submit(1)  # clock 1 ms
    assert started.wait(5)
    for b in (2, 3, 4):  # clock 2, 3, 4 ms; 2 and 3 are replaced while 1 is in progress
        live.submit(b)
    release.set()
    assert live.close(timeout=5)
    assert results == [1, 4]
    assert live.stats == {"received": 4, "processed": 2, "dropped": 2, "errors": 0}
    # 1: submitted at 1 ms, done at 5 ms; 4: submitted at 4 ms, done at 6 ms.
    assert live.latencies_ns == [4 * MS, 2 * MS]


def test_live_under_a_producer_three_times_faster_keeps_latency_bounded() -> None:
    period_s, work_s, count = 0.0033, 0.010, 150
    durations: list[int] = []
    results: list[int] = []

    def process(stamp: int) -> int:
        start = time.monotonic_ns()
        time.sleep(work_s)
        durations.append(time.monotonic_ns() - start)
        return stamp

    live = LiveScheduler(process, on_result=lambda b, r: results.append(r))
    for stamp in range(count):
        live.submit(stamp)
        time.sleep(period_s)
    assert live.close(timeout=5)
    stats = live.stats
    assert stats["received"] == count
    assert stats["processed"] + stats["dropped"] == count
    assert stats["dropped"] >= count // 2  # about 2 in 3 are dropped at a 3x overload
    assert stats["processed"] == len(results) == len(durations) == len(live.latencies_ns)
    assert results == sorted(set(results)) and results[-1] == count - 1  # in order; the last one is never lost
    # At most the rest of the bundle in progress plus its own processing, with slack for thread wake-ups.
    bound = 2 * max(durations) + work_s * 1e9
    assert max(live.latencies_ns) <= bound


def test_live_errors_are_counted_reported_and_do_not_stop_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    def process(b: int) -> int:
        if b % 2:
            raise RuntimeError(f"bundle {b} failed")
        return b

    done = threading.Semaphore(0)
    errors: list[tuple[int, str]] = []
    results: list[int] = []

    def on_result(b: int, r: int) -> None:
        results.append(r)
        done.release()

    def on_error(b: int, exc: Exception) -> None:
        errors.append((b, str(exc)))
        done.release()

    live = LiveScheduler(process, on_result=on_result, on_error=on_error)
    for b in range(6):  # one at a time, so that nothing is dropped
        live.submit(b)
        assert done.acquire(timeout=5)
    assert live.close(timeout=5)
    assert results == [0, 2, 4]
    assert errors == [(1, "bundle 1 failed"), (3, "bundle 3 failed"), (5, "bundle 5 failed")]
    assert live.stats == {"received": 6, "processed": 6, "dropped": 0, "errors": 3}
    assert len(live.latencies_ns) == 3  # failed bundles have no result, hence no latency

    # Without on_error the failure is logged; a failing on_result counts as an error too.
    with caplog.at_level(logging.ERROR, logger="seg_perception.pipeline.schedulers"):
        with LiveScheduler(process, on_result=lambda b, r: 1 / 0) as quiet:
            quiet.submit(1)
            assert _wait_for(lambda: quiet.stats["errors"] == 1)
            quiet.submit(2)
            assert _wait_for(lambda: quiet.stats["errors"] == 2)
        assert quiet.stats == {"received": 2, "processed": 2, "dropped": 0, "errors": 2}
    assert "bundle 1 failed" in caplog.text and "division by zero" in caplog.text


def test_live_close_times_out_while_a_bundle_is_stuck_and_refuses_new_ones() -> None:
    release = threading.Event()
    live = LiveScheduler(lambda b: release.wait(5))
    live.submit(0)
    assert not live.close(timeout=0.05)
    with pytest.raises(SchedulerClosed):
        live.submit(1)
    release.set()
    assert live.close(timeout=5)
    assert live.stats == {"received": 1, "processed": 1, "dropped": 0, "errors": 0}


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.001)
    return False
