"""The evaluate subcommand of `seg-perception`: score a model on an image/label dataset, as replay scores bags."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seg_perception.cli_engines import _size


def _count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return int(text)


def _add_evaluate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "evaluate", help="score a model on an image/label dataset (mIoU, boundary IoU, confusion, latency)",
        description="Segment every frame of a dataset split with a model (shipped name, checkpoint or ONNX file) and "
                    "write the report replay writes (report.json, report.md, plots, worst frames). Datasets are read "
                    "where they are: Cityscapes, <split>/images + <split>/labels, SegNet/CamVid <split>/ + "
                    "<split>annot/, or a dataset YAML (docs/datasets.md).")
    parser.add_argument("--model", required=True, help="shipped model name, .safetensors checkpoint or .onnx file")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or dataset YAML")
    parser.add_argument("--split", default="val", help="split to score (default: val)")
    parser.add_argument("--out", type=Path, default=Path("out/evaluate"),
                        help="report folder (default: out/evaluate)")
    parser.add_argument("--label-map", default=None,
                        help="map the dataset's label ids onto the model's label set (name or YAML path)")
    parser.add_argument("--label-set", default=None,
                        help="label set of the dataset's ids (default: the label map's target, the dataset YAML's, "
                             "else the model's)")
    parser.add_argument("--size", type=_size, default=None, metavar="WxH",
                        help="model input size (default: the model's training size)")
    parser.add_argument("--stretch", action="store_true",
                        help="allow a --size of another aspect ratio than the frames'")
    parser.add_argument("--backend", default="auto",
                        help="auto, torch, onnxruntime or tensorrt (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the library's choice)")
    parser.add_argument("--k", type=_count, default=None,
                        help="locations a student refines (Top-K of its selector; 0: its base prediction; default: "
                             "its refine fraction of the 1/4-resolution grid)")
    parser.set_defaults(run=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from seg_perception.engines import EngineError, SegmenterInputError
    from seg_perception.evaluation import EvaluationError, summary_table
    from seg_perception.labels import LabelSetError
    from seg_perception.training import FolderDatasetError

    try:
        report = _score(args)
    except (FolderDatasetError, EngineError, EvaluationError, LabelSetError, SegmenterInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary_table(report))
    print(f"report: {args.out / 'report.md'}")
    return 0


def _score(args: argparse.Namespace) -> Any:
    from seg_perception.engines import Segmenter
    from seg_perception.pipeline.folder_eval import evaluate_folder, scored_label_set
    from seg_perception.training import FolderDataset
    from seg_perception.training.sizes import ASPECT_TOLERANCE, aspect_change, check_aspect

    # The dataset first: a wrong folder or split is reported before a model is loaded.
    dataset = FolderDataset(args.data, args.split, args.label_map, label_set=args.label_set)
    source = dataset.source_size()
    if args.size is not None and not args.stretch:
        check_aspect(args.size, source, joiner="x")
    segmenter = Segmenter(args.model, backend=args.backend, input_size=args.size, threads=args.threads, k=args.k)
    if dataset.label_set is None:  # the ids are taken as the model's, and checked against its label set on reading
        print(f"note: the dataset's label set is not given (--label-set, --label-map or a dataset YAML); its ids are "
              f"read as the model's ({segmenter.label_set.name})", file=sys.stderr)
        dataset = FolderDataset(args.data, args.split, args.label_map, label_set=segmenter.label_set)
    scored_label_set(segmenter.label_set, dataset.label_set)  # label sets that differ: said before any work
    size = segmenter.spec.size
    if args.size is None and aspect_change(size, source) > ASPECT_TOLERANCE:
        print(f"note: {args.model} takes {size[0]}x{size[1]} frames (its training size); the {source[0]}x{source[1]} "
              f"frames are stretched to it (give --size to choose another)", file=sys.stderr)
    return evaluate_folder(segmenter, dataset, args.out, progress=sys.stderr.isatty())


SUBCOMMANDS: tuple[Any, ...] = (_add_evaluate,)
