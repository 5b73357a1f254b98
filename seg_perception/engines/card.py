"""Model cards: how to run a segmentation network the package did not train.

A card names the input tensor and how frames become it (layout, element type, channel order, value
range, mean and std, size and resize policy), the output and what it holds (logits, probabilities,
per-class sigmoids or class ids), the label set, an optional class map and constant extra inputs.
Whatever the graph itself says (names, layout, element type, fixed size, output kind) is read from
it, so a common card is a label set and a normalisation:

    label_set: cityscapes19
    input: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}

A card travels with its model: beside it as `<model>.yaml` (or `<model file>.yaml`), or embedded in
an ONNX file's metadata (`seg-perception card --embed`).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from seg_perception.label_maps import LabelMap, LabelMapError, label_map_from_dict, load_label_map
from seg_perception.labels import LabelSet, LabelSetError, load_label_set

from .errors import EngineError
from .graph import GraphIO, TensorInfo

CARD_KEY = "seg_perception.card"  # ONNX metadata key of an embedded card
LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "float16", "uint8")
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZES = ("stretch", "letterbox", "crop")
KINDS = ("logits", "probabilities", "sigmoid", "class_ids")
# Operators whose float output is a score map of unnormalised logits (a segmentation head ends in one).
_LOGIT_OPS = {"Conv", "ConvTranspose", "Resize", "Upsample", "Add", "MatMul", "Gemm", "BatchNormalization",
              "Transpose", "Reshape", "Einsum", "Slice", "Concat", "Identity", "Cast", "Squeeze", "Unsqueeze"}
_INTEGER = ("int64", "int32", "int16", "int8", "uint8", "uint16")


class CardError(EngineError):
    """A model card that is malformed or does not fit its network; the message says what to change."""


@dataclass(frozen=True)
class CardInput:
    """The image input. None: read from the graph.

    Attributes:
        name: input tensor name.
        layout: "NCHW" or "NHWC".
        dtype: "float32", "float16" or "uint8" (uint8 takes raw 0–255 pixels: no range, mean or std).
        channels: "RGB" or "BGR".
        range: 1 (pixels scaled to 0–1 before mean and std) or 255 (0–255).
        mean, std: per channel, in the order of `channels` and the units of `range`.
        size: (width, height) to run at; a fixed-size graph runs at its own. None with a dynamic graph:
            each frame's own size, rounded to `multiple`.
        multiple: a dynamic graph's height and width must be multiples of this.
        resize: "stretch", "letterbox" (keep the aspect ratio, pad) or "crop" (keep it, cut the overflow;
            pixels outside the crop get the ignore id).
    """

    name: str | None = None
    layout: str | None = None
    dtype: str | None = None
    channels: str = "RGB"
    range: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: tuple[int, int] | None = None
    multiple: int = 1
    resize: str = "stretch"


@dataclass(frozen=True)
class CardOutput:
    """The segmentation output. None: read from the graph.

    Attributes:
        name: output tensor name.
        kind: "logits" (confidence: the max softmax), "probabilities" (softmax or sigmoid already
            applied; confidence: the max), "sigmoid" (independent per-class scores before their sigmoid;
            confidence: the sigmoid of the max) or "class_ids" (argmax taken in the graph; no confidence).
        layout: "NCHW" or "NHWC" for scores; class ids are (N, H, W) or have a channel of 1.
    """

    name: str | None = None
    kind: str | None = None
    layout: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """How to run a foreign network (see the module docstring).

    Attributes:
        label_set: the classes of the output channels / ids: a name, a YAML path or the label set's fields.
        input, output: see CardInput, CardOutput.
        class_map: model ids → another label set (merge, remap, ignore): a name, a YAML path or the map's fields.
        extra_inputs: other graph inputs, fed these constant values.
        name: the model id shown in logs and SegmentationInfo (default: the file name).
        base: the folder relative paths in the card are resolved from.
    """

    label_set: str | dict[str, Any]
    input: CardInput = field(default_factory=CardInput)
    output: CardOutput = field(default_factory=CardOutput)
    class_map: str | dict[str, Any] | None = None
    extra_inputs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    base: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: Any, where: str = "model card", base: Path | None = None) -> ModelCard:
        """Parse and check a card's fields.

        Raises:
            CardError: unknown or missing fields, values of the wrong type or outside the accepted ones.
        """
        data = _mapping(data, where, ("label_set", "input", "output", "class_map", "extra_inputs", "name"))
        if "label_set" not in data:
            raise CardError(f"{where}: label_set is missing: name the label set of the model's classes (one of "
                            f"config/labels, a YAML path, or its fields)")
        extra = data.get("extra_inputs") or {}
        if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
            raise CardError(f"{where}: extra_inputs must map input names to constant values")
        card = cls(_label_source(data["label_set"], f"{where}: label_set"),
                   _card_input(data.get("input") or {}, f"{where}: input"),
                   _card_output(data.get("output") or {}, f"{where}: output"),
                   _label_source(data["class_map"], f"{where}: class_map") if data.get("class_map") is not None
                   else None,
                   {k: _constant(v, f"{where}: extra_inputs.{k}") for k, v in extra.items()},
                   _optional(data, "name", str, where), base)
        card.labels()  # the label set and class map must load now, not at the first frame
        card.class_label_map()
        return card

    def to_dict(self, *, inline: bool = False) -> dict[str, Any]:
        """The card's fields; `inline` embeds the label set and class map (for a self-contained copy)."""
        document: dict[str, Any] = {"label_set": self.labels().to_dict() if inline else self.label_set,
                                    "input": _plain(asdict(self.input)), "output": _plain(asdict(self.output))}
        if self.class_map is not None:
            document["class_map"] = _map_fields(self.class_label_map()) if inline else self.class_map
        if self.extra_inputs:
            document["extra_inputs"] = dict(self.extra_inputs)
        if self.name:
            document["name"] = self.name
        return document

    def labels(self) -> LabelSet:
        """The label set of the model's own classes.

        Raises:
            CardError: it cannot be loaded.
        """
        try:
            if isinstance(self.label_set, dict):
                return LabelSet.from_dict(self.label_set)
            return load_label_set(self._path(self.label_set))
        except (LabelSetError, OSError, yaml.YAMLError) as exc:
            raise CardError(f"model card label_set: {exc}") from None

    def class_label_map(self) -> LabelMap | None:
        """The class map (model ids → another label set), checked against the model's label set.

        Raises:
            CardError: it cannot be loaded or maps ids the model does not have.
        """
        if self.class_map is None:
            return None
        try:
            if isinstance(self.class_map, dict):
                target = load_label_set(self.class_map.get("target", ""))
                label_map = label_map_from_dict(self.class_map.get("mapping") or {}, target, self.labels(),
                                                name=str(self.class_map.get("name", "class_map")),
                                                where="model card class_map")
            else:
                label_map = load_label_map(self._path(self.class_map))
            label_map.check_source(self.labels())
        except (LabelMapError, LabelSetError) as exc:
            raise CardError(f"model card class_map: {exc}") from None
        return label_map

    def _path(self, value: str) -> str:
        """A name stays a name; a relative YAML path is taken from the card's folder."""
        path = Path(value)
        if path.suffix in (".yaml", ".yml") and not path.is_absolute() and self.base is not None:
            return str(self.base / path)
        return value


