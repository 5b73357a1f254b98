"""Replay on a Dask cluster (a local one with two worker processes): the merged report equals the
sequential replay's, also when a worker process dies while it replays a bag (its task runs again
elsewhere and its bag is counted once)."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from seg_perception.cli import main
from seg_perception.evaluation import EvaluationReport
from seg_perception.io import BagReader
from seg_perception.pipeline import PipelineConfig
from seg_perception.pipeline.cluster import ClusterError, replay_on_cluster
from seg_perception.pipeline.replay import ReplayOptions, replay
from seg_perception.sim import World
from seg_perception.sim.bag import write_bag

distributed = pytest.importorskip("distributed")

SEEDS = (110_000, 110_001, 110_002, 110_003)


class KillFirstTaskMidRun(distributed.WorkerPlugin):
    """Kills the worker process of the first task to start on the whole cluster (the marker file is created
    exclusively by that one worker) as soon as the task has begun writing its output bag into `out`."""

    def __init__(self, marker: str, out: str) -> None:
        self.marker, self.out = marker, out

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing":
            return
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        output = Path(self.out) / str(key).split("-", 3)[3]  # task keys are replay-<run>-<i>-<bag name>

        def kill_once_writing() -> None:
            while not output.exists():
                time.sleep(0.002)
            os._exit(1)

        threading.Thread(target=kill_once_writing, daemon=True).start()


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster-bags")
    paths = [root / f"drive{i}" for i in range(len(SEEDS))]
    for path, seed in zip(paths, SEEDS, strict=True):
        write_bag(path, World(seed, "day"), 2, lidar=False, events=False)
    return paths


@pytest.fixture(scope="module")
def config():
    config = PipelineConfig.load()
    return replace(config, model="student_rgb", mapping=replace(config.mapping, enabled=False))


@pytest.fixture(scope="module")
def sequential(bags, config, tmp_path_factory):
    return _scores(replay(bags, config, tmp_path_factory.mktemp("sequential"), ReplayOptions(record=False)))


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


def _scores(report):
    data = report.to_dict()
    data.pop("latency")
    return data


def test_cluster_replay_merges_to_the_sequential_report(bags, config, sequential, cluster, tmp_path):
    report = replay_on_cluster(bags, config, tmp_path, ReplayOptions(), address=cluster.scheduler_address)
    assert _scores(report) == sequential
    assert report.frames == 2 * len(bags)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("drive")) == \
        [b.name for b in bags]  # the output bags, in the shared folder
    for record in report.worst_frames:
        assert (tmp_path / record.overlay).is_file()


def test_a_worker_that_dies_mid_run_changes_nothing(bags, config, sequential, cluster, tmp_path, capsys):
    """Through the CLI: a worker dies while it writes a bag's output; the task runs again, the report is
    the sequential one and every output bag is whole (the partial one was replaced)."""
    marker, out = tmp_path / "killed", tmp_path / "out"
    with distributed.Client(cluster.scheduler_address) as client:
        client.register_plugin(KillFirstTaskMidRun(str(marker), str(out)), name="kill-first-task")
        try:
            status = main(["replay", *map(str, bags), "--out", str(out), "--cluster", cluster.scheduler_address,
                           "--model", "student_rgb", "--no-map"])
        finally:
            client.unregister_worker_plugin("kill-first-task")
    assert marker.exists()  # a worker did die
    assert status == 0, capsys.readouterr().err
    written = EvaluationReport.from_dict(json.loads((out / "report.json").read_text()))
    assert _scores(written) == sequential
    for bag in bags:
        with BagReader(out / bag.name) as reader:
            assert len(list(reader.messages(["/seg_perception/labels"]))) == 2, bag.name


def test_cluster_and_workers_are_exclusive(bags, tmp_path, capsys):
    status = main(["replay", str(bags[0]), "--out", str(tmp_path), "--cluster", "tcp://127.0.0.1:9", "--workers", "2"])
    assert status == 1
    assert "--workers 2 with --cluster: the cluster's workers replay the bags" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_named(bags, config, tmp_path, monkeypatch):
    monkeypatch.setattr("seg_perception.pipeline.cluster.CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        replay_on_cluster(bags[:1], config, tmp_path, address="tcp://127.0.0.1:9")
