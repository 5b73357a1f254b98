"""Checkpoints: safetensors weights with the metadata a model cannot be used without.

The safetensors header carries one JSON document: the model config, the label set, the input
encoding, and a training summary. `load_checkpoint` is the only way in: it validates all of it,
so a model is never paired with the wrong palette or architecture silently, and nothing is ever
unpickled.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seg_perception.labels import LabelSet, LabelSetError

from .config import ModelConfig, ModelError
from .registry import build_model

FORMAT = "seg_perception.checkpoint/1"
METADATA_KEY = "seg_perception"
# How the inputs are encoded (see seg_perception.io.encoding); recorded so other code can check.
INPUT_ENCODING = {
    "rgb": "float32 (3, H, W) RGB in [0, 1]",
    "thermal": "float32 (1, H, W) (kelvin - 273.15 - 20) / 20, from radiometric counts = kelvin * 100",
    "events": "float32 (bins, H, W) event voxel grid (Zhu et al. 2019) over 50 ms ending at the frame, "
              "normalised by its 98th percentile of |values|",
}


@dataclass
class Checkpoint:
    """A loaded, validated model and what came with it."""

    model: Any  # torch.nn.Module, in eval mode
    config: ModelConfig
    label_set: LabelSet
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return str(self.metadata.get("model_id", self.config.architecture))


def save_checkpoint(path: str | Path, model: Any, label_set: LabelSet, *, model_id: str,
                    training: dict[str, Any] | None = None) -> Path:
    """Write `model` (its `.config` is saved) with its label set and a training summary."""
    from safetensors.torch import save_file

    config: ModelConfig = model.config
    if label_set.num_classes != config.num_classes:
        raise ModelError(f"label set {label_set.name!r} has {label_set.num_classes} classes but the model predicts "
                         f"{config.num_classes}")
    document = {"format": FORMAT, "model_id": model_id, "config": config.to_dict(), "label_set": label_set.to_dict(),
                "inputs": {m: INPUT_ENCODING[m] for m in config.modalities}, "training": training or {}}
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={METADATA_KEY: json.dumps(document, sort_keys=True)})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON document, without loading weights, checked by `check_document`.

    Raises:
        ModelError: unreadable file, no or malformed metadata.
    """
    raw, _ = _read_header(path)
    if raw is None:
        raise ModelError(f"{path} has no seg_perception metadata; was it written by save_checkpoint?")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise ModelError(f"{path}: its seg_perception metadata is not JSON ({exc}); write checkpoints with "
                         "save_checkpoint") from None
    check_document(document, str(path))
    return document


def check_document(document: Any, source: str) -> None:
    """Check a checkpoint's JSON document (as `save_checkpoint` writes it) in full, weights aside.

    Args:
        document: the parsed JSON.
        source: names the document's origin in error messages (a path).

    Raises:
        ModelError: not a mapping, a wrong format, missing keys or values of the wrong type, a config
            or label set that does not validate, or a label set that does not fit the config.
    """
    if not isinstance(document, dict):
        raise ModelError(f"{source}: checkpoint metadata is a {type(document).__name__}; a JSON object expected")
    if document.get("format") != FORMAT:
        raise ModelError(f"{source} has checkpoint format {document.get('format')!r}; this version reads {FORMAT!r}")
    for key, kind in (("config", dict), ("label_set", dict), ("model_id", str), ("training", dict)):
        if key not in document or not isinstance(document[key], kind):
            found = type(document[key]).__name__ if key in document else "nothing"
            raise ModelError(f"{source}: checkpoint metadata {key!r} is {found}; a {_JSON_NAMES[kind]} expected")
    training_config = document["training"].get("config", {})
    if not isinstance(training_config, dict):
        raise ModelError(f"{source}: checkpoint metadata training.config is {training_config!r}; a JSON object expected")
    image_size = training_config.get("image_size")
    if image_size is not None and not (isinstance(image_size, list) and len(image_size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)):
        raise ModelError(f"{source}: training image_size {image_size!r} is invalid; [width, height] > 0 expected")
    config = ModelConfig.from_dict(document["config"])
    try:
        labels = LabelSet.from_dict(document["label_set"])
    except LabelSetError as exc:
        raise ModelError(f"{source}: {exc}") from None
    if labels.num_classes != config.num_classes:
        raise ModelError(f"{source}: label set {labels.name!r} has {labels.num_classes} classes, model {config.num_classes}")


_JSON_NAMES = {dict: "JSON object", str: "string"}


def _read_header(path: str | Path) -> tuple[str | None, dict[str, tuple[int, ...]]]:
    """(the seg_perception metadata string or None, tensor name → shape) from the safetensors header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable safetensors checkpoint: {exc}") from None
    return raw, shapes


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of the model `config` builds, from a model on torch's meta device
    (shapes without storage: nothing is allocated, however large the config)."""
    import torch

    with torch.device("meta"):
        model = build_model(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def load_checkpoint(path: str | Path, *, label_set: str | None = None, architecture: str | None = None,
                    modalities: tuple[str, ...] | None = None) -> Checkpoint:
    """Load and validate a checkpoint.

    The weights' shapes, read from the safetensors header, are compared with the config's before
    the model is built, so a config claiming huge widths is refused without allocating anything
    beyond what the file holds.

    Args:
        label_set: if given, the label-set name the caller expects.
        architecture: if given, "student" or "teacher".
        modalities: if given, modalities the caller will provide; each must be one the model knows.

    Raises:
        ModelError: unreadable file, missing or malformed metadata, or a mismatch with what was
            asked for, or weights that do not fit the recorded architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    document = read_metadata(path)
    config = ModelConfig.from_dict(document["config"])
    labels = LabelSet.from_dict(document["label_set"])
    if label_set is not None and labels.name != label_set:
        raise ModelError(f"{path} was trained on label set {labels.name!r}, not {label_set!r}")
    if architecture is not None and config.architecture != architecture:
        raise ModelError(f"{path} is a {config.architecture!r} model, not {architecture!r}")
    if modalities is not None:
        unknown = [m for m in modalities if m not in config.modalities]
        if unknown:
            raise ModelError(f"{path} takes modalities {list(config.modalities)}; it cannot use {unknown}")
    _, stored = _read_header(path)
    expected = _expected_shapes(config)
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in set(stored) & set(expected) if stored[k] != expected[k])
    if missing or unexpected or wrong:
        raise ModelError(f"{path}: weights do not fit a {config.architecture} with this config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    model = build_model(config)
    try:
        model.load_state_dict(load_file(str(path)))
    except (SafetensorError, OSError, RuntimeError) as exc:  # a file changed since its header was read
        raise ModelError(f"{path}: its weights do not load ({exc})") from None
    return Checkpoint(model.eval(), config, labels, document)