def _map_fields(label_map: LabelMap | None) -> dict[str, Any] | None:
    if label_map is None:
        return None
    ignore = label_map.label_set.ignore_id
    mapping = {int(i): int(label_map.table[i]) for i in range(label_map.table.size) if label_map.table[i] != ignore}
    return {"name": label_map.name, "target": label_map.label_set.to_dict(), "mapping": mapping}


def load_card(path: str | Path) -> ModelCard:
    """A card from a YAML (or JSON) file.

    Raises:
        CardError: unreadable or malformed.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CardError(f"cannot read model card {path}: {exc}") from None
    return ModelCard.from_dict(data, f"model card {path}", path.parent)


def card_beside(model: Path) -> Path | None:
    """The card file that travels beside a model: `<stem>.yaml` or `<file name>.yaml`."""
    for candidate in (model.with_suffix(".yaml"), model.with_name(model.name + ".yaml")):
        if candidate.is_file():
            return candidate
    return None


def card_from_metadata(text: str, where: str) -> ModelCard:
    """An embedded card (JSON text of `ModelCard.to_dict(inline=True)`)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CardError(f"{where}: the embedded model card is not valid JSON ({exc}); embed it again with "
                        f"`seg-perception card --embed`") from None
    return ModelCard.from_dict(data, f"{where} (embedded card)")


