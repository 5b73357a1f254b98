"""The `seg-perception` command: one subcommand per task, each importing what it needs when it runs."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from seg_perception import __version__
from seg_perception.cli_engines import SUBCOMMANDS as ENGINE_SUBCOMMANDS
from seg_perception.cli_evaluate import SUBCOMMANDS as EVALUATE_SUBCOMMANDS
from seg_perception.cli_replay import SUBCOMMANDS as REPLAY_SUBCOMMANDS


class _LazyChoices:
    """The choices of an option, read from the package only when an argument is checked or help is shown,
    so that building the parser imports nothing heavy."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def _values(self) -> tuple[str, ...]:
        return tuple(getattr(importlib.import_module(self.module), self.name))

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ `minimum`."""
    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; {wanted} expected") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is invalid; {wanted} expected")
        return value

    return parse


def _new_path(text: str) -> Path:
    path = Path(text)
    if path.exists():
        raise argparse.ArgumentTypeError(f"{path} already exists; choose a new path or delete it")
    return path


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "simulate",
        help="write a synthetic multi-modal drive (RGB, thermal, events, LiDAR, TF, ground truth) as a rosbag2",
        description="Render a drive through a procedural world and write it as a rosbag2 with standard messages "
                    "on conventional topics (see seg_perception.sim.bag for the topic table).",
    )
    parser.add_argument("--out", type=_new_path, required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--frames", type=_int_at_least(1), default=20, help="camera frames at 10 Hz (default: 20)")
    # An explicit metavar: argparse would otherwise read the choices while building the parser.
    parser.add_argument("--scenario", choices=_LazyChoices("seg_perception.sim", "SCENARIOS"), default="day",
                        metavar="SCENARIO", help="lighting and weather: %(choices)s (default: %(default)s)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0, help="scene and drive; same seed, same bag (default: 0)")
    parser.add_argument("--storage", choices=_LazyChoices("seg_perception.io.bags", "STORAGES"), default="mcap",
                        metavar="STORAGE", help="rosbag2 storage: %(choices)s (default: %(default)s)")
    parser.add_argument("--kind", choices=_LazyChoices("seg_perception.sim", "KINDS"), default=None, metavar="KIND",
                        help="scene kind: %(choices)s (default: alternates with the seed)")
    parser.add_argument("--no-lidar", dest="lidar", action="store_false", help="skip /lidar/points and /lidar/labels")
    parser.add_argument("--no-events", dest="events", action="store_false", help="skip /events and /events/camera_info")
    parser.add_argument("--compress", action="store_true",
                        help="RGB as jpeg on /camera/image_raw/compressed instead of rgb8 on /camera/image_raw "
                             "(default: raw rgb8)")
    parser.add_argument("--no-zstd", dest="zstd", action="store_false",
                        help="write the bag without zstd compression (default: zstd, lossless)")
    parser.add_argument("--preview", type=Path, metavar="PNG",
                        help="also write a contact sheet: every modality of the middle frame, one row per scenario")
    parser.set_defaults(run=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from seg_perception.sim import World
    from seg_perception.sim.bag import write_bag

    world = World(args.seed, args.scenario, kind=args.kind)
    summary = write_bag(args.out, world, args.frames, storage=args.storage, lidar=args.lidar, events=args.events,
                        compress_rgb=args.compress, zstd=args.zstd, progress=sys.stderr.isatty())
    print(f"wrote {summary.path} ({summary.storage}): {summary.frames} frames, "
          f"{summary.size_bytes / 1e6:.1f} MB, {(summary.end_ns - summary.start_ns) / 1e9:.2f} s, "
          f"topics: {' '.join(summary.topics)}")
    if args.preview is not None:
        from seg_perception.sim.preview import scenario_sheet

        scenario_sheet(args.seed, args.frames // 2, args.preview, kind=args.kind)
        print(f"wrote contact sheet {args.preview}")
    return 0


def _training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, state for --resume, summary")
    parser.add_argument("--modalities", nargs="+", default=["rgb"], choices=("rgb", "thermal", "events"),
                        help="inputs the model takes (default: rgb)")
    parser.add_argument("--data", default="sim",
                        help="'sim' (the synthetic world), the root of an image/label folder dataset (Cityscapes, "
                             "<split>/images + <split>/labels, or SegNet/CamVid <split>/ + <split>annot/) or a "
                             "dataset YAML (docs/datasets.md)")
    parser.add_argument("--label-set", default=None,
                        help="label set name or YAML (default: sim_offroad on sim; on folders the label map's target "
                             "or the dataset YAML's)")
    parser.add_argument("--label-map", default=None, help="folder datasets: label mapping YAML (name or path)")
    parser.add_argument("--samples", type=_int_at_least(1), default=1600, help="sim: training samples (default: 1600)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="sim: cache rendered samples here")
    parser.add_argument("--size", type=_int_at_least(16), nargs=2, default=None, metavar=("W", "H"),
                        help="training image size (default: 320 180 on sim; on folders 320 wide with the frames' "
                             "aspect ratio, the height a multiple of 16, e.g. 320 240 for 4:3)")
    parser.add_argument("--stretch", action="store_true",
                        help="folders: allow a --size of another aspect ratio than the frames' (they are stretched)")
    parser.add_argument("--epochs", type=_int_at_least(1), default=20, help="passes over the training set "
                                                                          "(default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-clock budget: stop when spent (compare methods at equal training time)")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=8, help="samples a step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of AdamW (default: %(default)s)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="seed of initialisation, order and augmentation (default: %(default)s)")
    parser.add_argument("--workers", type=_int_at_least(0), default=0, help="data loader processes")
    parser.add_argument("--threads", type=_int_at_least(1), default=None, help="CPU threads for torch (default: all)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--augment", action="store_true",
                        help="folders: random scale 0.5-2, random crop to --size, flip, brightness/contrast/saturation "
                             "jitter (default: flips only)")
    parser.add_argument("--class-weights", choices=("none", "enet"), default="none",
                        help="weight the cross-entropy by class: enet = 1 / ln(1.02 + pixel share) (default: none)")
    parser.add_argument("--ohem", type=float, default=0.25,
                        help="share of the hardest pixels the cross-entropy keeps; 0 keeps all (default: 0.25)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16 autocasts the forward passes (CPUs with AVX512-BF16/AMX, GPUs) (default: fp32)")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC tensors: oneDNN's fast layout on CPUs, with --precision bf16 about 1.9x on the teacher")
    parser.add_argument("--schedule", choices=("cosine", "poly"), default="cosine",
                        help="learning-rate decay over the budget (--minutes, else the epochs) (default: cosine)")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="share of the budget with a linear learning-rate warm-up (default: 0)")
    parser.add_argument("--eval-every", type=_int_at_least(1), default=1,
                        help="validate every N epochs and at the end (default: 1)")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=JSON", type=_override,
                        help="model config override, e.g. --model 'widths=[48,96,160]' --model decoder_width=96 "
                             "(keys: seg_perception.models.ModelConfig)")


def _override(text: str) -> tuple[str, object]:
    """An argparse type: KEY=JSON → (key, value)."""
    import json

    key, sep, value = text.partition("=")
    try:
        if not sep or not key:
            raise ValueError("no '='")
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=JSON (e.g. 'widths=[48,96,160]')") from None


def _train_config(args: argparse.Namespace, architecture: str, teacher: str | None) -> object:
    import torch

    from seg_perception.training import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    return TrainConfig(out=args.out, architecture=architecture, modalities=tuple(args.modalities),
                       label_set=args.label_set, data=args.data, label_map=args.label_map,
                       train_samples=args.samples, cache_dir=args.cache_dir,
                       image_size=tuple(args.size) if args.size else None, stretch=args.stretch,
                       epochs=args.epochs, minutes=args.minutes, batch_size=args.batch_size, lr=args.lr,
                       teacher=teacher, teacher_card=getattr(args, "teacher_card", None),
                       teacher_class_map=getattr(args, "teacher_class_map", None), seed=args.seed,
                       workers=args.workers, resume=args.resume,
                       augment=args.augment, class_weights=args.class_weights, ohem_fraction=args.ohem,
                       precision=args.precision, channels_last=args.channels_last, schedule=args.schedule,
                       warmup=args.warmup, eval_every=args.eval_every, model_overrides=dict(args.model),
                       images=getattr(args, "images", None), bags=tuple(getattr(args, "bags", ())),
                       topic=getattr(args, "topic", None))


def _add_train(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("train", help="train a teacher or a student from labels",
                                 description="Train a segmenter from labels. Runs on the CPU or GPUs; "
                                             "under torchrun it uses DistributedDataParallel.")
    parser.add_argument("--arch", choices=("student", "teacher"), default="student")
    _training_options(parser)
    parser.set_defaults(run=lambda args: _train(_train_config(args, args.arch, None)))


def _add_distill(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("distill", help="train a student from labels (or frames alone) and a teacher",
                                 description="Distil a student: labels plus the teacher's logits (KL, temperature) "
                                             "and, from a seg_perception teacher, its features (through a learned "
                                             "projection). The teacher may be your own ONNX or TensorRT network "
                                             "with its model card (README: Your own model). With --images or --bags, no labels are needed: the "
                                             "teacher's most likely class stands in for them.")
    parser.add_argument("--teacher", required=True,
                        help="shipped teacher name, .safetensors checkpoint, or your own .onnx/.plan network")
    parser.add_argument("--teacher-card", default=None, metavar="YAML",
                        help="model card of a teacher network (default: embedded in the .onnx or beside it)")
    parser.add_argument("--teacher-class-map", default=None, metavar="MAP",
                        help="label map from a teacher network's classes onto the student's label set")
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument("--images", default=None, metavar="DIR",
                        help="label-free: learn from the images under DIR and the teacher alone (no labels); "
                             "--data, if given, is only validated on (its val split)")
    frames.add_argument("--bags", nargs="+", default=(), metavar="BAG",
                        help="label-free: learn from the colour images of these rosbags and the teacher alone")
    parser.add_argument("--topic", default=None, help="--bags: the image topic (default: the bags' one colour image "
                                                      "topic)")
    _training_options(parser)
    parser.set_defaults(run=lambda args: _train(_train_config(args, "student", args.teacher)))


def _train(config: object) -> int:
    from seg_perception.labels import LabelSetError
    from seg_perception.models import ModelError
    from seg_perception.training import FolderDatasetError, train
    from seg_perception.training.teachers import TeacherError

    try:
        summary = train(config)  # type: ignore[arg-type]
    except (FolderDatasetError, LabelSetError, ModelError, TeacherError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    scored = f"best val mIoU {summary['best_val_miou'] * 100:.1f}" if summary["best_val_miou"] >= 0 else "not validated"
    print(f"{scored} after {summary['steps']} steps ({summary['elapsed_s'] / 60:.1f} min); checkpoints in "
          f"{config.out}")  # type: ignore[attr-defined]
    return 0


# Each adds its subparser, whose `run` default takes the parsed arguments and returns the exit status.
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_simulate, _add_train, _add_distill, *ENGINE_SUBCOMMANDS, *REPLAY_SUBCOMMANDS, *EVALUATE_SUBCOMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seg-perception",
        description="Semantic perception for ROS 2 robots: segment, label LiDAR, fuse voxel maps, replay and score bags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status.

    Invalid arguments exit with status 2 and a message, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
