"""Simulator benchmark: frames per second of the synthetic world on one CPU core, with per-stage times.

Prints JSON. Target (issue #3): >= 5 frames/s for a 640x360 camera + thermal + events + 64-beam
LiDAR frame on one core. Numba compilation and scene generation are excluded (a warm-up frame is
rendered first; building the World is timed separately). The dataset section times training
samples at 320x180, rendered and read back from the on-disk cache.

    python bench/bench_sim.py [--frames 10] [--scenario day] [--samples 32] [--sections simulator dataset]
"""
from __future__ import annotations

import os

# One core: these must be set before numpy, OpenCV and numba are imported.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from seg_perception.sim import EventSimulator, RigSpec, World  # noqa: E402

cv2.setNumThreads(1)
TARGET_FRAMES_PER_S = 5.0
KIND_SEEDS = {"offroad": 0, "semiurban": 1}


def pin_to_one_core() -> int | None:
    """Restrict this process to one CPU (where the OS allows it); returns that CPU's id."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _ms(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": 1e3 * statistics.median(seconds), "mean_ms": 1e3 * statistics.fmean(seconds)}


def bench_kind(kind: str, scenario: str, frames: int) -> dict:
    """End-to-end frames/s through World.frames, then each stage on its own at the same frame times."""
    build_s, world = _timed(lambda: World(KIND_SEEDS[kind], scenario, kind))
    next(iter(world.frames(1)))  # warm-up: loads (or compiles) the numba kernels, fills caches
    iterator = world.frames(frames)
    frame_s = []
    for _ in range(frames):
        seconds, _ = _timed(lambda: next(iterator))
        frame_s.append(seconds)

    camera_s, event_render_s, event_sim_s, lidar_s, event_counts = [], [], [], [], []
    width, height = world.models.event.image_size
    simulator = EventSimulator(width, height, world.event_config, seed=world.seed)
    before = world.time_of(-1)
    simulator.reset(world.event_log_intensity(before), world.stamp_of(before))
    substeps = world.event_substeps
    for index in range(frames):
        time_s = world.time_of(index)
        rng = np.random.default_rng([world.seed, index])
        camera_s.append(_timed(lambda: world.render_camera(time_s, rng))[0])
        times = world.time_of(index - 1) + world.frame_period_s * np.arange(1, substeps + 1) / substeps
        seconds, logs = _timed(lambda: np.stack([world.event_log_intensity(t) for t in times]))
        event_render_s.append(seconds)
        stamps = np.array([world.stamp_of(t) for t in times], np.int64)
        seconds, events = _timed(lambda: simulator.step(logs, stamps))
        event_sim_s.append(seconds)
        event_counts.append(len(events))
        lidar_s.append(_timed(lambda: world.lidar_scan(time_s, rng))[0])
    return {
        "seed": world.seed,
        "primitives": len(world.scene.primitives),
        "event_substeps": substeps,
        "world_build_s": build_s,
        "frames": frames,
        "frames_per_s": frames / sum(frame_s),
        "frame": _ms(frame_s),
        "stages": {
            "render_camera (rgb, thermal, depth, labels)": _ms(camera_s),
            f"event renders ({substeps} x event_log_intensity)": _ms(event_render_s),
            "event simulation (EventSimulator.step)": _ms(event_sim_s),
            "lidar_scan": _ms(lidar_s),
        },
        "events_per_frame": statistics.fmean(event_counts),
    }


def bench_simulator(args: argparse.Namespace) -> dict:
    """One section: the full frame of the default rig, for both scene kinds."""
    rig = RigSpec()
    kinds = {kind: bench_kind(kind, args.scenario, args.frames) for kind in KIND_SEEDS}
    slowest = min(result["frames_per_s"] for result in kinds.values())
    return {
        "rig": {"camera": f"{rig.camera.width}x{rig.camera.height}",
                "thermal": "x".join(map(str, rig.camera.model("thermal", rig.thermal_scale).image_size)),
                "event": "x".join(map(str, rig.camera.model("event", rig.event_scale).image_size)),
                "lidar": f"{rig.lidar.beams} beams x {rig.lidar.columns} columns"},
        "scenario": args.scenario,
        "kinds": kinds,
        "frames_per_s_min": slowest,
        "target_frames_per_s": TARGET_FRAMES_PER_S,
        "meets_target": slowest >= TARGET_FRAMES_PER_S,
    }


def bench_dataset(args: argparse.Namespace) -> dict:
    """Training samples (320x180, rgb + thermal + events + labels) per second: rendered, and read from the cache."""
    import tempfile

    from seg_perception.sim.dataset import SimDataset, SimDatasetConfig

    config = SimDatasetConfig(samples=args.samples)
    SimDataset("val", SimDatasetConfig(samples=1))[0]  # compile outside the timing

    def rate(dataset: SimDataset) -> float:
        seconds, _ = _timed(lambda: [dataset[i] for i in range(len(dataset))])
        return len(dataset) / seconds

    with tempfile.TemporaryDirectory() as cache:
        rendered = rate(SimDataset("train", config, cache_dir=cache))
        cached = rate(SimDataset("train", config, cache_dir=cache))
        size = sum(f.stat().st_size for f in Path(cache).iterdir()) / config.samples
    return {"size": f"{config.width}x{config.height}", "modalities": list(config.modalities), "samples": config.samples,
            "samples_per_scene": config.samples_per_scene, "rendered_samples_per_s": rendered,
            "cached_samples_per_s": cached, "cache_bytes_per_sample": size}


# Sections of the report, by name: each takes the parsed arguments and returns a JSON-able dict.
SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {"simulator": bench_simulator, "dataset": bench_dataset}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10, help="timed frames per scene kind")
    parser.add_argument("--scenario", default="day", help="day, dusk, night or fog")
    parser.add_argument("--samples", type=int, default=32, help="dataset samples to time")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    args = parser.parse_args()
    cpu = pin_to_one_core()
    result = {
        "benchmark": "sim",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1,
                    "pinned_cpu": cpu},
    }
    for name in args.sections:
        result[name] = SECTIONS[name](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
