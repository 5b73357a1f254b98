"""Where a model comes from: a checkpoint (shipped name or .safetensors), an exported ONNX file, or a
user's own ONNX or TensorRT network described by a model card.

Either way the label set (and, for the package's models, the model config) travels with it, and
ONNX exports of a checkpoint are made on demand into the artefact cache.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seg_perception.labels import LabelSet, with_shipped_semantics
from seg_perception.models import Checkpoint, ModelConfig, ModelError, SHIPPED, load_checkpoint, read_metadata, shipped_weights

from .cache import ArtifactCache, file_sha256
from .card import CARD_KEY, Binding, ModelCard, bind, card_beside, card_from_metadata, load_card
from .errors import BackendUnavailable, EngineError
from .export import EXPORT_FORMAT, OPSET, export_onnx, load_onnx, metadata_document, onnx_metadata, read_onnx_metadata
from .graph import GraphIO, graph_io_from_onnx
from .spec import EngineSpec

PLAN_SUFFIXES = (".plan", ".engine")

DEFAULT_INPUT_SIZE = (320, 180)  # the shipped models' training size, for checkpoints that do not record theirs


@dataclass
class ModelSource:
    """A model file and its metadata; `kind` is "checkpoint", "onnx" (a seg_perception export), "card"
    (a user's ONNX network with its model card) or "plan" (a prebuilt TensorRT engine with its card)."""

    path: Path
    kind: str
    document: dict[str, Any]  # the checkpoint's metadata (see models.checkpoint); empty for carded models
    exported_spec: EngineSpec | None = None  # for an ONNX file: what it was exported for
    card: ModelCard | None = None
    graph: GraphIO | None = None  # a carded model's inputs and outputs
    binding: Binding | None = None  # its card resolved against them
    _checkpoint: Checkpoint | None = field(default=None, repr=False)
    _sha256: str | None = field(default=None, repr=False)

    @classmethod
    def open(cls, model: str | Path, card: str | Path | ModelCard | None = None) -> ModelSource:
        """A shipped model name, a .safetensors checkpoint, an exported .onnx file, or a user's .onnx or
        TensorRT .plan/.engine file with its model card (`card`, else one embedded in the ONNX file, else
        `<model>.yaml` beside it).

        Raises:
            EngineError: unknown name, missing or unreadable file, a foreign network without a card, or a
                card that does not fit the network (see `card.bind`).
        """
        if isinstance(model, str) and model in SHIPPED:
            model = shipped_weights(model)
        path = Path(model)
        if not path.is_file():
            raise EngineError(f"model {str(model)!r} is neither a shipped model ({', '.join(SHIPPED)}) nor an existing "
                              f"file")
        if path.suffix in PLAN_SUFFIXES:
            return cls._carded(path, "plan", _card_for(path, card, None), _plan_io(path))
        if path.suffix == ".onnx":
            # Its metadata without importing onnx (~1 s), which only a carded network's graph needs.
            props = onnx_metadata(path) if card is None else {}
            document = metadata_document(props, path) if card is None else None
            if document is not None:
                return cls(path, "onnx", document["checkpoint"], EngineSpec(**document["spec"]))
            graph = graph_io_from_onnx(load_onnx(path))
            return cls._carded(path, "card", _card_for(path, card, props.get(CARD_KEY)), graph)
        if card is not None:
            raise EngineError(f"a model card describes an ONNX or TensorRT network; {path} is a checkpoint (its "
                              f"label set and inputs travel with it)")
        try:
            return cls(path, "checkpoint", read_metadata(path))
        except ModelError as exc:
            raise EngineError(str(exc)) from None

    @classmethod
    def _carded(cls, path: Path, kind: str, card: ModelCard, graph: GraphIO) -> ModelSource:
        return cls(path, kind, {}, card=card, graph=graph, binding=bind(card, graph, str(path)))

    def with_card(self, card: ModelCard) -> ModelSource:
        """This carded model with another card (a run size, resize policy or class map chosen at run time)."""
        return ModelSource(self.path, self.kind, {}, card=card, graph=self.graph, binding=bind(card, self.graph,
                                                                                                str(self.path)))

    @property
    def modalities(self) -> tuple[str, ...]:
        """The sensor inputs the model takes, in its order (a carded network takes RGB)."""
        return ("rgb",) if self.card is not None else self.config.modalities

    # Parsed once: the label set and its colour tables are used for every published frame.
    @functools.cached_property
    def config(self) -> ModelConfig:
        if self.card is not None:
            raise EngineError(f"{self.path} is a carded network; it has no seg_perception model config")
        return ModelConfig.from_dict(self.document["config"])

    @functools.cached_property
    def label_set(self) -> LabelSet:
        """The label set of the model's own outputs."""
        if self.card is not None:
            return self.card.labels()
        return with_shipped_semantics(LabelSet.from_dict(self.document["label_set"]))

    @property
    def model_id(self) -> str:
        if self.card is not None:
            return self.card.name or self.path.stem
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
        size and the model's default K. A carded network runs at its card's size (0x0: each frame's
        own), with K = 0, at the precision of its graph.

        Raises:
            EngineError: a carded network asked for another precision or size than its graph has.
        """
        if self.binding is not None:
            graph_precision = "fp16" if self.binding.dtype == "float16" else "fp32"
            if precision not in ("fp32", graph_precision):
                raise EngineError(f"{self.path} runs at the precision its graph has ({graph_precision}); convert the "
                                  f"graph itself to run it at {precision}")
            if input_size is not None and tuple(input_size) != self.binding.size:
                raise EngineError(f"{self.path}: choose a carded model's size with its card (input.size) or "
                                  f"Segmenter(card=...); the card gives {self.binding.size}")
            width, height = self.binding.size or (0, 0)
            return EngineSpec(width, height, 0 if k is None else k, graph_precision)
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
            what = "an ONNX export" if self.kind == "onnx" else "a carded network, which runs on onnxruntime or tensorrt"
            raise EngineError(f"{self.path} is {what}; the PyTorch backend needs the .safetensors checkpoint")
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
        if self.card is not None:
            return self.path
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


def _card_for(path: Path, card: str | Path | ModelCard | None, embedded: str | None) -> ModelCard:
    """The card given, else the one embedded in the ONNX file, else the one beside the file.

    Raises:
        EngineError: none of them exists, or the one found is malformed.
    """
    if isinstance(card, ModelCard):
        return card
    if card is not None:
        return load_card(card)
    if embedded is not None:
        return card_from_metadata(embedded, str(path))
    beside = card_beside(path)
    if beside is None:
        kind = "a TensorRT engine" if path.suffix in PLAN_SUFFIXES else "an ONNX model"
        raise EngineError(f"{path} is {kind} without seg_perception metadata or a model card: describe it in "
                          f"{path.with_suffix('.yaml')} (at least `label_set:`; README: Your own model), pass "
                          f"--card / card:=, or check and embed one with `seg-perception card {path} --embed`")
    return load_card(beside)


def _plan_io(path: Path) -> GraphIO:
    """A prebuilt TensorRT engine's inputs and outputs (needs TensorRT and a GPU).

    Raises:
        EngineError: TensorRT is not here, or the file is not an engine it can load.
    """
    from .backends.tensorrt_backend import load_plan

    try:
        return load_plan(path)[1]
    except BackendUnavailable as exc:
        raise EngineError(f"{path} is a prebuilt TensorRT engine, which runs only where TensorRT and an NVIDIA GPU "
                          f"are ({exc}). Run the ONNX model it was built from, with its card, on ONNX Runtime "
                          f"instead") from None
