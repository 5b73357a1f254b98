"""Replay overhead (issue #7): replay frames/s against pure inference frames/s for the same model and
frames. Replay = read and decode the bag, synchronise, segment, score, write the output bag; pure
inference = `Segmenter.segment` on the decoded frames, one after another with the library's default
threads (all cores) and with the threads replay gives each inference (`inference_threads`), and
frame-parallel as replay segments on a CPU (`segment_workers` frames at once, each on its threads).
The overhead is given against the best sequential figure (a single stream, as a live node runs)
and against the frame-parallel one. Mapping is off for the comparison (it is reported separately,
as its own workload, with LiDAR and voxel scoring), and so is the output bag in one more run.

Two bags: the simulator's full drive (camera, thermal, events, LiDAR, depth: MCAP chunks mix the
sensors, so reading the camera decompresses them all) and a camera-only recording of the same
drive (image, labels, camera_info, TF), which isolates the pipeline's own cost from the bag's
layout. Reading the camera topics of the full drive is timed alone too, through the MCAP message
index (as replay reads) and with every chunk decompressed whole (as rosbags reads). Each figure
is the best of `--repeats` runs (the machines are shared). Prints JSON.

    python bench/bench_replay.py [--frames 60] [--model student_rgb] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from seg_perception.engines import Segmenter
from seg_perception.io import BagReader, BagWriter, image_to_array
from seg_perception.io.compressed import compressed_to_array
from seg_perception.pipeline import MappingConfig, PipelineConfig
from seg_perception.pipeline.replay import ReplayOptions, inference_threads, replay_bag, segment_workers
from seg_perception.sim import World
from seg_perception.sim.bag import write_bag

RGB = "/camera/image_raw/compressed"
CAMERA = (RGB, "/camera/labels", "/camera/camera_info")
CAMERA_ONLY = (*CAMERA, "/tf", "/tf_static")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--model", default="student_rgb")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        bag, camera_bag = Path(scratch) / "drive", Path(scratch) / "camera_only"
        write_bag(bag, World(110_000, "day"), args.frames, compress_rgb=True)
        _copy_topics(bag, camera_bag, CAMERA_ONLY)
        base = PipelineConfig.load()
        config = replace(base, model=args.model, topics={**base.topics, "rgb": RGB})
        replay_threads, workers = inference_threads(config), segment_workers(config)
        with BagReader(bag) as reader:
            frames = [compressed_to_array(m.msg) for m in reader.messages([RGB])]
            thermal = [image_to_array(m.msg) for m in reader.messages(["/thermal/image_raw"])]
        inference = {}
        # The library's default threads first: a Segmenter with `threads` sets torch's process-wide pool.
        for threads in (None, replay_threads):
            segmenter = Segmenter(config.model, threads=threads)
            given = [{"rgb": rgb, **({"thermal": t} if "thermal" in segmenter.modalities else {})}
                     for rgb, t in zip(frames, thermal)]
            for frame in given[:3]:  # warm-up, as the replay's first frames warm up too
                segmenter.segment(**frame)
            inference[f"{threads or 'default'}_threads"] = _best(args.repeats, lambda: _frames_per_s(segmenter, given))
        with ThreadPoolExecutor(workers) as pool:  # `segmenter` has replay's threads now
            parallel = _best(args.repeats, lambda: _frames_per_s(segmenter, given, pool))
        results = {}
        camera = replace(config, topics={r: t if t in CAMERA_ONLY else None for r, t in config.topics.items()})
        no_map = MappingConfig(enabled=False)
        runs = {"replay": (bag, replace(config, mapping=no_map), True),
                "replay_without_output_bag": (bag, replace(config, mapping=no_map), False),
                "replay_camera_only_bag": (camera_bag, replace(camera, mapping=no_map), True),
                "replay_with_mapping": (bag, config, True)}
        for name, (path, run_config, record) in runs.items():
            options = ReplayOptions(record=record)
            replay_bag(path, run_config, Path(scratch) / "warm", options, segmenter=segmenter)

            def run() -> float:
                start = time.perf_counter()
                report = replay_bag(path, run_config, Path(scratch) / name, options, segmenter=segmenter)
                return report.frames / (time.perf_counter() - start)

            results[name] = round(_best(args.repeats, run), 2)
        reading = {way: round(1e3 / _best(args.repeats, lambda: _read_per_s(bag, args.frames, way)), 2)
                   for way in ("message_index", "whole_chunks")}
    sequential = max(inference.values())
    inference[f"frame_parallel_{workers}x{replay_threads}_threads"] = parallel

    def overhead(run: str) -> dict[str, float]:
        return {"vs_sequential_inference": round(1 - results[run] / sequential, 3),
                "vs_frame_parallel_inference": round(1 - results[run] / parallel, 3)}

    print(json.dumps({
        "model": args.model, "frames": args.frames, "cores": len(os.sched_getaffinity(0)),
        "inference_frames_per_s": {name: round(fps, 2) for name, fps in inference.items()},
        "replay_inference_threads": replay_threads, "replay_segment_workers": workers,
        "replay_frames_per_s": results,
        "replay_overhead": overhead("replay"),
        "replay_overhead_camera_only_bag": overhead("replay_camera_only_bag"),
        "camera_topics_read_cpu_ms_per_frame": reading,
    }, indent=2))
    return 0


def _frames_per_s(segmenter: Segmenter, given: list[dict], pool: ThreadPoolExecutor | None = None) -> float:
    start = time.perf_counter()
    if pool is None:
        for frame in given:
            segmenter.segment(**frame)
    else:
        list(pool.map(lambda frame: segmenter.segment(**frame), given))
    return len(given) / (time.perf_counter() - start)


def _best(repeats: int, run) -> float:
    return max(run() for _ in range(repeats))


def _read_per_s(bag: Path, frames: int, way: str) -> float:
    """Frames per CPU second of reading and deserialising the camera topics of `bag`."""
    start = time.process_time()
    if way == "message_index":
        with BagReader(bag) as reader:
            for _ in reader.messages(CAMERA):
                pass
    else:
        from rosbags.highlevel import AnyReader

        with AnyReader([bag]) as reader:
            connections = [c for c in reader.connections if c.topic in CAMERA]
            for connection, _, raw in reader.messages(connections=connections):
                reader.deserialize(raw, connection.msgtype)
    return frames / (time.process_time() - start)


def _copy_topics(source: Path, target: Path, topics: tuple[str, ...]) -> None:
    """A recording of only `topics`, as `ros2 bag record` of them would have made it (zstd chunks)."""
    with BagReader(source) as reader, BagWriter(target, compress=True) as writer:
        for message in reader.messages(topics):
            writer.write(message.topic, message.msg, message.log_time_ns, latched=message.topic == "/tf_static")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