@dataclass(frozen=True)
class Binding:
    """A card resolved against its graph: everything needed to feed the network and read its output.

    Attributes:
        input: the image input as the graph declares it.
        layout, dtype: the input's layout and element type.
        size: (width, height) to run at; None: each frame's size rounded to `multiple`.
        output: the segmentation output as the graph declares it.
        kind, output_layout: what the output holds and its layout.
        extra: other inputs → constant values, typed as the graph wants them.
        channels: output channels, where the graph fixes them (None for class ids or dynamic).
    """

    card: ModelCard
    input: TensorInfo
    layout: str
    dtype: str
    size: tuple[int, int] | None
    output: TensorInfo
    kind: str
    output_layout: str
    extra: dict[str, Any]
    channels: int | None

    @property
    def stride(self) -> tuple[float, float] | None:
        """Input pixels per output pixel (x, y), where both sizes are fixed in the graph."""
        height_axis, width_axis = (2, 3) if self.output_layout == "NCHW" else (1, 2)
        shape = self.output.shape
        in_w, in_h = self.size or (None, None)
        if len(shape) < 3 or in_w is None:
            return None
        if self.kind == "class_ids" and len(shape) == 3:
            height_axis, width_axis = 1, 2
        out_h, out_w = shape[height_axis], shape[width_axis]
        if out_h is None or out_w is None:
            return None
        return in_w / out_w, in_h / out_h

    def run_size(self, source: tuple[int, int]) -> tuple[int, int]:
        """(width, height) a frame of `source` size runs at."""
        if self.size is not None:
            return self.size
        multiple = self.card.input.multiple
        return tuple(max(multiple, round(v / multiple) * multiple) for v in source)  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """What was found and decided, for `seg-perception card` and logs."""
        stride = self.stride
        return {"input": {"name": self.input.name, "graph": self.input.describe(), "layout": self.layout,
                          "dtype": self.dtype, "run_size": list(self.size) if self.size else "each frame's size",
                          "channels": self.card.input.channels, "range": self.card.input.range,
                          "mean": list(self.card.input.mean), "std": list(self.card.input.std),
                          "resize": self.card.input.resize},
                "output": {"name": self.output.name, "graph": self.output.describe(), "kind": self.kind,
                           "layout": self.output_layout, "channels": self.channels,
                           "stride": list(stride) if stride else "found at run time"},
                "extra_inputs": {k: v.tolist() for k, v in self.extra.items()}}


