"""Training speed on a folder dataset (CamVid by default): steps/s of the training loop's step, before and
after the CPU training changes, measured side by side (modes interleaved round by round, the same process,
the same threads), so that the ratios hold on a noisy shared machine.

Modes: `before` is the loop as it was (fp32, flips only, OHEM; its step is reproduced here); `augment` is the new loop in fp32 (scale/crop/flip/jitter
augmentation, class weights, no OHEM); `bf16` adds bf16 autocast and channels-last tensors to that (what the
CamVid runs use). With
`--teacher`, also a distillation step (online teacher) in fp32 and bf16. Frames are decoded into memory
before timing (the steady state from the second epoch on). Prints JSON.

    python bench/bench_training.py --data /work/shared/datasets/camvid --label-set camvid11 --threads 1
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from seg_perception.models import (
    build_model, modality_dropout, stack_inputs, student_config, teacher_config)
from seg_perception.training.losses import FeatureKD, cross_entropy, logit_kd, selector_loss
from seg_perception.training.teachers import CheckpointTeacher
from seg_perception.training.trainer import TrainConfig, _class_weights, _datasets, _step, resolve


def _mode(base: TrainConfig, name: str, teacher_path: Path | None) -> dict:
    changes = {"before": {}, "augment": dict(augment=True, class_weights="enet", ohem_fraction=0.0),
               "bf16": dict(augment=True, class_weights="enet", ohem_fraction=0.0, precision="bf16",
                                 channels_last=True)}
    config = replace(base, **changes[name.split("+")[0]])
    config, label_set = resolve(config)
    factory = student_config if config.architecture == "student" else teacher_config
    model_config = factory(label_set.num_classes, config.modalities, **config.model_overrides)
    model = build_model(model_config).train()
    teacher = CheckpointTeacher(teacher_path, label_set) if name.endswith("+kd") else None
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.model = teacher.model.to(memory_format=torch.channels_last)
    feature_kd = FeatureKD(model_config.decoder_width, teacher.feature_width) if teacher else None
    parameters = list(model.parameters()) + (list(feature_kd.parameters()) if feature_kd else [])
    train_set, _ = _datasets(config, label_set)
    weights = _class_weights(config, train_set, label_set.num_classes)  # also decodes every frame into memory
    loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True)
    return {"config": config, "model_config": model_config, "model": model, "teacher": teacher,
            "feature_kd": feature_kd, "optimizer": torch.optim.AdamW(parameters, lr=config.lr), "weights": weights,
            "ignore": label_set.ignore_id, "batches": iter(loader), "loader": loader,
            "generator": torch.Generator().manual_seed(0), "before": name.startswith("before")}


def _step_before(run: dict, batch: dict) -> torch.Tensor:
    """The training step as it was before (commit c5f05d1): every head's loss at full resolution, fp32."""
    config, model_config, ignore = run["config"], run["model_config"], run["ignore"]
    labels = batch["labels"]
    drop = modality_dropout(len(labels), len(model_config.modalities), config.modality_dropout, run["generator"])
    x, present = stack_inputs({m: batch[m] for m in model_config.modalities}, model_config, drop)
    out = run["model"](x, present)
    loss = cross_entropy(out["logits"], labels, ignore_id=ignore, ohem_fraction=config.ohem_fraction)
    if "coarse" in out:
        loss = loss + 0.4 * cross_entropy(out["coarse"], labels, ignore_id=ignore, ohem_fraction=config.ohem_fraction)
        loss = loss + 0.5 * cross_entropy(out["point_logits"], labels, ignore_id=ignore,
                                          ohem_fraction=config.ohem_fraction)
        loss = loss + 0.5 * selector_loss(out["selector"], out["coarse"], labels, ignore)
    if run["teacher"] is not None:
        with torch.no_grad():
            target = run["teacher"].model(x, present)
        loss = loss + config.kd_weight * logit_kd(out["logits"], target["logits_quarter"], config.kd_temperature,
                                                  labels, ignore)
        loss = loss + config.feature_kd_weight * run["feature_kd"](out["features"], target["features"])
    return loss


def _steps(run: dict, steps: int) -> float:
    """Seconds for `steps` training steps (data loading included)."""
    started = time.perf_counter()
    for _ in range(steps):
        try:
            batch = next(run["batches"])
        except StopIteration:
            run["batches"] = iter(run["loader"])
            batch = next(run["batches"])
        if run["before"]:
            loss = _step_before(run, batch)
        else:
            loss = _step(run["model"], run["model_config"], batch, run["config"], run["ignore"], run["generator"],
                         run["teacher"], run["feature_kd"], None, run["weights"])
        run["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        run["optimizer"].step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/datasets/camvid")
    parser.add_argument("--label-set", default="camvid11")
    parser.add_argument("--arch", choices=("student", "teacher"), default="student")
    parser.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint: also time distillation steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="steps per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = TrainConfig(out=Path("unused"), architecture=args.arch, data=args.data, label_set=args.label_set,
                       batch_size=args.batch_size)
    names = ["before", "augment", "bf16"] + (["before+kd", "bf16+kd"] if args.teacher else [])
    runs = {name: _mode(base, name, args.teacher) for name in names}
    for run in runs.values():
        _steps(run, 1)  # warm-up: allocator, oneDNN kernels
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            seconds[name].append(_steps(runs[name], args.steps))
    rates = {name: args.steps / statistics.median(values) for name, values in seconds.items()}
    size = runs["before"]["config"].image_size
    print(json.dumps({
        "bench": "training", "data": args.data, "arch": args.arch, "size": list(size), "batch_size": args.batch_size,
        "threads": args.threads, "steps_per_round": args.steps, "rounds": args.rounds,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "steps_per_s": {name: round(rate, 3) for name, rate in rates.items()},
        "ratio_to_before": {name: round(rate / rates["before"], 2) for name, rate in rates.items()},
        **({"kd_ratio_bf16_to_fp32": round(rates["bf16+kd"] / rates["before+kd"], 2)} if args.teacher else {}),
    }, indent=2))


if __name__ == "__main__":
    main()
