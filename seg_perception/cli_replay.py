"""The replay subcommands of `seg-perception`: replay (score bags) and demo (simulate, then replay)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from dataclasses import replace
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
    parser.add_argument("--topic", action="append", default=[], metavar="ROLE=TOPIC",
                        help="override a topic (repeatable), e.g. rgb=/front/image_raw/compressed or lidar=none "
                             "(roles: the config's topics keys)")
    parser.add_argument("--labels-dir", type=Path, default=None,
                        help="ground-truth label images named by stamp, for bags without a label topic")
    parser.add_argument("--camera-info", type=Path, default=None, metavar="YAML",
                        help="camera calibration (camera_calibration YAML), for bags without camera_info")
    parser.add_argument("--no-map", dest="map", action="store_false", help="segment and score only, no voxel map")
    parser.add_argument("--model", default=None,
                        help="override the config's model (also your own .onnx/.plan network with a model card)")
    parser.add_argument("--card", default=None, metavar="YAML",
                        help="model card of your own network (default: embedded in the .onnx or <model>.yaml beside it)")
    parser.add_argument("--class-map", default=None, metavar="MAP",
                        help="label map that remaps or merges the model's classes before publishing and scoring "
                             "(a name in config/label_maps or a YAML path)")
    parser.add_argument("--gt-map", default=None, metavar="MAP",
                        help="label map from the ground truth's ids to the published classes, for scoring")
    parser.add_argument("--backend", default=None, help="override the config's backend")
    parser.add_argument("--realtime", action="store_true",
                        help="play at the bags' rate into the live scheduler (newest frame wins) and count drops")
    parser.add_argument("--workers", type=int, default=1, help="bags replayed in parallel processes (default: 1)")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="replay one task per bag on the Dask distributed scheduler at ADDRESS (tcp://HOST:PORT); "
                             "bags and --out must be at the same paths on every worker")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per inference (default: the config's; 0: one, with a frame per core "
                             "segmented at once)")
    parser.add_argument("--no-bag", dest="record", action="store_false", help="do not write output bags")
    parser.set_defaults(run=_replay)


def _replay(args: argparse.Namespace) -> int:
    from seg_perception.engines import EngineError
    from seg_perception.evaluation import summary_table
    from seg_perception.io import BagError
    from seg_perception.pipeline import ConfigError, PipelineConfig
    from seg_perception.pipeline.cluster import ClusterError, replay_on_cluster
    from seg_perception.pipeline.replay import ReplayOptions, replay

    try:
        if args.cluster and args.workers != 1:
            raise ConfigError(f"--workers {args.workers} with --cluster: the cluster's workers replay the bags; "
                              "leave --workers out")
        config = PipelineConfig.load(args.config)
        config = config.with_overrides(
            model=args.model, card=args.card, class_map=args.class_map, gt_map=args.gt_map, backend=args.backend,
            threads=args.threads, topics=_topics(config.topics, args.topic),
            labels_dir=args.labels_dir and str(args.labels_dir),
            camera_info_file=args.camera_info and str(args.camera_info),
            mapping=None if args.map else replace(config.mapping, enabled=False))
        options = ReplayOptions(realtime=args.realtime, record=args.record, progress=sys.stderr.isatty())
        if args.cluster:
            report = replay_on_cluster(args.bags, config, args.out, options, address=args.cluster)
        else:
            report = replay(args.bags, config, args.out, options, workers=args.workers)
    except (BagError, ConfigError, EngineError, ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary_table(report))
    print(f"report: {args.out / 'report.md'}")
    return _exit_status(report)


def _exit_status(report: Any) -> int:
    """0 when every bag was replayed and frames came out of them; else 1, with one line on stderr saying why."""
    from seg_perception.pipeline.replay import BAG_FAILED

    failed = sorted(k.split(": ", 1)[1] for k in report.skipped if k.startswith(BAG_FAILED))
    if failed:
        print(f"error: {len(failed)} bag(s) failed and are not in the report: {', '.join(failed)} (the log says why)",
              file=sys.stderr)
        return 1
    if not report.frames:
        print("error: no frame was replayed (check --topic and the report's skipped reasons)", file=sys.stderr)
        return 1
    return 0


def _topics(topics: dict[str, str | None], flags: list[str]) -> dict[str, str | None] | None:
    """The config's topics with --topic ROLE=TOPIC flags applied ("none" leaves a role out)."""
    from seg_perception.pipeline import ConfigError, PipelineConfig
    from seg_perception.pipeline.config import DEFAULT_TOPICS

    if not flags:
        return None
    changed = dict(topics)
    for flag in flags:
        role, sep, topic = flag.partition("=")
        if not sep or role not in DEFAULT_TOPICS:
            raise ConfigError(f"--topic {flag!r}: expected ROLE=TOPIC with a role of {', '.join(DEFAULT_TOPICS)}")
        changed[role] = None if topic.lower() in ("", "none") else topic
    return PipelineConfig.from_dict({"topics": changed}, "--topic flags").topics


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

    import json
    import shutil

    started = time.monotonic()
    bags = []
    settings = {"frames": args.frames, "seed": args.seed}
    recorded = args.out / "bags" / "settings.json"
    if recorded.exists() and json.loads(recorded.read_text()) != settings:  # other arguments: simulate anew
        shutil.rmtree(args.out / "bags")
    for scenario in DEMO_SCENARIOS:
        path = args.out / "bags" / scenario
        if not path.exists():
            print(f"simulating a {args.frames}-frame {scenario} drive → {path}")
            write_bag(path, World(args.seed, scenario), args.frames, compress_rgb=True, progress=sys.stderr.isatty())
        bags.append(path)
    recorded.write_text(json.dumps(settings))
    config = PipelineConfig.load()
    config = config.with_overrides(topics={**config.topics, "rgb": config.topics["rgb"] + "/compressed"})
    print(f"replaying {len(bags)} bags with {config.model}")
    report = replay(bags, config, args.out / "replay", ReplayOptions(progress=sys.stderr.isatty()))
    print()
    print(summary_table(report))
    print()
    real = replay_camvid_frames(args.out / "replay_camvid")
    print(f"real frames: {real.frames} CamVid val frames (data/camvid_val10) with student_camvid, "
          f"mIoU {real.confusion.miou() * 100:.1f} %")
    print()
    print(f"output bags: {args.out / 'replay'}/<scenario> (MCAP; open in Foxglove or RViz)")
    print(f"report:      {args.out / 'replay' / 'report.md'} (+ report.json, confusion.png, class_iou.png, "
          f"latency.png, worst_frames.png)")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def replay_camvid_frames(out: Path) -> Any:
    """Replay the 10 real CamVid validation frames the package ships (data/camvid_val10) with the CamVid
    student and score them against their hand-made labels; returns the report."""
    from seg_perception.pipeline import PipelineConfig
    from seg_perception.pipeline.replay import ReplayOptions, replay
    from seg_perception.resources import resource_dir

    bag = resource_dir("data/camvid_val10", "README.md") / "bag"
    config = PipelineConfig.load()
    topics = {role: None for role in config.topics}
    config = replace(config, model="student_camvid", topics={**topics, "rgb": "/camera/image_raw/compressed",
                                                             "labels": "/camera/labels"},
                     mapping=replace(config.mapping, enabled=False))
    return replay([bag], config, out, ReplayOptions(progress=sys.stderr.isatty()))


SUBCOMMANDS: tuple[Any, ...] = (_add_replay, _add_demo)