def bind(card: ModelCard, graph: GraphIO, where: str) -> Binding:
    """Resolve `card` against the graph's inputs and outputs.

    Raises:
        CardError: a named tensor the graph lacks (the graph's are listed), a layout or element type
            the graph contradicts, an output kind that cannot be inferred, a label set whose size
            differs from the output channels, graph inputs without a value.
    """
    import numpy as np

    spec = card.input
    image = _image_input(card, graph, where)
    layout = _input_layout(spec.layout, image, where)
    dtype = image.dtype
    if dtype not in INPUT_DTYPES:
        raise CardError(f"{where}: input {image.name!r} takes {dtype}; cards describe float32, float16 or uint8 "
                        f"image inputs")
    if spec.dtype is not None and spec.dtype != dtype:
        raise CardError(f"{where}: the card says input dtype {spec.dtype} but the graph's {image.name!r} is {dtype}")
    if dtype == "uint8" and (spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0)):
        raise CardError(f"{where}: input {image.name!r} is uint8 (raw 0–255 pixels): the graph normalises itself, "
                        f"so the card must not give mean or std")
    height, width = (image.shape[2], image.shape[3]) if layout == "NCHW" else (image.shape[1], image.shape[2])
    if image.shape[0] not in (None, 1):
        raise CardError(f"{where}: input {image.name!r} has batch {image.shape[0]}; a batch of 1 (or dynamic) is "
                        f"needed")
    if height is not None and width is not None:
        if spec.size is not None and tuple(spec.size) != (width, height):
            raise CardError(f"{where}: the card says size {spec.size[0]}x{spec.size[1]} but input {image.name!r} is "
                            f"fixed at {width}x{height}")
        size: tuple[int, int] | None = (width, height)
    elif height is not None or width is not None:
        fixed = f"height {height}" if height is not None else f"width {width}"
        if spec.size is None or (height is not None and spec.size[1] != height) or (
                width is not None and spec.size[0] != width):
            raise CardError(f"{where}: input {image.name!r} fixes its {fixed}; set input.size to a size with it")
        size = spec.size
    else:
        size = spec.size
    if size is not None and spec.multiple > 1 and (size[0] % spec.multiple or size[1] % spec.multiple):
        raise CardError(f"{where}: size {size[0]}x{size[1]} is not a multiple of {spec.multiple}")
    extra = _extra_inputs(card, graph, image, where)
    output = _output(card, graph, where)
    kind = _output_kind(card.output.kind, output, graph, where)
    output_layout, channels = _output_layout(card, output, kind, where)
    return Binding(card, image, layout, dtype, size, output, kind, output_layout,
                   {k: np.asarray(v, dtype=graph.input(k).dtype) for k, v in extra.items()}, channels)


def _named(tensors: tuple[TensorInfo, ...], name: str, what: str, where: str) -> TensorInfo:
    """The graph's `what` ("input", "output") called `name`; CardError listing the graph's ones otherwise."""
    found = next((t for t in tensors if t.name == name), None)
    if found is None:
        raise CardError(f"{where}: the graph has no {what} {name!r}; its {what}s: "
                        f"{', '.join(t.describe() for t in tensors)}")
    return found


def _image_input(card: ModelCard, graph: GraphIO, where: str) -> TensorInfo:
    if card.input.name is not None:
        found = _named(graph.inputs, card.input.name, "input", where)
    else:
        candidates = [t for t in graph.inputs if t.name not in card.extra_inputs and len(t.shape) == 4]
        if len(candidates) != 1:
            raise CardError(f"{where}: cannot tell which input is the image (inputs: "
                            f"{', '.join(t.describe() for t in graph.inputs)}); set input.name")
        found = candidates[0]
    if len(found.shape) != 4:
        raise CardError(f"{where}: input {found.describe()} is not an image tensor (N, C, H, W) or (N, H, W, C)")
    return found


def _input_layout(layout: str | None, image: TensorInfo, where: str) -> str:
    nchw, nhwc = image.shape[1] == 3, image.shape[3] == 3
    if layout is None:
        if nchw == nhwc:
            raise CardError(f"{where}: cannot infer the layout of input {image.describe()}: set input.layout to "
                            f"NCHW or NHWC")
        return "NCHW" if nchw else "NHWC"
    channels = image.shape[1] if layout == "NCHW" else image.shape[3]
    other, looks_other = ("NHWC", nhwc) if layout == "NCHW" else ("NCHW", nchw)
    if (channels is not None and channels != 3) or (channels is None and looks_other):
        hint = f" — it looks {other}: set input.layout: {other}" if looks_other else ""
        raise CardError(f"{where}: input layout {layout} does not fit {image.describe()}: its channel dimension "
                        f"would be {channels or '?'}, not 3{hint}")
    return layout


