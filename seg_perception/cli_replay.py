"""The replay subcommands of `seg-perception`: replay (score bags) and demo (simulate, then replay)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEMO_SCENARIOS = ("day", "night")


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay", help="replay bags through the pipeline, record the outputs and score them",
        description="Replay rosbag2 (MCAP, SQLite3) or ROS 1 bags through the perception pipeline: segment, label "
                    "the LiDAR, fuse the voxel map; write an output MCAP bag per input bag and a scored report "
                    "(report.json, report.md, plots) against the ground-truth label topic.")
    parser.add_argument("bags", nargs="+", type=Path, metavar="BAG")
    parser.add_argument("--out", type=Path, required=True, help="output folder: report, plots, output bags")
    parser.add_argument("--config", type=Path, default=None,
                        help="pipeline YAML (topics, model, sync, mapping; default: config/pipeline/sim.yaml)")
    parser.add_argument("--model", default=None, help="override the config's model")
    parser.add_argument("--backend", default=None, help="override the config's backend")
    parser.add_argument("--realtime", action="store_true",
                        help="play at the bags' rate into the live scheduler (newest frame wins) and count drops")
    parser.add_argument("--workers", type=int, default=1, help="bags replayed in parallel processes (default: 1)")
    parser.add_argument("--no-bag", dest="record", action="store_false", help="do not write output bags")
    parser.set_defaults(run=_replay)


def _replay(args: argparse.Namespace) -> int:
    from seg_perception.evaluation import summary_table
    from seg_perception.io import BagError
    from seg_perception.pipeline import ConfigError, PipelineConfig
    from seg_perception.pipeline.replay import ReplayOptions, replay

    try:
        config = PipelineConfig.load(args.config).with_overrides(model=args.model, backend=args.backend)
        report = replay(args.bags, config, args.out, ReplayOptions(realtime=args.realtime, record=args.record,
                                                                  progress=sys.stderr.isatty()),
                        workers=args.workers)
    except (BagError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary_table(report))
    print(f"report: {args.out / 'report.md'}")
    return 0


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo", help="simulate a day and a night drive, replay them with the shipped student, print the scores",
        description="The main job on its embedded default: write two short synthetic drives (day, night) as bags, "
                    "replay them through the pipeline with the shipped RGB + thermal + events student, and print "
                    "mIoU per scenario, frames/s and latency, and where the output bags, report and pictures are.")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    parser.add_argument("--frames", type=int, default=20, help="frames per drive, at 10 Hz (default: 20)")
    parser.add_argument("--seed", type=int, default=110_000, help="scene seed (default: a held-out test scene)")
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    from seg_perception.evaluation import summary_table
    from seg_perception.pipeline import PipelineConfig
    from seg_perception.pipeline.replay import ReplayOptions, replay
    from seg_perception.sim import World
    from seg_perception.sim.bag import write_bag

    started = time.monotonic()
    bags = []
    for scenario in DEMO_SCENARIOS:
        path = args.out / "bags" / scenario
        if not path.exists():
            print(f"simulating a {args.frames}-frame {scenario} drive → {path}")
            write_bag(path, World(args.seed, scenario), args.frames, compress_rgb=True, progress=sys.stderr.isatty())
        bags.append(path)
    config = PipelineConfig.load()
    config = config.with_overrides(topics={**config.topics, "rgb": config.topics["rgb"] + "/compressed"})
    print(f"replaying {len(bags)} bags with {config.model}")
    report = replay(bags, config, args.out / "replay", ReplayOptions(progress=sys.stderr.isatty()))
    print()
    print(summary_table(report))
    print()
    print(f"output bags: {args.out / 'replay'}/<scenario> (MCAP; open in Foxglove or RViz)")
    print(f"report:      {args.out / 'replay' / 'report.md'} (+ report.json, confusion.png, class_iou.png, "
          f"latency.png, worst_frames.png)")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


SUBCOMMANDS: tuple[Any, ...] = (_add_replay, _add_demo)
