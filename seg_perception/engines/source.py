"""Where a model comes from: a checkpoint (shipped name or .safetensors), or an exported ONNX file.

Either way the label set and model config travel with it, and ONNX exports of a checkpoint are
made on demand into the artefact cache.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seg_perception.labels import LabelSet
from seg_perception.models import Checkpoint, ModelConfig, ModelError, SHIPPED, load_checkpoint, read_metadata, shipped_weights

from .cache import ArtifactCache, file_sha256
from .errors import EngineError
from .export import EXPORT_FORMAT, OPSET, export_onnx, read_onnx_metadata
from .spec import EngineSpec

DEFAULT_INPUT_SIZE = (320, 180)  # the shipped models' training size, for checkpoints that do not record theirs


@dataclass
class ModelSource:
    """A model file and its metadata; `kind` is "checkpoint" or "onnx"."""

    path: Path
    kind: str
    document: dict[str, Any]  # the checkpoint's metadata (see models.checkpoint)
    exported_spec: EngineSpec | None = None  # for an ONNX file: what it was exported for
    _checkpoint: Checkpoint | None = field(default=None, repr=False)
    _sha256: str | None = field(default=None, repr=False)

    @classmethod
    def open(cls, model: str | Path) -> ModelSource:
        """A shipped model name, a .safetensors checkpoint or an exported .onnx file.

        Raises:
            EngineError: unknown name, missing or unreadable file, or a file without seg_perception metadata.
        """
        if isinstance(model, str) and model in SHIPPED:
            model = shipped_weights(model)
        path = Path(model)
        if not path.is_file():
            raise EngineError(f"model {str(model)!r} is neither a shipped model ({', '.join(SHIPPED)}) nor an existing "
                              f"file")
        if path.suffix == ".onnx":
            document = read_onnx_metadata(path)
            return cls(path, "onnx", document["checkpoint"], EngineSpec(**document["spec"]))
        try:
            return cls(path, "checkpoint", read_metadata(path))
        except ModelError as exc:
            raise EngineError(str(exc)) from None

    # Parsed once: the label set and its colour tables are used for every published frame.
    @functools.cached_property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.document["config"])

    @functools.cached_property
    def label_set(self) -> LabelSet:
        return LabelSet.from_dict(self.document["label_set"])

    @property
    def model_id(self) -> str:
        return str(self.document.get("model_id", self.config.architecture))

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    def training_size(self) -> tuple[int, int]:
        """(width, height) the model was trained at."""
        size = self.document.get("training", {}).get("config", {}).get("image_size")
        return (int(size[0]), int(size[1])) if size else DEFAULT_INPUT_SIZE

    def spec(self, *, input_size: tuple[int, int] | None = None, k: int | None = None,
             precision: str = "fp32") -> EngineSpec:
        """The engine spec for these choices; defaults: an ONNX file's own size and K, else the training
        size and the model's default K."""
        if self.exported_spec is not None:
            spec = self.exported_spec
            width, height = input_size or spec.size
            return EngineSpec(width, height, spec.k if k is None else k, precision)
        width, height = input_size or self.training_size()
        return EngineSpec(width, height, self.config.default_k(height, width) if k is None else k, precision)

    def checkpoint(self) -> Checkpoint:
        """The loaded checkpoint.

        Raises:
            EngineError: the source is an ONNX file (PyTorch needs the checkpoint).
        """
        if self.kind != "checkpoint":
            raise EngineError(f"{self.path} is an ONNX export; the PyTorch backend needs the .safetensors checkpoint")
        if self._checkpoint is None:
            try:
                self._checkpoint = load_checkpoint(self.path)
            except ModelError as exc:
                raise EngineError(str(exc)) from None
        return self._checkpoint

    def onnx(self, spec: EngineSpec, cache: ArtifactCache, *, rebuild: bool = True) -> Path:
        """An fp32 or fp16 ONNX model for `spec`: the file itself for an ONNX source (which must match),
        else an export of the checkpoint from the cache (exported on first use).

        Raises:
            EngineError: an ONNX source exported for another spec, or a failed export.
        """
        if self.kind == "onnx":
            exported = self.exported_spec
            if (exported.size, exported.k, exported.precision) != (spec.size, spec.k, spec.precision):
                raise EngineError(f"{self.path} was exported for {_describe(exported)}; asked for {_describe(spec)}. "
                                  f"Re-export it (seg-perception export) or pass the checkpoint instead")
            return self.path
        import torch

        fields = {"checkpoint_sha256": self.sha256, "spec": spec.to_dict(), "format": EXPORT_FORMAT, "opset": OPSET,
                  "torch": torch.__version__}
        return cache.get_or_build("onnx", fields, ".onnx", lambda tmp: export_onnx(self.checkpoint(), tmp, spec),
                                  rebuild=rebuild, validate=read_onnx_metadata)


def _describe(spec: EngineSpec) -> str:
    return f"{spec.width}x{spec.height}, k={spec.k}, {spec.precision}"
