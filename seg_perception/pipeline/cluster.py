"""Replaying bags on a Dask distributed cluster: one task per bag, the reports of the tasks that completed
merged exactly (`replay.merge_bag_reports`), as `replay.replay` merges those of its processes.

A task whose worker dies is rescheduled on another worker by the scheduler (up to its
`distributed.scheduler.allowed-failures` times, default 3), then its bag is reported as not replayed.
Only a completed task's result is merged, once per bag, so a bag whose first worker died is never
counted twice; its rerun rewrites its output bag and worst-frame files.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from seg_perception.evaluation import EvaluationReport
from seg_perception.io import BagError

from .config import PipelineConfig
from .replay import ReplayOptions, merge_bag_reports, output_names, replay_to_dict, segment_workers

CONNECT_TIMEOUT_S = 30.0


class ClusterError(RuntimeError):
    """The cluster cannot be used: Dask distributed is missing or the scheduler cannot be reached."""


def replay_on_cluster(bags: list[str | Path], config: PipelineConfig, out_dir: str | Path,
                      options: ReplayOptions | None = None, *, address: str) -> EvaluationReport:
    """Replay each bag as one task on the Dask cluster at `address`, merge the reports exactly and write the
    merged report to `out_dir`, like `replay.replay`.

    Bags and `out_dir` must be at the same paths on every worker (a shared file system); relative paths
    are made absolute here. A bag that fails, or whose task lost its worker too often, is counted as not
    replayed and the others go on.

    Raises:
        ClusterError: distributed is not installed or the scheduler does not answer.
        BagError: no bag could be replayed.
    """
    try:
        from distributed import Client, KilledWorker
    except ImportError:
        raise ClusterError("replaying on a cluster needs Dask distributed: pip install 'distributed>=2024.1' "
                           "(or the package's [cluster] extra)") from None
    started = time.monotonic()
    out_dir = Path(out_dir).resolve()
    options = replace(options or ReplayOptions(), progress=False)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address!r} ({exc}); start one with "
                           f"`dask scheduler` and workers with `dask worker ADDRESS`, and pass its tcp://HOST:PORT"
                           ) from None
    results: dict[int, EvaluationReport] = {}
    failures: dict[str, str] = {}
    run = uuid.uuid4().hex[:8]  # keys of its own, so that runs sharing a cluster never share a task
    with client:
        names = output_names(bags)
        futures = [client.submit(_replay_task, str(Path(bag).resolve()), config, out_dir, options, names[str(bag)],
                                 key=f"replay-{run}-{i}-{Path(bag).name}", pure=False) for i, bag in enumerate(bags)]
        for i, future in enumerate(futures):  # in bag order, as the sequential replay merges them
            try:
                results[i] = EvaluationReport.from_dict(future.result())
            except (BagError, ValueError, RuntimeError, KilledWorker) as exc:
                failures[str(bags[i])] = str(exc)
    return merge_bag_reports([results[i] for i in sorted(results)], failures, out_dir, time.monotonic() - started)


def _replay_task(bag: str, config: PipelineConfig, out_dir: Path, options: ReplayOptions,
                 name: str) -> dict[str, Any]:
    """One bag on a worker; its frames are segmented on the worker's share of the cores per task."""
    if not options.segment_workers:
        from distributed import get_worker

        options = replace(options, segment_workers=segment_workers(config, get_worker().state.nthreads))
    return replay_to_dict(bag, config, out_dir, options, name)
