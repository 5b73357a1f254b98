"""Mapping benchmark (issue #6): speed on one CPU core, memory per voxel, accuracy on the synthetic world.

- speed: a 128 x 2048 scan (262,144 points) of the synthetic world, labelled through the camera
  (projection + occlusion) and fused at 0.2 m, with free-space clearing, into a map already holding
  the previous 15 scans;
  and the label-only path (fusing points that already carry labels);
- memory: bytes per voxel of a 32-class map at the fill a drive leaves;
- accuracy: `evaluate_on_world` with ground-truth labels and with noisy labels;
- scaling: the same scan, every point labelled (LiDAR ground truth), fused with free-space clearing into
  a map of ~0.2 M and of ~2 M voxels (the larger one holds the drive's voxels plus copies of them
  shifted 500 m apart: a map that grew along a route, beyond the sensor's reach), side by side;
- costmap: a traversability costmap update (0.2 m cells, 40 x 40 m and 100 x 100 m windows) from the
  drive's map (~0.2 M voxels, sim_offroad costs, people and vehicles dynamic);
- scan sizes: label-only fusion of 16 k .. 1 M points into that map against a plain numpy
  `np.unique` voxel grouping and open3d's hash map (insert + find) of the same keys.

Prints JSON.   NUMBA_NUM_THREADS=1 python bench/bench_mapping.py [--frames 30] [--repeat 20]
               [--only speed,memory,accuracy,scaling,costmap]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one core, as the target is stated
os.environ.setdefault("OMP_NUM_THREADS", "1")    # open3d too (its CPU hash map spins OpenMP threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from seg_perception.labels import load_label_set  # noqa: E402
from seg_perception.mapping.costmap import class_costs, traversability_costmap  # noqa: E402
from seg_perception.mapping.evaluate import evaluate_on_world  # noqa: E402
from seg_perception.mapping.projection import label_points  # noqa: E402
from seg_perception.mapping.voxel_map import SemanticVoxelMap  # noqa: E402
from seg_perception.mapping.voxels import VoxelArrays  # noqa: E402
from seg_perception.sim import World  # noqa: E402
from seg_perception.sim.rig import LidarSpec, RigSpec  # noqa: E402


PREFILL = 15  # scans fused before the timed one: 1.5 s of driving


def _median_ms(function, repeat: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        start = clock()
        function()
        times.append((clock() - start) * 1e3)
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


def _drive(frames: int):
    """Map-frame points, ground-truth labels, origins and stamps of a 128 x 2048 drive."""
    world = World(0, "day", rig=RigSpec(lidar=LidarSpec(beams=128, columns=2048)))
    out = []
    for f in world.frames(frames, events=False):
        T = f.pose @ world.T_base_lidar
        points = f.lidar.points.reshape(-1, 3)
        labels = np.where(np.isfinite(points).all(axis=1), f.lidar.labels.reshape(-1).astype(np.int64), -1)
        out.append((points @ T[:3, :3].T + T[:3, 3], labels, T[:3, 3].copy(), f.stamp_ns))
    return out


def _tiled(voxels: VoxelArrays, target: int) -> VoxelArrays:
    """`voxels` plus copies shifted 500 m apart along x until there are at least `target`."""
    copies = max(1, -(-target // len(voxels)))
    shift = np.array([2500, 0, 0], np.int32)  # voxels of 0.2 m
    return VoxelArrays(voxels.voxel_size, np.concatenate([voxels.keys + k * shift for k in range(copies)]),
                       np.tile(voxels.log_probs, (copies, 1)), np.tile(voxels.observations, copies),
                       np.tile(voxels.last_seen_ns, copies), np.tile(voxels.occupancy, copies))


def scaling(repeat: int) -> dict:
    drive = _drive(PREFILL + 1)
    classes = load_label_set("sim_offroad").num_classes
    base = SemanticVoxelMap(classes, 0.2)
    for points, labels, origin, stamp in drive[:-1]:
        base.integrate(points, labels, stamp_ns=stamp, origin=origin)
    points, labels, origin, stamp0 = drive[-1]
    voxels = base.voxels()
    results: dict = {"points": int(len(points)), "labelled": int((labels >= 0).sum()), "voxel_size": 0.2}
    parameters = {**base.parameters(), "max_voxels": 4_000_000}  # room for both: no eviction is timed
    maps = {name: SemanticVoxelMap.from_voxels(_tiled(voxels, target), **parameters)
            for name, target in (("small", 200_000), ("large", 2_000_000))}
    stamp = [stamp0]

    def fuse(voxel_map: SemanticVoxelMap):
        def run() -> None:
            stamp[0] += 100_000_000
            voxel_map.integrate(points, labels, stamp_ns=stamp[0], origin=origin)
        return run

    runs = {name: fuse(m) for name, m in maps.items()}
    for run in runs.values():
        run()  # compile
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):  # interleaved, so that both sizes see the same machine load
        for name, run in runs.items():
            times[name].append(_median_ms(run, 1))
    for name, m in maps.items():
        results[name] = {"map_voxels": len(m), "fusion_clearing_median_ms": round(statistics.median(times[name]), 2)}
    results["large_over_small"] = round(results["large"]["fusion_clearing_median_ms"]
                                        / results["small"]["fusion_clearing_median_ms"], 3)
    results["scan_sizes"] = _scan_sizes(drive, maps["small"], classes, repeat)
    return results


def costmap(repeat: int) -> dict:
    drive = _drive(PREFILL + 1)
    label_set = load_label_set("sim_offroad")
    voxel_map = SemanticVoxelMap(label_set.num_classes, 0.2, dynamic_classes=label_set.dynamic_ids())
    for points, labels, origin, stamp in drive:
        voxel_map.integrate(points, labels, stamp_ns=stamp, origin=origin)
    costs = class_costs(label_set)
    robot = drive[-1][2] - np.array([0.0, 0.0, 2.0])  # the LiDAR is 2 m above the base
    results: dict = {"map_voxels": len(voxel_map), "dynamic_voxels": len(voxel_map.dynamic_voxels()),
                     "resolution": 0.2}
    for size in (40.0, 100.0):
        def update() -> None:
            traversability_costmap(voxel_map, costs, robot_xyz=robot, resolution=0.2, size=(size, size))

        update()  # compile
        results[f"window_{size:.0f}m_median_ms"] = round(_median_ms(update, repeat), 3)
        # CPU time of this thread as well: on a shared machine wall time includes waiting for the core
        results[f"window_{size:.0f}m_median_cpu_ms"] = round(_median_ms(update, repeat, time.thread_time), 3)
    return results


def _scan_sizes(drive, voxel_map: SemanticVoxelMap, classes: int, repeat: int) -> list[dict]:
    """Label-only fusion against np.unique grouping and open3d's hash map, on the same keys."""
    import open3d as o3d

    all_points = np.concatenate([d[0] for d in drive])
    all_labels = np.concatenate([d[1] for d in drive])
    keep = np.isfinite(all_points).all(axis=1) & (all_labels >= 0)
    all_points, all_labels = all_points[keep], all_labels[keep]
    rows = []
    stamp = [drive[-1][3]]
    for size in (16_384, 65_536, 262_144, 1_048_576):
        points, labels = all_points[:size], all_labels[:size]
        stored = voxel_map.voxels()
        # int32 x 3 keys, as open3d's voxel block grid uses them (packed int64 keys hash pathologically there:
        # seconds for 65 k keys)
        o3d_map = o3d.core.HashMap(max(1, 2 * len(stored)), o3d.core.int32, [3], o3d.core.int64, [1])
        o3d_map.insert(o3d.core.Tensor(np.ascontiguousarray(stored.keys, np.int32)),
                       o3d.core.Tensor(np.arange(len(stored), dtype=np.int64).reshape(-1, 1)))

        def ours() -> None:
            stamp[0] += 100_000_000
            voxel_map.integrate(points, labels, stamp_ns=stamp[0])

        def numpy_unique() -> None:
            keys = _pack(np.floor(points / 0.2).astype(np.int64))
            unique, inverse = np.unique(keys, return_inverse=True)
            np.bincount(inverse * classes + labels, minlength=len(unique) * classes)

        def open3d_hash() -> None:
            keys = o3d.core.Tensor(np.floor(points / 0.2).astype(np.int32))
            o3d_map.activate(keys)
            o3d_map.find(keys)

        functions = {"integrate": ours, "numpy_unique": numpy_unique, "open3d_hashmap": open3d_hash}
        times: dict[str, list[float]] = {name: [] for name in functions}
        ours()
        for _ in range(repeat):  # interleaved: the three see the same machine load
            for name, function in functions.items():
                times[name].append(_median_ms(function, 1))
        rows.append({"points": size,
                     **{f"{name}_median_ms": round(statistics.median(t), 2) for name, t in times.items()}})
    return rows


def _pack(ijk: np.ndarray) -> np.ndarray:
    offset = ijk + (1 << 20)
    return (offset[:, 0] << 42) | (offset[:, 1] << 21) | offset[:, 2]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames of the accuracy drive (default: 30)")
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions (default: 20)")
    parser.add_argument("--only", default="speed,memory,accuracy,scaling,costmap",
                        help="comma-separated sections to run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sections = {"speed": lambda: speed(args.repeat), "memory": lambda: memory(args.frames),
                "accuracy": lambda: [evaluate_on_world(0, args.frames), evaluate_on_world(0, args.frames, noise=0.25)],
                "scaling": lambda: scaling(args.repeat), "costmap": lambda: costmap(args.repeat)}
    wanted = args.only.split(",")
    unknown = sorted(set(wanted) - set(sections))
    if unknown:
        parser.error(f"--only {unknown} unknown; accepted: {', '.join(sections)}")
    report = {name: sections[name]() for name in wanted}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