def _extra_inputs(card: ModelCard, graph: GraphIO, image: TensorInfo, where: str) -> dict[str, Any]:
    names = {t.name for t in graph.inputs}
    unknown = sorted(set(card.extra_inputs) - names)
    if unknown:
        raise CardError(f"{where}: extra_inputs {unknown} are not graph inputs; its inputs: {sorted(names)}")
    missing = sorted(names - set(card.extra_inputs) - {image.name})
    if missing:
        raise CardError(f"{where}: graph inputs {missing} have no value: give them constants in extra_inputs")
    return dict(card.extra_inputs)


def _output(card: ModelCard, graph: GraphIO, where: str) -> TensorInfo:
    if card.output.name is not None:
        return _named(graph.outputs, card.output.name, "output", where)
    if len(graph.outputs) != 1:
        raise CardError(f"{where}: the graph has {len(graph.outputs)} outputs "
                        f"({', '.join(t.describe() for t in graph.outputs)}); set output.name to the segmentation one")
    return graph.outputs[0]


def _output_kind(kind: str | None, output: TensorInfo, graph: GraphIO, where: str) -> str:
    integer = output.dtype in _INTEGER
    if kind is not None:
        if (kind == "class_ids") != integer:
            raise CardError(f"{where}: output {output.describe()} holds {'integers' if integer else 'floats'}, "
                            f"so it cannot be {kind}")
        return kind
    if integer:
        return "class_ids"
    if not output.dtype.startswith("float"):
        raise CardError(f"{where}: output {output.describe()} is neither float scores nor integer class ids")
    producer = graph.producers.get(output.name)
    if producer in ("Softmax", "Sigmoid"):  # class probabilities, exclusive or independent: argmax and max alike
        return "probabilities"
    if producer == "LogSoftmax":
        return "logits"
    if producer in _LOGIT_OPS:
        return "logits"
    made_by = f"made by a {producer} node" if producer else "whose operator the engine file does not tell"
    raise CardError(f"{where}: cannot infer what output {output.describe()} holds ({made_by}): set output.kind to "
                    f"one of {', '.join(KINDS)}")


def _output_layout(card: ModelCard, output: TensorInfo, kind: str, where: str) -> tuple[str, int | None]:
    classes = card.labels().num_classes
    shape = output.shape
    if kind == "class_ids":
        if len(shape) == 3 or (len(shape) == 4 and shape[1] == 1):
            return "NCHW", None
        if len(shape) == 4 and shape[3] == 1:
            return "NHWC", None
        raise CardError(f"{where}: class-id output {output.describe()} must be (N, H, W) or carry one channel")
    if len(shape) != 4:
        raise CardError(f"{where}: score output {output.describe()} must be (N, C, H, W) or (N, H, W, C)")
    layout = card.output.layout
    if layout is None:
        layout = "NHWC" if shape[3] == classes and shape[1] != classes else "NCHW"
    channels = shape[1] if layout == "NCHW" else shape[3]
    if channels is not None and channels != classes:
        raise CardError(f"{where}: output {output.describe()} has {channels} channels ({layout}) but label set "
                        f"{card.labels().name!r} has {classes} classes (ids 0 … {classes - 1}): give the label set "
                        f"the model was trained with (and a class_map to merge its classes)")
    return layout, channels


def with_overrides(card: ModelCard, *, size: tuple[int, int] | None = None, resize: str | None = None,
                   class_map: str | None = None) -> ModelCard:
    """The card with a run size, resize policy or class map chosen by the caller (CLI flags, parameters)."""
    fields = {k: v for k, v in (("size", size), ("resize", resize)) if v is not None}
    card = replace(card, input=replace(card.input, **fields)) if fields else card
    if class_map is not None:
        card = replace(card, class_map=class_map, base=None)
        card.class_label_map()
    return card


