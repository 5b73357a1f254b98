"""Replay overhead (issue #7): replay frames/s against pure inference frames/s for the same model and
frames. Replay = read and decode the bag, synchronise, segment, score, write the output bag; pure
inference = `Segmenter.segment` on the decoded frames. Mapping is off for the comparison (it is
reported separately, as its own workload, with LiDAR and voxel scoring), and so is the output bag in
one more run. Prints JSON.

    python bench/bench_replay.py [--frames 60] [--model student_rgb]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from seg_perception.engines import Segmenter
from seg_perception.io import BagReader, image_to_array
from seg_perception.io.compressed import compressed_to_array
from seg_perception.pipeline import MappingConfig, PipelineConfig
from seg_perception.pipeline.replay import ReplayOptions, replay_bag
from seg_perception.sim import World
from seg_perception.sim.bag import write_bag


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--model", default="student_rgb")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        bag = Path(scratch) / "drive"
        write_bag(bag, World(110_000, "day"), args.frames, compress_rgb=True)
        base = PipelineConfig.load()
        config = replace(base, model=args.model, topics={**base.topics, "rgb": "/camera/image_raw/compressed"})
        segmenter = Segmenter(config.model)
        with BagReader(bag) as reader:
            frames = [compressed_to_array(m.msg) for m in reader.messages(["/camera/image_raw/compressed"])]
            thermal = [image_to_array(m.msg) for m in reader.messages(["/thermal/image_raw"])]
        given = [{"rgb": rgb, **({"thermal": t} if "thermal" in segmenter.config.modalities else {})}
                 for rgb, t in zip(frames, thermal)]
        for frame in given[:3]:  # warm-up, as the replay's first frames warm up too
            segmenter.segment(**frame)
        start = time.perf_counter()
        for frame in given:
            segmenter.segment(**frame)
        inference_fps = len(given) / (time.perf_counter() - start)
        results = {}
        runs = {"replay": (False, True), "replay_without_output_bag": (False, False),
                "replay_with_mapping": (True, True)}
        for name, (mapping, record) in runs.items():
            run_config = replace(config, mapping=MappingConfig(enabled=mapping))
            options = ReplayOptions(record=record)
            replay_bag(bag, run_config, Path(scratch) / "warm", options, segmenter=segmenter)
            start = time.perf_counter()
            report = replay_bag(bag, run_config, Path(scratch) / name, options, segmenter=segmenter)
            elapsed = time.perf_counter() - start
            results[name] = {"frames": report.frames, "frames_per_s": round(report.frames / elapsed, 2)}
    replay_fps = results["replay"]["frames_per_s"]
    print(json.dumps({"model": args.model, "frames": args.frames, "inference_frames_per_s": round(inference_fps, 2),
                      **results, "replay_overhead": round(1 - replay_fps / inference_fps, 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
