"""Model results: accuracy on the held-out synthetic test split (day and night) and CPU latency.

Prints JSON and writes docs/results.md. Rows (issue #4): the teacher; the student trained without
KD; the distilled student at K = 0, a small, the default and a large K; RGB-only vs RGB + thermal
at night. Latency is the median of `--repeat` forward passes at 640x360 on this CPU with PyTorch
eager fp32 (`--threads` threads); accuracy is measured at the 320x180 training resolution.

    python bench/bench_models.py --weights seg_perception/weights --cache-dir out/cache
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from seg_perception.models import load_checkpoint, stack_inputs
from seg_perception.sim.dataset import SimDataset, SimDatasetConfig
from seg_perception.training.evaluate import evaluate

TEST_SAMPLES = 96
MODELS = {  # row name → checkpoint file in --weights
    "teacher": "teacher_rgb_thermal_events.safetensors",
    "student_no_kd": "student_rgb_thermal_events_no_kd.safetensors",
    "student_kd": "student_rgb_thermal_events.safetensors",
    "student_rgb": "student_rgb.safetensors",
}


def latency_ms(model, modalities, k, repeat: int) -> float:
    x, present = stack_inputs({m: torch.rand(1, model.config.channels(m), 360, 640) for m in modalities}, model.config)
    with torch.inference_mode():
        for _ in range(3):
            model(x, present, k)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            model(x, present, k)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def onnxruntime_latency_ms(checkpoint, threads: int, repeat: int) -> float | None:
    """The distilled student at 640x360 through ONNX Runtime (CPU, all graph optimisations), default K."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import tempfile

    model = checkpoint.model
    x, present = stack_inputs({m: torch.rand(1, model.config.channels(m), 360, 640) for m in model.config.modalities},
                              model.config)

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
            return self.model(x, present)["logits"]

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "student.onnx"
        torch.onnx.export(Logits().eval(), (x, present), str(path), input_names=["x", "present"],
                          output_names=["logits"], opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy(), "present": present.numpy()}
        for _ in range(3):
            session.run(None, feed)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def test_set(scenario: str, cache_dir: Path | None) -> SimDataset:
    return SimDataset("test", SimDatasetConfig(samples=TEST_SAMPLES, scenarios=((scenario, 1.0),)), cache_dir=cache_dir)


def row(name, checkpoint, sets, *, modalities=None, fraction=None, repeat=20) -> dict:
    """Scores and latency of one model; `fraction`: share of 1/4-resolution locations refined (None: default)."""
    model = checkpoint.model
    given = tuple(modalities or model.config.modalities)

    def k(height: int, width: int) -> int | None:
        return None if fraction is None else model.k_for_fraction(fraction, height, width)

    result = {"row": name, "model_id": checkpoint.model_id, "modalities": list(given),
              "refine_fraction": fraction, "parameters": sum(p.numel() for p in model.parameters()),
              "latency_ms_640x360": latency_ms(model, given, k(360, 640), repeat)}
    for scenario, dataset in sets.items():
        scores = evaluate(model, dataset, modalities=given, k=k(180, 320))
        result[f"miou_{scenario}"] = scores["miou"] * 100
        result[f"boundary_miou_{scenario}"] = scores["boundary_miou"] * 100
    return result


def markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# Results", "",
             f"Held-out synthetic test split ({TEST_SAMPLES} day and {TEST_SAMPLES} night samples of the same scenes, "
             "scene seeds 110000+, never seen in training), accuracy at 320x180. mIoU and boundary mIoU "
             "(classes scored only within 3 px of ground-truth label edges) in %. Latency: median PyTorch eager "
             f"fp32 forward at 640x360 on {meta['cpu']} with {meta['threads']} threads.", "",
             "Produced by `python bench/bench_models.py` (see the command in docs/training.md).", "",
             "K is the share of 1/4-resolution locations the point head re-predicts (student only).", "",
             "| model | inputs | K | params | mIoU day | mIoU night | boundary mIoU day | boundary mIoU night | latency ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        k = "—" if r["model_id"].startswith("teacher") else (
            "default (10 %)" if r["refine_fraction"] is None else f"{r['refine_fraction'] * 100:g} %")
        lines.append(f"| {r['row']} | {'+'.join(r['modalities'])} | {k} | {r['parameters'] / 1e6:.2f} M | "
                     f"{r['miou_day']:.1f} | {r['miou_night']:.1f} | {r['boundary_miou_day']:.1f} | "
                     f"{r['boundary_miou_night']:.1f} | {r['latency_ms_640x360']:.1f} |")
    if meta.get("student_onnxruntime_latency_ms_640x360"):
        lines += ["", f"The distilled student through ONNX Runtime (CPU, all graph optimisations, {meta['threads']} "
                      f"threads, default K): {meta['student_onnxruntime_latency_ms_640x360']:.1f} ms at 640x360."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "seg_perception" / "weights")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--markdown", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "results.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoints = {name: load_checkpoint(args.weights / file) for name, file in MODELS.items()}
    sets = {"day": test_set("day", args.cache_dir), "night": test_set("night", args.cache_dir)}
    student = checkpoints["student_kd"]
    rows = [row("teacher", checkpoints["teacher"], sets, repeat=args.repeat),
            row("student, no KD", checkpoints["student_no_kd"], sets, repeat=args.repeat)]
    for label, fraction in (("distilled student, K = 0", 0.0), ("distilled student, small K", 0.025),
                            ("distilled student, default K", None), ("distilled student, large K", 0.25)):
        rows.append(row(label, student, sets, fraction=fraction, repeat=args.repeat))
    rows.append(row("distilled student, RGB only given", student, sets, modalities=("rgb",), repeat=args.repeat))
    rows.append(row("RGB-only student", checkpoints["student_rgb"], sets, repeat=args.repeat))
    meta = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
            "student_onnxruntime_latency_ms_640x360": onnxruntime_latency_ms(student, args.threads, args.repeat)}
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    # Sections after this table (`## ...`, e.g. the CamVid results) are kept.
    previous = args.markdown.read_text() if args.markdown.exists() else ""
    kept = previous[previous.find("\n## "):] if "\n## " in previous else ""
    args.markdown.write_text(markdown(rows, meta) + kept)
    print(json.dumps({"benchmark": "models", "machine": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
