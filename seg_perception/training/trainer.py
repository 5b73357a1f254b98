"""Training and distillation: one loop for teachers and students, on the synthetic world or image folders.

Deterministic for a seed; checkpoints every epoch and resumes; can stop on a wall-clock budget (so
methods can be compared at equal training time); runs as one process on a CPU or under torchrun
with DistributedDataParallel (gloo on CPU, nccl on GPUs).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from seg_perception.labels import LabelSet, load_label_set
from seg_perception.models import (
    ModelConfig,
    build_model,
    modality_dropout,
    save_checkpoint,
    stack_inputs,
    student_config,
    teacher_config,
)

from .evaluate import evaluate
from .losses import FeatureKD, cross_entropy, logit_kd, selector_loss
from .teachers import CheckpointTeacher, load_teacher


@dataclass
class TrainConfig:
    """A training run. `teacher` set: distillation."""

    out: Path
    architecture: str = "student"
    modalities: tuple[str, ...] = ("rgb",)
    label_set: str | None = None           # None: sim_offroad on "sim"; the label map's or dataset YAML's on folders
    data: str = "sim"                      # "sim", or the root (or dataset YAML) of an image/label folder dataset
    label_map: str | None = None           # folder datasets: label mapping YAML (name or path)
    train_samples: int = 1600
    val_samples: int = 128
    image_size: tuple[int, int] | None = None  # sim: (width, height) rendered (None: 320x180); folders: resized
    stretch: bool = False                  # folders: allow an image_size of another aspect ratio than the frames'
    cache_dir: Path | None = None          # sim: rendered samples are cached here
    epochs: int = 20
    minutes: float | None = None           # wall-clock budget; training stops when it is spent
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    teacher: str | None = None             # distil from: a shipped name, a checkpoint, or an .onnx/.plan with its card
    teacher_card: str | None = None        # the model card of a teacher network (default: embedded or beside it)
    teacher_class_map: str | None = None   # a label map from the teacher network's classes onto the student's
    kd_temperature: float = 2.0
    kd_weight: float = 1.0
    feature_kd_weight: float = 0.5
    modality_dropout: float = 0.2
    ohem_fraction: float = 0.25
    seed: int = 0
    workers: int = 0
    resume: bool = False
    model_overrides: dict[str, Any] = field(default_factory=dict)
    augment: bool = False                  # folders: random scale 0.5-2, crop, flip, colour jitter (else flips only)
    class_weights: str = "none"            # "none" or "enet": 1 / ln(1.02 + class pixel share), from the training labels
    precision: str = "fp32"                # "fp32" or "bf16" (autocast of the forward passes)
    channels_last: bool = False            # NHWC tensors (oneDNN's fast layout on CPUs; pays most with bf16)
    warmup: float = 0.0                    # share of the budget (time, else steps) with a linear learning-rate warm-up
    schedule: str = "cosine"               # after the warm-up: "cosine" or "poly" (power 0.9)
    eval_every: int = 1                    # validate every this many epochs (and always at the end)
    images: str | None = None              # label-free: distil from the images of this folder (teacher only)
    bags: tuple[str, ...] = ()             # label-free: distil from the colour images of these rosbags
    topic: str | None = None               # label-free: the bags' image topic (default: their one colour image topic)

    def __post_init__(self) -> None:
        """Raises:
            ValueError: an unknown choice or an out-of-range value.
        """
        for name, value, accepted in (("class_weights", self.class_weights, CLASS_WEIGHTS),
                                      ("precision", self.precision, PRECISIONS), ("schedule", self.schedule, SCHEDULES)):
            if value not in accepted:
                raise ValueError(f"{name} {value!r} is not known; accepted: {', '.join(accepted)}")
        if not 0.0 <= self.warmup < 1.0 or self.eval_every < 1:
            raise ValueError(f"warmup must be in [0, 1) and eval_every >= 1, got {self.warmup!r} and {self.eval_every!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


CLASS_WEIGHTS = ("none", "enet")
PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("cosine", "poly")
SIM_SIZE = (320, 180)
SIM_LABEL_SET = "sim_offroad"


def resolve(config: TrainConfig) -> tuple[TrainConfig, LabelSet]:
    """The config with its image size and label set filled in, and that label set.

    Folder datasets: the size keeps the frames' aspect ratio (`sizes.derived_size` of the first
    training frame) unless given; a given size must keep it unless `stretch`. The label set is the
    given one, else the label map's target, else the dataset YAML's.

    Raises:
        FolderDatasetError: a size that stretches the frames, no label set known, or a bad dataset.
    """
    if config.data == "sim":
        return (replace(config, image_size=tuple(config.image_size or SIM_SIZE), label_set=config.label_set or
                        SIM_LABEL_SET), load_label_set(config.label_set or SIM_LABEL_SET))
    from .folders import FolderDataset, FolderDatasetError
    from .sizes import check_aspect, derived_size

    train_set = FolderDataset(config.data, "train", config.label_map, label_set=config.label_set)
    if train_set.label_set is None:
        raise FolderDatasetError(f"the label set of {config.data} is not known: name it (--label-set, e.g. camvid11), "
                                 f"give a label map onto one (--label-map) or declare it in a dataset YAML")
    source = train_set.source_size()
    size = tuple(config.image_size) if config.image_size else derived_size(source)
    if config.image_size and not config.stretch:
        check_aspect(size, source)
    return replace(config, image_size=size, label_set=config.label_set or train_set.label_set.name), train_set.label_set


def _datasets(config: TrainConfig, label_set: LabelSet) -> tuple[Any, Any]:
    if config.data == "sim":
        # Every modality is rendered whatever the model takes, so that all models see the same
        # samples and share one cache.
        from seg_perception.sim.dataset import SimDataset, SimDatasetConfig

        width, height = config.image_size
        return (SimDataset("train", SimDatasetConfig(samples=config.train_samples, width=width, height=height),
                           cache_dir=config.cache_dir),
                SimDataset("val", SimDatasetConfig(samples=config.val_samples, width=width, height=height),
                           cache_dir=config.cache_dir))
    from seg_perception.label_maps import load_label_map

    from .folders import FolderDataset

    from .augment import Augment

    label_map = load_label_map(config.label_map) if config.label_map else None
    return (FolderDataset(config.data, "train", label_map, config.image_size, label_set=label_set, flip=True,
                          cache=True, augment=Augment() if config.augment else None, seed=config.seed),
            FolderDataset(config.data, "val", label_map, config.image_size, label_set=label_set, cache=True))


def _epoch_order(dataset: Any, seed: int, epoch: int) -> np.ndarray:
    """A shuffled order of the training samples; synthetic scenes stay together, so that an
    uncached run builds each scene's World once per epoch rather than once per sample."""
    from seg_perception.sim.dataset import SceneBlockSampler, SimDataset

    if isinstance(dataset, SimDataset):
        sampler = SceneBlockSampler(dataset, seed)
        sampler.set_epoch(epoch)
        return np.fromiter(sampler, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(len(dataset))


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world


def learning_rate(config: TrainConfig, fraction: float) -> float:
    """The learning rate at `fraction` (0 … 1) of the run: a linear warm-up over `config.warmup`, then
    cosine or poly (power 0.9) decay to zero."""
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < config.warmup:
        return config.lr * (fraction / config.warmup)
    rest = (fraction - config.warmup) / (1.0 - config.warmup)
    if config.schedule == "poly":
        return config.lr * (1.0 - rest) ** 0.9
    return config.lr * 0.5 * (1 + math.cos(math.pi * rest))


def _class_weights(config: TrainConfig, dataset: Any, num_classes: int, teacher: Any = None) -> torch.Tensor | None:
    """Class weights from the training labels' class shares (label-free: from the teacher's predictions)."""
    if config.class_weights == "none":
        return None
    from .label_free import teacher_class_counts
    from .losses import enet_class_weights

    if _label_free(config):
        counts = teacher_class_counts(teacher, dataset, num_classes)
    elif hasattr(dataset, "class_counts"):
        counts = dataset.class_counts(num_classes)
    else:
        counts = np.zeros(num_classes, np.int64)
        for index in range(len(dataset)):
            labels = dataset[index]["labels"].numpy().ravel()
            counts += np.bincount(labels[labels < num_classes], minlength=num_classes)[:num_classes]
    return enet_class_weights(counts.tolist())


def _label_free(config: TrainConfig) -> bool:
    return config.images is not None or bool(config.bags)


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns the summary also written to `out/summary.json`.

    With `images` or `bags`, the run is label-free distillation: the student learns from those frames and
    the teacher alone (its most likely class serves as the label of every head's loss, its logits and
    features are distilled as usual); `data`, where it is a labelled folder dataset, is used only to
    validate.
    """
    from . import label_free

    rank, world = _distributed()
    torch.manual_seed(config.seed)
    config, label_set = label_free.resolve(config) if _label_free(config) else resolve(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    factory = student_config if config.architecture == "student" else teacher_config
    model_config: ModelConfig = factory(label_set.num_classes, tuple(config.modalities), **config.model_overrides)
    model = build_model(model_config)
    teacher = (load_teacher(config.teacher, label_set, card=config.teacher_card, class_map=config.teacher_class_map)
               if config.teacher else None)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if isinstance(teacher, CheckpointTeacher):
            teacher.model = teacher.model.to(memory_format=torch.channels_last)
    train_set, val_set = label_free.datasets(config, label_set) if _label_free(config) else _datasets(config, label_set)
    weights = _class_weights(config, train_set, label_set.num_classes, teacher)
    # The teacher sees every sample the same way every epoch (no augmentation reaches it), so its
    # outputs are computed once and read back: distillation then costs about what plain training does.
    cache_teacher = (isinstance(teacher, CheckpointTeacher) and config.cache_dir is not None
                     and config.data == "sim")
    teacher_outputs = _teacher_dir(config, teacher) if cache_teacher else None
    precompute_s = 0.0
    if teacher_outputs is not None and rank == 0:
        precompute_s = _precompute_teacher(teacher, train_set, teacher_outputs)
    if world > 1:
        torch.distributed.barrier()
    feature_kd = (FeatureKD(model_config.decoder_width, teacher.feature_width)
                  if teacher is not None and teacher.feature_width else None)
    parameters = list(model.parameters()) + (list(feature_kd.parameters()) if feature_kd else [])
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    state = {"epoch": 0, "step": 0, "elapsed_s": 0.0, "history": []}
    if config.resume and (out / "state.pt").exists():
        saved = torch.load(out / "state.pt", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if feature_kd is not None and "feature_kd" in saved:
            feature_kd.load_state_dict(saved["feature_kd"])
        state = json.loads(saved["state"])
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    generator = torch.Generator().manual_seed(config.seed + 1000 * rank)
    budget_s = config.minutes * 60 if config.minutes else None
    steps_per_epoch = max(1, len(train_set) // (config.batch_size * world))
    total_steps = steps_per_epoch * config.epochs
    state["teacher_precompute_s"] = state.get("teacher_precompute_s", 0.0) + precompute_s
    best = max((h["miou"] for h in state["history"]), default=-1.0)
    started = time.monotonic() - state["elapsed_s"]
    for epoch in range(state["epoch"], config.epochs):
        if budget_s is not None and time.monotonic() - started >= budget_s:
            break
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        order = _epoch_order(train_set, config.seed, epoch)[rank::world]
        loader = DataLoader(torch.utils.data.Subset(train_set, order.tolist()), batch_size=config.batch_size,
                            drop_last=True, num_workers=config.workers)
        model.train()
        losses: list[float] = []
        progress = _progress(loader, f"{config.architecture} epoch {epoch + 1}/{config.epochs}", rank)
        for batch in progress:
            elapsed = time.monotonic() - started
            if budget_s is not None and elapsed >= budget_s:
                break
            fraction = elapsed / budget_s if budget_s else state["step"] / total_steps
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, fraction)
            loss = _step(net, model_config, batch, config, label_set.ignore_id, generator, teacher, feature_kd,
                         teacher_outputs, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            state["step"] += 1
            if hasattr(progress, "set_postfix"):
                progress.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        state["elapsed_s"] = time.monotonic() - started
        state["epoch"] = epoch + 1
        last = epoch + 1 == config.epochs or (budget_s is not None and state["elapsed_s"] >= budget_s)
        if (epoch + 1) % config.eval_every and not last:
            if rank == 0:  # resumable every epoch, scored every `eval_every`
                _save_state(out, model, optimizer, feature_kd, state)
            continue
        if val_set is None:  # label-free without a labelled validation split: every checkpoint is the best
            scores: dict[str, Any] = {"miou": None, "boundary_miou": None}
        else:
            scores = evaluate(model, val_set, ignore_id=label_set.ignore_id) if rank == 0 else {"miou": float("nan")}
        record = {"epoch": epoch + 1, "steps": state["step"], "elapsed_s": round(state["elapsed_s"], 1),
                  "steps_per_s": round(state["step"] / max(state["elapsed_s"], 1e-9), 3),
                  "train_loss": float(np.mean(losses)) if losses else None, "miou": scores["miou"],
                  "boundary_miou": scores.get("boundary_miou")}
        state["history"].append(record)
        if rank == 0:
            improved = scores["miou"] is None or scores["miou"] > best
            _save(out, model, optimizer, feature_kd, state, label_set, config, scores, best=improved,
                  teacher=teacher.document if teacher is not None else None)
            best = max(best, scores["miou"]) if scores["miou"] is not None else best
            print(json.dumps(record), flush=True)
        if last:
            break
    summary = {"config": config.to_dict(), "model": model_config.to_dict(), "history": state["history"],
               "best_val_miou": best, "steps": state["step"], "elapsed_s": state["elapsed_s"],
               "teacher_precompute_s": state["teacher_precompute_s"],
               "parameters": sum(p.numel() for p in model.parameters())}
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _step(net: Any, model_config: ModelConfig, batch: dict[str, Any], config: TrainConfig, ignore: int,
          generator: torch.Generator, teacher: Any, feature_kd: FeatureKD | None,
          teacher_outputs: Path | None, weights: torch.Tensor | None = None) -> torch.Tensor:
    target = None
    if teacher is not None and teacher_outputs is None:
        with _autocast(config):
            target = {key: value.float() for key, value in teacher(batch).items()}
    if "labels" in batch:
        labels = batch["labels"]
    else:  # label-free: the teacher's answer is the label
        from .label_free import pseudo_labels

        labels = pseudo_labels(target["logits"], tuple(batch["rgb"].shape[-2:]))
    drop = modality_dropout(len(labels), len(model_config.modalities), config.modality_dropout, generator)
    x, present = stack_inputs({m: batch[m] for m in model_config.modalities}, model_config, drop)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    with _autocast(config):
        out = net(x.contiguous(memory_format=layout), present)
    out = {key: value.float() for key, value in out.items()}
    ce = {"weight": weights, "ignore_id": ignore, "ohem_fraction": config.ohem_fraction}
    loss = cross_entropy(out["logits"], labels, **ce)
    if "coarse" in out:  # student: deep supervision of the coarse head, the point head and the selector
        loss = loss + 0.4 * cross_entropy(out["coarse"], labels, **ce)
        loss = loss + 0.5 * cross_entropy(out["point_logits"], labels, **ce)
        loss = loss + 0.5 * selector_loss(out["selector"], out["coarse"], labels, ignore)
    if teacher is not None:
        if teacher_outputs is not None:
            target = _read_teacher(teacher_outputs, batch["index"])
        loss = loss + config.kd_weight * logit_kd(out["logits"], target["logits"], config.kd_temperature,
                                                  labels, ignore)
        if feature_kd is not None:
            loss = loss + config.feature_kd_weight * feature_kd(out["features"], target["features"])
    return loss


def _autocast(config: TrainConfig) -> Any:
    """bf16 autocast of a forward pass on the device the tensors are on (the CPU here), or nothing."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(device, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def _teacher_dir(config: TrainConfig, teacher: Any) -> Path:
    import hashlib

    digest = hashlib.sha256(Path(teacher.document["model"]).read_bytes()).hexdigest()[:16]
    return Path(config.cache_dir) / f"teacher-{digest}-{config.data}-{config.train_samples}-{config.image_size[0]}x{config.image_size[1]}"


@torch.inference_mode()
def _precompute_teacher(teacher: Any, dataset: Any, folder: Path) -> float:
    """Store the teacher's 1/4-resolution logits and 1/8 features of every training sample (float16)."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    todo = [i for i in range(len(dataset)) if not (folder / f"{i:07d}.npz").exists()]
    for index in tqdm(todo, desc="teacher outputs", leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty()):
        sample = dataset[index]
        out = teacher({m: sample[m][None] for m in teacher.modalities})
        partial = folder / f"{index:07d}.tmp.npz"
        np.savez(partial, logits=out["logits"][0].half().numpy(), features=out["features"][0].half().numpy())
        partial.replace(folder / f"{index:07d}.npz")
    return time.monotonic() - started


def _read_teacher(folder: Path, indices: torch.Tensor) -> dict[str, torch.Tensor]:
    stored = [np.load(folder / f"{int(i):07d}.npz") for i in indices]
    return {key: torch.from_numpy(np.stack([s[key] for s in stored])).float() for key in ("logits", "features")}


def _save(out: Path, model: Any, optimizer: Any, feature_kd: Any, state: dict[str, Any], label_set: Any,
          config: TrainConfig, scores: dict[str, Any], best: bool, teacher: dict[str, Any] | None = None) -> None:
    training = {"config": config.to_dict(), "epoch": state["epoch"], "steps": state["step"],
                "elapsed_s": round(state["elapsed_s"], 1), "val": {k: scores[k] for k in ("miou", "boundary_miou")}}
    if teacher is not None:
        training["teacher"] = teacher
    model_id = f"{config.architecture}_{'_'.join(model.config.modalities)}"
    save_checkpoint(out / "last.safetensors", model, label_set, model_id=model_id, training=training)
    if best:
        save_checkpoint(out / "best.safetensors", model, label_set, model_id=model_id, training=training)
    _save_state(out, model, optimizer, feature_kd, state)


def _save_state(out: Path, model: Any, optimizer: Any, feature_kd: Any, state: dict[str, Any]) -> None:
    saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": json.dumps(state)}
    if feature_kd is not None:
        saved["feature_kd"] = feature_kd.state_dict()
    torch.save(saved, out / "state.pt")


def _progress(loader: Any, description: str, rank: int) -> Any:
    if rank != 0:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=description, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())
