"""Latency of the students against ENet's architecture (Paszke et al. 2016, random weights) on ONNX Runtime:
same input size (480x360 by default, CamVid's), same threads, the sessions timed round by round side by
side so that the ratios hold on a noisy machine. Students: the default config and any `--student NAME=JSON`
overrides (or checkpoints with `--checkpoint`), at their default K (and K = 0 with `--k-zero`, for the cost
of Top-K refinement). Prints JSON.

    python bench/bench_enet.py --threads 1 --student 'wide={"widths":[48,96,160],"decoder_width":96}'
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from seg_perception.models import build_model, load_checkpoint, stack_inputs, student_config


class _Initial(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 13, 3, 2, 1, bias=False)
        self.pool = nn.MaxPool2d(2, 2)
        self.bn, self.act = nn.BatchNorm2d(16), nn.PReLU(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


def _cbr(cin: int, cout: int, kernel: tuple[int, int] | int, stride: int = 1, padding: tuple[int, int] | int = 0,
         dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.PReLU(cout))


class _Bottleneck(nn.Module):
    """ENet bottleneck: 1x1 (or 2x2 stride 2) reduce by 4, a regular / dilated / asymmetric 5 / transposed
    conv, 1x1 expand; max-pool (down) or max-unpool (up) on the main branch."""

    def __init__(self, cin: int, cout: int, kind: str = "regular", dilation: int = 1) -> None:
        super().__init__()
        mid = cout // 4 if kind != "up" else cin // 4
        self.kind = kind
        if kind == "down":
            self.reduce = _cbr(cin, mid, 2, 2)
            self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        else:
            self.reduce = _cbr(cin, mid, 1)
        if kind == "asym":
            self.conv = nn.Sequential(_cbr(mid, mid, (5, 1), padding=(2, 0)), _cbr(mid, mid, (1, 5), padding=(0, 2)))
        elif kind == "up":
            self.conv = nn.Sequential(nn.ConvTranspose2d(mid, mid, 3, 2, 1, output_padding=1, bias=False),
                                      nn.BatchNorm2d(mid), nn.PReLU(mid))
            self.main = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.conv = _cbr(mid, mid, 3, padding=dilation, dilation=dilation)
        self.expand = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.Dropout2d(0.1))
        self.act = nn.PReLU(cout)
        self.pad = cout - cin

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        branch = self.expand(self.conv(self.reduce(x)))
        if self.kind == "down":
            main, indices = self.pool(x)
            main = torch.cat([main, main.new_zeros(main.shape[0], self.pad, *main.shape[2:])], 1)
        elif self.kind == "up":
            main = _unpool(self.main(x), indices)
        else:
            main = x
        return self.act(main + branch), indices


def _unpool(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Max-unpooling by 2 as a scatter (what MaxUnpool2d computes; this torch cannot trace MaxUnpool2d)."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, 4 * h * w).scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, 2 * h, 2 * w)


class ENet(nn.Module):
    """ENet's encoder and decoder as published (0.36 M parameters for 12 classes)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.initial = _Initial()
        self.down1 = _Bottleneck(16, 64, "down")
        self.stage1 = nn.ModuleList(_Bottleneck(64, 64) for _ in range(4))
        self.down2 = _Bottleneck(64, 128, "down")
        middle = [("regular", 1), ("dilated", 2), ("asym", 1), ("dilated", 4), ("regular", 1), ("dilated", 8),
                  ("asym", 1), ("dilated", 16)]
        self.stage23 = nn.ModuleList(_Bottleneck(128, 128, kind if kind == "asym" else "regular", d)
                                     for kind, d in middle * 2)
        self.up4 = _Bottleneck(128, 64, "up")
        self.stage4 = nn.ModuleList(_Bottleneck(64, 64) for _ in range(2))
        self.up5 = _Bottleneck(64, 16, "up")
        self.stage5 = _Bottleneck(16, 16)
        self.full = nn.ConvTranspose2d(16, classes, 2, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial(x)
        x, i1 = self.down1(x)
        for block in self.stage1:
            x, _ = block(x)
        x, i2 = self.down2(x)
        for block in self.stage23:
            x, _ = block(x)
        x, _ = self.up4(x, i2)
        for block in self.stage4:
            x, _ = block(x)
        x, _ = self.up5(x, i1)
        x, _ = self.stage5(x)
        return self.full(x)


class _Logits(nn.Module):
    def __init__(self, model: nn.Module, k: int | None) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return self.model(x, present, self.k)["logits"]


def _session(model: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], folder: Path, name: str,
             threads: int):
    import onnxruntime as ort

    path = folder / f"{name}.onnx"
    torch.onnx.export(model.eval(), inputs, str(path), input_names=names, output_names=["logits"], opset_version=17,
                      dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, {n: t.numpy() for n, t in zip(names, inputs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(480, 360), metavar=("W", "H"))
    parser.add_argument("--classes", type=int, default=12, help="logits (CamVid: 11 classes + void = 12)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--student", action="append", default=[], metavar="NAME=JSON",
                        help="a student config override to time, e.g. 'wide={\"widths\":[48,96,160]}'")
    parser.add_argument("--checkpoint", action="append", default=[], type=Path, help="a checkpoint to time")
    parser.add_argument("--k-zero", action="store_true", help="also time each student at K = 0 (no refinement)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, height = args.size
    image = torch.rand(1, 3, height, width)
    models: dict[str, tuple[nn.Module, int]] = {}
    for spec in ["default={}", *args.student]:
        name, _, overrides = spec.partition("=")
        config = student_config(args.classes, ("rgb",), **json.loads(overrides))
        models[name] = (build_model(config), config.default_k(height, width))
    for path in args.checkpoint:
        checkpoint = load_checkpoint(path)
        models[path.stem] = (checkpoint.model, checkpoint.config.default_k(height, width))
    if args.k_zero:
        models.update({f"{name}@k0": (model, 0) for name, (model, k) in list(models.items()) if k > 0})
    sessions, parameters = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        enet = ENet(args.classes)
        sessions["enet"] = _session(enet, (image,), ["x"], Path(folder), "enet", args.threads)
        parameters["enet"] = sum(p.numel() for p in enet.parameters())
        for name, (model, k) in models.items():
            x, present = stack_inputs({m: image for m in model.config.modalities if m == "rgb"}, model.config)
            sessions[name] = _session(_Logits(model, k), (x, present), ["x", "present"], Path(folder), name.replace("@", "_"),
                                      args.threads)
            parameters[name] = sum(p.numel() for p in model.parameters())
        for session, feed in sessions.values():
            for _ in range(3):
                session.run(None, feed)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.rounds):
            for name, (session, feed) in sessions.items():
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    session.run(None, feed)
                    times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    print(json.dumps({
        "bench": "enet_latency", "backend": "onnxruntime CPU", "size": [width, height], "threads": args.threads,
        "latency_ms": {n: round(v, 2) for n, v in median.items()},
        "parameters_m": {n: round(v / 1e6, 3) for n, v in parameters.items()},
        "enet_over_model": {n: round(median["enet"] / v, 2) for n, v in median.items() if n != "enet"},
        "default_k": {n: k for n, (_, k) in models.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
