"""The replay's background stages keep order, bound what they hold, and hand errors back."""
from __future__ import annotations

import threading
import time

import pytest

from seg_perception.pipeline.stages import SerialWorker, prefetch


def test_prefetch_yields_every_item_in_order_from_another_thread():
    threads = []

    def items():
        for i in range(100):
            threads.append(threading.current_thread())
            yield i

    assert list(prefetch(items(), 4)) == list(range(100))
    assert all(t is not threading.main_thread() for t in threads)


def test_prefetch_reads_at_most_depth_ahead():
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    stream = prefetch(items(), 3)
    assert next(stream) == 0
    time.sleep(0.2)  # let the producer run as far as it may
    # one taken + 3 queued + one the producer holds while it waits for room
    assert len(produced) <= 5
    stream.close()


def test_prefetch_raises_the_producers_error_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise OSError("truncated")

    got = []
    with pytest.raises(OSError, match="truncated"):
        for item in prefetch(items(), 8):
            got.append(item)
    assert got == [1, 2]


def test_prefetch_stops_its_thread_when_closed_early():
    started = threading.active_count()
    stream = prefetch(iter(range(10_000)), 2)
    next(stream)
    stream.close()
    assert threading.active_count() == started


def test_serial_worker_runs_calls_in_order_on_one_thread():
    seen, threads = [], set()
    worker = SerialWorker(2)
    for i in range(200):
        worker.submit(lambda i=i: (seen.append(i), threads.add(threading.current_thread())))
    worker.close()
    assert seen == list(range(200))
    assert len(threads) == 1 and threading.main_thread() not in threads


def test_serial_worker_hands_back_the_first_error_and_runs_nothing_after_it():
    seen = []

    def fail():
        raise ValueError("disk full")

    worker = SerialWorker(8)
    worker.submit(seen.append, 1)
    worker.submit(fail)
    worker.submit(seen.append, 2)
    with pytest.raises(ValueError, match="disk full"):
        worker.close()
    assert seen == [1]
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(seen.append, 3)


@pytest.mark.parametrize("make", [lambda: prefetch(iter(()), 0), lambda: SerialWorker(0)])
def test_depth_must_be_positive(make):
    with pytest.raises(ValueError, match="at least 1"):
        stream = make()
        next(stream)
