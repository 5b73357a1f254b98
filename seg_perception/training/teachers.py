"""Teachers for distillation: the package's own checkpoints (logits and features) or any network a
Segmenter runs through a model card (class log-probabilities), behind one call: batch in, targets out."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seg_perception.labels import LabelSet
from seg_perception.models import SHIPPED, load_checkpoint, shipped_weights, stack_inputs

NETWORK_SUFFIXES = (".onnx", ".plan", ".engine")


class TeacherError(ValueError):
    """A teacher that cannot teach this student, and why."""


class CheckpointTeacher:
    """A seg_perception checkpoint: its 1/4-resolution logits and 1/8 features."""

    def __init__(self, path: Path, label_set: LabelSet) -> None:
        checkpoint = load_checkpoint(path, label_set=label_set.name)
        self.path, self.model = path, checkpoint.model
        self.modalities = self.model.config.modalities
        self.feature_width: int | None = self.model.config.decoder_width
        self.document = {"model": str(path), "kind": "checkpoint", "model_id": checkpoint.metadata.get("model_id"),
                         "label_set": label_set.name}

    @torch.inference_mode()
    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{"logits", "features"} for a batch of (N, C, H, W) modality tensors."""
        config = self.model.config
        x, present = stack_inputs({m: batch[m] for m in self.modalities if m in batch}, config)
        out = self.model(x, present)
        return {"logits": out.get("logits_quarter", out["logits"]), "features": out["features"]}


class NetworkTeacher:
    """A user's network (ONNX or TensorRT, with its model card, and optionally a class map onto the
    student's label set) run by a Segmenter: its class log-probabilities at the frame's resolution
    (they serve as logits: softening log-probabilities by a temperature is softening the logits)."""

    feature_width = None
    modalities = ("rgb",)

    def __init__(self, model: Path, label_set: LabelSet, *, card: str | None = None, class_map: str | None = None,
                 backend: str = "auto") -> None:
        from seg_perception.engines import EngineError, Segmenter

        try:
            self.segmenter = Segmenter(model, card=card, class_map=class_map, backend=backend)
        except EngineError as exc:
            raise TeacherError(f"teacher {model}: {exc}") from None
        if self.segmenter.source.card is None:
            raise TeacherError(f"teacher {model} is a seg_perception export: distil from its .safetensors checkpoint")
        published = self.segmenter.label_set
        if published.classes != label_set.classes:
            raise TeacherError(f"teacher {model} predicts label set {published.name!r} ({published.num_classes} "
                               f"classes) but the student learns {label_set.name!r} ({label_set.num_classes}); give "
                               f"the teacher a class map onto {label_set.name!r}")
        self.document = {"model": str(model), "kind": "network", "model_id": self.segmenter.source.model_id,
                         "label_set": published.name, "card": self.segmenter.source.card.to_dict(inline=True)}

    @torch.inference_mode()
    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{"logits": (N, C, H, W) log-probabilities} for a batch whose "rgb" is (N, 3, H, W) in [0, 1]."""
        frames = (batch["rgb"] * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return {"logits": torch.stack([self.segmenter.class_log_probabilities(f).cpu() for f in frames])}


def load_teacher(model: str | Path, label_set: LabelSet, *, card: str | None = None,
                 class_map: str | None = None) -> CheckpointTeacher | NetworkTeacher:
    """A shipped teacher name, a .safetensors checkpoint, or a user's .onnx/.plan network with its card.

    Raises:
        TeacherError: no such model, or one that cannot teach `label_set`.
    """
    from seg_perception.models import ModelError

    path = shipped_weights(str(model)) if str(model) in SHIPPED else Path(model)
    if not path.is_file():
        raise TeacherError(f"teacher {str(model)!r} is neither a shipped model ({', '.join(SHIPPED)}) nor an existing "
                           f"file")
    if path.suffix in NETWORK_SUFFIXES:
        return NetworkTeacher(path, label_set, card=card, class_map=class_map)
    if card is not None or class_map is not None:
        raise TeacherError(f"teacher {path} is a checkpoint: a card or class map is for ONNX/TensorRT networks")
    try:
        return CheckpointTeacher(path, label_set)
    except ModelError as exc:
        raise TeacherError(f"teacher {path}: {exc}") from None
