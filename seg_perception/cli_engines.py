"""The engine subcommands of `seg-perception`: card, export, build-engine, bench."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PARITY_FRAMES = 4  # frames of the synthetic world that `export` checks parity on


def _size(text: str) -> tuple[int, int]:
    """An argparse type: WxH, e.g. 640x360."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; expected WIDTHxHEIGHT, e.g. 640x360") from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"{text} is too small; at least 32x32")
    return width, height


def _card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--card", type=Path, default=None, metavar="YAML",
                        help="model card of your own .onnx or .plan network (default: embedded in the .onnx, or "
                             "<model>.yaml beside it)")
    parser.add_argument("--class-map", default=None, metavar="MAP",
                        help="remap or merge the model's classes (a name in config/label_maps or a YAML path)")


def _model_options(parser: argparse.ArgumentParser, precisions: tuple[str, ...]) -> None:
    """--model, card options, --size, --k, --precision (and --calibration where int8 is offered), cache flags."""
    parser.add_argument("--model", default=None,
                        help="shipped model name, .safetensors checkpoint, exported .onnx, or your own .onnx/.plan "
                             "with a model card (default: the shipped RGB + thermal + events student)")
    _card_options(parser)
    parser.add_argument("--size", type=_size, default=None, metavar="WxH",
                        help="model input size (default: the model's training size)")
    parser.add_argument("--k", type=int, default=None, help="locations the student refines (default: its refine "
                                                            "fraction; 0: base prediction)")
    parser.add_argument("--precision", choices=precisions, default="fp32", help="(default: %(default)s)")
    if "int8" in precisions:
        parser.add_argument("--calibration", type=int, default=64, metavar="N",
                            help="int8: calibrate on N frames of the synthetic world's validation split (default: 64)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="exports, quantised models and engines (default: $SEG_PERCEPTION_CACHE or "
                             "~/.cache/seg_perception)")
    parser.add_argument("--no-rebuild", dest="rebuild", action="store_false",
                        help="fail instead of rebuilding a cached artefact that is stale or corrupt")


def _calibration(count: int) -> Any:
    from seg_perception.engines import Calibration
    from seg_perception.sim.dataset import calibration_frames

    return Calibration(f"sim-val-{count}", lambda: calibration_frames(count))


def _reporting_errors(command: Any, args: argparse.Namespace) -> int:
    """Run an engine command; an EngineError (no TensorRT here, a stale plan with --no-rebuild, ...)
    is a message and exit status 1, not a traceback."""
    from seg_perception.engines import EngineError

    try:
        return command(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _add_card(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "card", help="check a model card against your own ONNX network, print what was found, optionally embed it",
        description="Resolve a model card against an ONNX (or TensorRT) network: the input and output tensors, "
                    "layout, element type, run size, output kind and resolution, label set and class map. Runs the "
                    "network once on ONNX Runtime at its run size to measure the output resolution. With --embed, "
                    "writes a copy of the ONNX file that carries the card in its metadata.")
    parser.add_argument("model", type=Path, help="the .onnx (or .plan) network")
    _card_options(parser)
    parser.add_argument("--size", type=_size, default=None, metavar="WxH",
                        help="run size for a dynamic-size network (default: the card's, else each frame's own)")
    parser.add_argument("--embed", type=Path, default=None, metavar="OUT",
                        help="write the network with the card embedded here (a .onnx file)")
    parser.set_defaults(run=lambda args: _reporting_errors(_card, args))


def _card(args: argparse.Namespace) -> int:
    import numpy as np

    from seg_perception.engines import EngineError, Segmenter
    from seg_perception.engines.export import embed_card

    segmenter = Segmenter(args.model, card=args.card, class_map=args.class_map, input_size=args.size,
                          backend="onnxruntime" if args.model.suffix == ".onnx" else "tensorrt")
    source = segmenter.source
    if source.card is None:
        raise EngineError(f"{args.model} is a seg_perception export; it needs no card")
    width, height = source.binding.run_size((640, 480))
    frame = np.zeros((height, width, 3), np.uint8)
    feeds, _ = segmenter.preprocess(frame)
    output = segmenter.engine.infer(feeds, (source.binding.output.name,))[source.binding.output.name]
    found = {"model": str(args.model), "model_id": source.model_id, "label_set": source.label_set.name,
             "classes": source.label_set.num_classes, "published_label_set": segmenter.label_set.name,
             **source.binding.describe(),
             "measured": {"input_size": [width, height], "output_shape": list(output.shape)}}
    print(json.dumps(found, indent=2))
    if args.embed is not None:
        from seg_perception.engines.card import with_overrides

        embed_card(args.model, with_overrides(source.card, size=args.size, class_map=args.class_map), args.embed)
        print(f"wrote {args.embed} with the card embedded", file=sys.stderr)
    return 0


def _add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("export", help="export a checkpoint to ONNX (Top-K refinement inside), checked",
                                 description="Export a checkpoint to ONNX with static shapes. The file carries the label "
                                             "set and input contract; it is checked by the ONNX checker and against "
                                             "PyTorch with ONNX Runtime on frames of the synthetic world. Your own "
                                             "ONNX network with its card is copied with the card embedded.")
    _model_options(parser, ("fp32", "fp16"))
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.set_defaults(run=lambda args: _reporting_errors(_export, args))


def _export(args: argparse.Namespace) -> int:
    from seg_perception.engines import DEFAULT_MODEL, ModelSource, Preprocessor, export_onnx
    from seg_perception.engines.export import check_parity

    source = ModelSource.open(args.model or DEFAULT_MODEL, args.card)
    if source.card is not None:
        from seg_perception.engines.card import with_overrides
        from seg_perception.engines.export import embed_card

        card = with_overrides(source.card, size=args.size, class_map=args.class_map)
        source = source.with_card(card)
        embed_card(source.path, card, args.out)
        print(json.dumps({"onnx": str(args.out), "card": source.binding.describe()}, indent=2))
        return 0
    spec = source.spec(input_size=args.size, k=args.k, precision=args.precision)
    checkpoint = source.checkpoint()
    if sys.stderr.isatty():  # the export and its parity check take seconds
        print(f"exporting {source.model_id} at {spec.width}x{spec.height} and checking it against PyTorch ...",
              file=sys.stderr)
    export_onnx(checkpoint, args.out, spec)
    config = source.config
    preprocess = Preprocessor(config.modalities, config.event_bins, spec.width, spec.height)
    feeds = [preprocess.feed(frame) for frame in _calibration(PARITY_FRAMES).frames()]
    parity = check_parity(checkpoint, args.out, spec, feeds)
    print(json.dumps({"onnx": str(args.out), "spec": spec.to_dict(), "parity": parity}, indent=2))
    if spec.precision == "fp32" and parity["label_agreement"] < 0.999:
        print(f"error: ONNX Runtime and PyTorch labels agree on only {parity['label_agreement']:.4%} of pixels",
              file=sys.stderr)
        return 1
    return 0


def _add_build_engine(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("build-engine", help="build a TensorRT engine (plan + metadata file)",
                                 description="Build a strongly typed TensorRT engine from a checkpoint or ONNX export "
                                             "for this GPU and TensorRT version. The metadata file <out>.json records "
                                             "what it was built for; a stale or corrupt plan is rebuilt.")
    _model_options(parser, ("fp32", "fp16", "int8"))
    parser.add_argument("--out", type=Path, required=True, help="plan file to write (or check and reuse)")
    parser.set_defaults(run=lambda args: _reporting_errors(_build_engine, args))


def _build_engine(args: argparse.Namespace) -> int:
    from seg_perception.engines import DEFAULT_MODEL, Segmenter

    segmenter = Segmenter(args.model or DEFAULT_MODEL, backend="tensorrt", device="cuda", precision=args.precision,
                          input_size=args.size, k=args.k, cache_dir=args.cache_dir, rebuild=args.rebuild,
                          calibration=_calibration(args.calibration) if args.precision == "int8" else None,
                          plan=args.out, card=args.card, class_map=args.class_map)
    print(json.dumps(segmenter.describe(), indent=2))
    return 0


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("bench", help="latency (p50/p90/p99 per stage), throughput and memory per backend",
                                 description="Benchmark backends on frames of the synthetic world (640x360 RGB, "
                                             "320x180 thermal and events). Each configuration runs in a fresh process, "
                                             "so its peak memory is its own. Prints JSON.")
    parser.add_argument("--model", default="student_rgb", help="model (default: student_rgb)")
    _card_options(parser)
    parser.add_argument("--backends", nargs="+", default=["torch:fp32", "onnxruntime:fp32", "onnxruntime:int8"],
                        metavar="BACKEND:PRECISION", help="configurations, e.g. torch:fp32 torch:bf16 onnxruntime:int8 "
                                                          "tensorrt:fp16 (default: %(default)s)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(640, 360)], metavar="WxH",
                        help="model input sizes (default: 640x360)")
    parser.add_argument("--k", nargs="+", default=["default"], metavar="K",
                        help="refined locations: integers or 'default' (default: default)")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the library's choice)")
    parser.add_argument("--channels-last", action="store_true", help="PyTorch: channels_last memory format")
    parser.add_argument("--calibration", type=int, default=64, metavar="N", help="int8 calibration frames")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.set_defaults(run=_bench)


def _bench(args: argparse.Namespace) -> int:
    import multiprocessing
    import platform
    from concurrent.futures import ProcessPoolExecutor

    from seg_perception.engines import BACKENDS
    from seg_perception.engines.spec import PRECISIONS

    for entry in args.backends:
        backend, _, precision = entry.partition(":")
        if backend not in BACKENDS or (precision or "fp32") not in PRECISIONS:
            print(f"error: --backends {entry!r}: expected BACKEND:PRECISION with a backend of {', '.join(BACKENDS)} "
                  f"and a precision of {', '.join(PRECISIONS)}", file=sys.stderr)
            return 2
    frames = bench_frames()
    results = []
    for size in args.sizes:
        for k in args.k:
            for entry in args.backends:
                backend, _, precision = entry.partition(":")
                case = {"model": args.model, "backend": backend, "device": args.device, "precision": precision or "fp32",
                        "input_size": size, "k": None if k == "default" else int(k), "threads": args.threads,
                        "channels_last": args.channels_last, "cache_dir": args.cache_dir, "card": args.card,
                        "class_map": args.class_map}
                # A fresh process per configuration: its peak memory and thread pools are its own.
                if sys.stderr.isatty():  # each case takes seconds to a minute: say which runs
                    print(f"bench: {entry} at {size[0]}x{size[1]}, k={k} ...", file=sys.stderr)
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    results.append(pool.submit(_bench_case, case, frames, args.iterations, args.warmup,
                                               args.calibration).result())
    report = {"model": args.model, "machine": {"cpu": platform.processor() or platform.machine(),
                                               "cores": multiprocessing.cpu_count()},
              "frames": {m: list(v.shape) if hasattr(v, "shape") else [v.height, v.width] for m, v in frames[0].items()},
              "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


def _bench_case(case: dict[str, Any], frames: list[dict[str, Any]], iterations: int, warmup: int,
                calibration: int) -> dict[str, Any]:
    from seg_perception.engines import EngineError, Segmenter
    from seg_perception.engines.benchmark import measure

    case = dict(case)
    try:
        segmenter = Segmenter(case.pop("model"), **case,
                              calibration=_calibration(calibration) if case["precision"] == "int8" else None)
    except EngineError as exc:
        return {**_describe_case(case), "skipped": str(exc)}
    given = [{m: f[m] for m in segmenter.modalities if m in f} for f in frames]
    return {**segmenter.describe(), **measure(segmenter, given, iterations=iterations, warmup=warmup)}


def _describe_case(case: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in case.items()}


def bench_frames(count: int = 4) -> list[dict[str, Any]]:
    """Frames of a synthetic drive as the rig records them: rgb 640x360, thermal counts and the last
    50 ms of events at 320x180."""
    from seg_perception.io.encoding import EVENT_WINDOW_NS, EventWindow
    from seg_perception.sim import World

    world = World(0, "day")
    width, height = world.models.event.image_size
    frames = []
    for frame in list(world.frames(count + 1, lidar=False))[1:]:
        start = frame.stamp_ns - EVENT_WINDOW_NS
        recent = frame.events[frame.events["t"] > start]
        frames.append({"rgb": frame.rgb, "thermal": frame.thermal,
                       "events": EventWindow(recent, width, height, start, frame.stamp_ns)})
    return frames


SUBCOMMANDS = (_add_card, _add_export, _add_build_engine, _add_bench)