# --- field parsing ------------------------------------------------------------------------------------------

def _mapping(data: Any, where: str, accepted: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise CardError(f"{where} must be a mapping of {', '.join(accepted)}; got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in accepted)
    if unknown:
        raise CardError(f"{where}: unknown fields {unknown}; accepted: {', '.join(accepted)}")
    return dict(data)


def _optional(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise CardError(f"{where}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _choice(data: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str, default: Any = None) -> Any:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, str) and value.upper() in choices and choices[0].isupper():
        return value.upper()
    if value not in choices:
        raise CardError(f"{where}: {key} {value!r} is not one of {', '.join(choices)}")
    return value


def _card_input(data: Any, where: str) -> CardInput:
    data = _mapping(data, where, tuple(CardInput.__dataclass_fields__))
    rng = data.get("range", 1.0)
    if isinstance(rng, bool) or rng not in (1, 255):
        raise CardError(f"{where}: range must be 1 (pixels 0–1) or 255 (pixels 0–255), got {rng!r}")
    mean, std = _triple(data, "mean", 0.0, where), _triple(data, "std", 1.0, where)
    if any(s <= 0 for s in std):
        raise CardError(f"{where}: std must be > 0, got {list(std)}")
    multiple = data.get("multiple", 1)
    if isinstance(multiple, bool) or not isinstance(multiple, int) or not 1 <= multiple <= 1024:
        raise CardError(f"{where}: multiple must be an integer in 1 … 1024, got {multiple!r}")
    resize = data.get("resize", "stretch")
    resize = "stretch" if resize == "resize" else resize
    if resize not in RESIZES:
        raise CardError(f"{where}: resize {resize!r} is not one of {', '.join(RESIZES)}")
    return CardInput(_optional(data, "name", str, where), _choice(data, "layout", LAYOUTS, where),
                     _choice(data, "dtype", INPUT_DTYPES, where), _choice(data, "channels", CHANNEL_ORDERS, where,
                                                                         "RGB"),
                     float(rng), mean, std, parse_size(data.get("size"), f"{where}: size"), multiple, resize)


def _card_output(data: Any, where: str) -> CardOutput:
    data = _mapping(data, where, tuple(CardOutput.__dataclass_fields__))
    return CardOutput(_optional(data, "name", str, where), _choice(data, "kind", KINDS, where),
                      _choice(data, "layout", LAYOUTS, where))


def _triple(data: Mapping[str, Any], key: str, default: float, where: str) -> tuple[float, float, float]:
    value = data.get(key, [default] * 3)
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise CardError(f"{where}: {key} must be three finite numbers (one per channel), got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def parse_size(value: Any, where: str) -> tuple[int, int] | None:
    """(width, height) from [W, H] or "WxH"; None stays None.

    Raises:
        CardError: anything else, or a side outside 16 … 8192.
    """
    if value is None:
        return None
    if isinstance(value, str) and "x" in value:
        value = value.split("x", 1)
        try:
            value = [int(v) for v in value]
        except ValueError:
            value = None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 8192 for v in value)):
        raise CardError(f"{where} must be [width, height] (or WxH) with sides in 16 … 8192, got {value!r}")
    return int(value[0]), int(value[1])


def _label_source(value: Any, where: str) -> str | dict[str, Any]:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise CardError(f"{where} must be a name, a YAML path or a mapping of its fields; got {value!r}")


def _constant(value: Any, where: str) -> Any:
    import numpy as np

    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype.kind not in "biuf" or array.size > 1 << 16:
        raise CardError(f"{where} must be a number or a (nested) list of numbers, at most 65536 of them")
    return value


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if v is not None}
