"""A carded network's cost against running the same ONNX file directly with onnxruntime. Prints JSON.

The network is SegFormer-shaped: dynamic-size input `pixel_values`, ImageNet mean/std, 19-class logits at
1/4 resolution, run at 640x352 on 640x360 camera frames (letterboxed: multiples of 32). Three ways,
interleaved frame by frame so the machine's phases hit all alike, each with one onnxruntime thread:

- carded: `Segmenter(model, card)` end to end (pre-processing, inference, post-processing);
- direct: `session.run` on the already prepared input tensor (inference alone);
- direct with numpy: what a user writes by hand around the same session (cv2.resize, normalise, run,
  argmax and softmax max in numpy, nearest resize back).

    python bench/bench_cards.py [--frames 40]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import torch
import yaml
from torch import nn

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


class SegFormerShaped(nn.Module):
    """Strided convolutions to 1/8, a light decoder back to 1/4: ~2 GFLOP at 640x352."""

    def __init__(self, classes: int = 19) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())

        self.encoder = nn.Sequential(block(3, 32, 2), block(32, 64, 2), block(64, 64, 1), block(64, 128, 2),
                                     block(128, 128, 1), block(128, 128, 1))
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.head = nn.Sequential(block(128, 64, 1), nn.Conv2d(64, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.encoder(x)))


def build(folder: Path) -> Path:
    path = folder / "segformer_shaped.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SegFormerShaped().eval(), (torch.zeros(1, 3, 352, 640),), str(path),
                          input_names=["pixel_values"], output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"pixel_values": {2: "h", 3: "w"}, "logits": {2: "h4", 3: "w4"}})
    path.with_suffix(".yaml").write_text(yaml.safe_dump({
        "label_set": "cityscapes19",
        "input": {"mean": MEAN.tolist(), "std": STD.tolist(), "size": [640, 352], "multiple": 32,
                  "resize": "letterbox"}}))
    return path


def direct_numpy(session: onnxruntime.InferenceSession, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hand-written pipeline: letterbox 640x360 → 640x352, normalise, run, argmax, resize back."""
    h, w = frame.shape[:2]
    scale = min(640 / w, 352 / h)
    bw, bh = round(w * scale), round(h * scale)
    x0, y0 = (640 - bw) // 2, (352 - bh) // 2
    canvas = np.zeros((352, 640, 3), np.float32)
    canvas[y0:y0 + bh, x0:x0 + bw] = (cv2.resize(frame, (bw, bh), interpolation=cv2.INTER_AREA) / 255.0 - MEAN) / STD
    logits = session.run(None, {"pixel_values": canvas.transpose(2, 0, 1)[None]})[0][0]
    labels = logits.argmax(0).astype(np.uint8)
    exp = np.exp(logits - logits.max(0))
    confidence = 1.0 / exp.sum(0)
    box = (slice(y0 // 4, (y0 + bh) // 4), slice(x0 // 4, (x0 + bw) // 4))
    return (cv2.resize(labels[box], (w, h), interpolation=cv2.INTER_NEAREST),
            cv2.resize(confidence[box], (w, h), interpolation=cv2.INTER_NEAREST))


def main() -> None:
    from seg_perception.engines import Segmenter
    from seg_perception.sim import World

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        path = build(Path(folder))
        segmenter = Segmenter(path, backend="onnxruntime", threads=1)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        frames = [f.rgb for f in World(0, "day").frames(4, lidar=False)]
        prepared = segmenter.preprocess(frames[0])[0]["pixel_values"].numpy()
        timings: dict[str, list[float]] = {"carded_total": [], "carded_pre": [], "carded_inference": [],
                                           "carded_post": [], "direct_inference": [], "direct_numpy_total": []}
        for i in range(args.frames + 3):
            frame = frames[i % len(frames)]
            result = segmenter.segment(rgb=frame)
            start = time.perf_counter()
            session.run(None, {"pixel_values": prepared})
            direct = time.perf_counter() - start
            start = time.perf_counter()
            direct_numpy(session, frame)
            by_hand = time.perf_counter() - start
            if i < 3:  # warm-up
                continue
            timings["carded_total"].append(result.timing["total"])
            timings["carded_pre"].append(result.timing["preprocess"])
            timings["carded_inference"].append(result.timing["inference"])
            timings["carded_post"].append(result.timing["postprocess"])
            timings["direct_inference"].append(direct * 1e3)
            timings["direct_numpy_total"].append(by_hand * 1e3)
    median = {k: float(np.median(v)) for k, v in timings.items()}
    print(json.dumps({
        "model": "SegFormer-shaped, 19 classes, logits at 1/4, run at 640x352 (letterbox) on 640x360 frames",
        "threads": 1, "frames": args.frames, "median_ms": {k: round(v, 3) for k, v in median.items()},
        "pre_plus_post_share_of_end_to_end": round((median["carded_pre"] + median["carded_post"])
                                                   / median["carded_total"], 4),
        "carded_inference_over_direct_session_run": round(median["carded_inference"] / median["direct_inference"] - 1,
                                                          4),
        "carded_end_to_end_over_direct_with_numpy_pre_post": round(median["carded_total"]
                                                                   / median["direct_numpy_total"] - 1, 4),
    }, indent=2))


if __name__ == "__main__":
    main()
