"""Mapping benchmark (issue #6): speed on one CPU core, memory per voxel, accuracy on the synthetic world.

- speed: a 128 x 2048 scan (262,144 points) of the synthetic world, labelled through the camera
  (projection + occlusion) and fused at 0.2 m, with free-space clearing, into a map already holding
  the previous 15 scans;
  and the label-only path (fusing points that already carry labels);
- memory: bytes per voxel of a 32-class map at the fill a drive leaves;
- accuracy: `evaluate_on_world` with ground-truth labels and with noisy labels.

Prints JSON.   NUMBA_NUM_THREADS=1 python bench/bench_mapping.py [--frames 30] [--repeat 20]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one core, as the target is stated

import numpy as np  # noqa: E402
import torch  # noqa: E402

from seg_perception.labels import load_label_set  # noqa: E402
from seg_perception.mapping.evaluate import evaluate_on_world  # noqa: E402
from seg_perception.mapping.projection import label_points  # noqa: E402
from seg_perception.mapping.voxel_map import SemanticVoxelMap  # noqa: E402
from seg_perception.sim import World  # noqa: E402
from seg_perception.sim.rig import LidarSpec, RigSpec  # noqa: E402


PREFILL = 15  # scans fused before the timed one: 1.5 s of driving


def _median_ms(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def speed(repeat: int) -> dict:
    world = World(0, "day", rig=RigSpec(lidar=LidarSpec(beams=128, columns=2048)))
    classes = load_label_set("sim_offroad").num_classes
    T_camera_lidar = np.linalg.inv(world.T_base_camera) @ world.T_base_lidar
    frames = list(world.frames(PREFILL + 1, events=False))
    points = [f.lidar.points.reshape(-1, 3) for f in frames]
    poses = [f.pose @ world.T_base_lidar for f in frames]
    in_map = [p @ T[:3, :3].T + T[:3, 3] for p, T in zip(points, poses)]
    labelled = [label_points(p, T_camera_lidar, world.models.camera, f.labels) for p, f in zip(points, frames)]
    semantic_map = SemanticVoxelMap(classes, 0.2)
    for i in range(PREFILL):  # the map already holds the previous scans
        semantic_map.integrate(in_map[i], labelled[i].labels, stamp_ns=frames[i].stamp_ns, origin=poses[i][:3, 3])
    last, stamp = len(frames) - 1, [frames[-1].stamp_ns]

    def full() -> None:
        result = label_points(points[last], T_camera_lidar, world.models.camera, frames[last].labels)
        stamp[0] += 100_000_000
        semantic_map.integrate(in_map[last], result.labels, stamp_ns=stamp[0], origin=poses[last][:3, 3])

    def fuse_only() -> None:
        stamp[0] += 100_000_000
        semantic_map.integrate(in_map[last], labelled[last].labels, stamp_ns=stamp[0], origin=poses[last][:3, 3])

    def project_only() -> None:
        label_points(points[last], T_camera_lidar, world.models.camera, frames[last].labels)

    full()  # compile
    n = len(points[last])
    results = {"points": n, "labelled": int(labelled[last].labelled.sum()), "voxel_size": 0.2,
               "map_voxels": len(semantic_map)}
    for name, function in (("projection_occlusion", project_only), ("fusion_label_only", fuse_only),
                           ("projection_occlusion_fusion", full)):
        ms = _median_ms(function, repeat)
        results[name] = {"median_ms": round(ms, 2), "points_per_s": round(n / ms * 1e3)}
    return results


def memory(frames: int) -> dict:
    world = World(1, "day")
    semantic_map = SemanticVoxelMap(32, 0.2)
    rng = np.random.default_rng(0)
    for frame in world.frames(frames, events=False):
        T = frame.pose @ world.T_base_lidar
        points = frame.lidar.points.reshape(-1, 3)
        in_map = points @ T[:3, :3].T + T[:3, 3]
        semantic_map.integrate(in_map, rng.integers(0, 32, len(points)), stamp_ns=frame.stamp_ns, origin=T[:3, 3])
    return {"classes": 32, "voxels": len(semantic_map), "bytes_per_voxel": round(semantic_map.bytes_per_voxel(), 1),
            "memory_mb": round(semantic_map.memory_bytes() / 2**20, 2)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames of the accuracy drive (default: 30)")
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions (default: 20)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = {"speed": speed(args.repeat), "memory": memory(args.frames),
              "accuracy": [evaluate_on_world(0, args.frames), evaluate_on_world(0, args.frames, noise=0.25)]}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
