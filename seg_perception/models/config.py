"""Model configurations: architecture, label set, modalities, widths — everything a checkpoint must agree on."""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from seg_perception.labels import MAX_CLASSES

MODALITIES = ("rgb", "thermal", "events")
ARCHITECTURES = ("student", "teacher")
# Bounds on the sizes a config may ask for, far above the shipped models (widths up to 320, depths up
# to 4), so that a config alone can never describe a model of absurd size.
_INTEGER_RANGES = {
    "num_classes": (2, MAX_CLASSES), "event_bins": (1, 64), "stem_width": (1, 2048), "decoder_width": (1, 2048),
    "fine_width": (1, 2048), "point_width": (1, 2048), "expansion": (1, 16),
}
_TRIPLE_RANGES = {"widths": (1, 2048), "depths": (1, 16)}


class ModelError(ValueError):
    """A model or checkpoint is inconsistent with what was asked for; the message says what differs."""


@dataclass(frozen=True)
class ModelConfig:
    """What builds a model. Saved with every checkpoint and checked when loading.

    Attributes:
        architecture: "student" (hard-region refinement) or "teacher".
        num_classes: logits per pixel (the label set's largest id + 1).
        modalities: inputs the model was built for, in canonical order (a subset of MODALITIES);
            any of them may be absent at run time.
        event_bins: channels of the event voxel grid.
        stem_width: channels of each modality's stem (1/4 resolution), where modalities are fused.
        widths: channels of the shared encoder stages at 1/8, 1/16 and 1/32.
        depths: inverted-residual blocks per encoder stage.
        decoder_width: channels of the decoder.
        fine_width: channels of the fine (1/4) features the point head reads (student).
        point_width: hidden channels of the point head (student).
        refine_fraction: default share of 1/4-resolution locations re-predicted (student).
        expansion: inverted-residual expansion ratio.
    """

    architecture: str
    num_classes: int
    modalities: tuple[str, ...] = ("rgb",)
    event_bins: int = 5
    stem_width: int = 24
    widths: tuple[int, int, int] = (40, 80, 128)
    depths: tuple[int, int, int] = (2, 3, 2)
    decoder_width: int = 64
    fine_width: int = 32
    point_width: int = 64
    refine_fraction: float = 0.1
    expansion: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check every field's type and range.

        Raises:
            ModelError: naming the field, its value and what is accepted.
        """
        if self.architecture not in ARCHITECTURES:
            raise ModelError(f"architecture {self.architecture!r} is not known; accepted: {', '.join(ARCHITECTURES)}")
        for name, (low, high) in _INTEGER_RANGES.items():
            _check_integer(name, getattr(self, name), low, high)
        for name, (low, high) in _TRIPLE_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != 3:
                raise ModelError(f"{name} {value!r} is invalid; accepted: 3 integers in [{low}, {high}]")
            for item in value:
                _check_integer(name, item, low, high)
            object.__setattr__(self, name, tuple(int(v) for v in value))
        modalities = self.modalities
        if isinstance(modalities, str) or not isinstance(modalities, (list, tuple)) or not modalities or any(
                m not in MODALITIES for m in modalities):
            raise ModelError(f"modalities {modalities!r} invalid; choose a non-empty subset of {MODALITIES}")
        object.__setattr__(self, "modalities", tuple(m for m in MODALITIES if m in modalities))
        fraction = self.refine_fraction
        if not isinstance(fraction, numbers.Real) or isinstance(fraction, bool) or not 0.0 <= fraction <= 1.0:
            raise ModelError(f"refine_fraction must be a number in [0, 1], got {fraction!r}")
        if not isinstance(self.extra, dict):
            raise ModelError(f"extra {self.extra!r} is invalid; accepted: a mapping")

    def channels(self, modality: str) -> int:
        """Input channels of a modality: rgb 3, thermal 1, events `event_bins`."""
        return {"rgb": 3, "thermal": 1, "events": self.event_bins}[modality]

    def default_k(self, height: int, width: int) -> int:
        """Locations a student refines by default on an input of this size (`refine_fraction`); 0 for a teacher."""
        return k_for_fraction(self.refine_fraction, height, width) if self.architecture == "student" else 0

    @property
    def input_channels(self) -> int:
        """Channels of the stacked input tensor (modalities in canonical order)."""
        return sum(self.channels(m) for m in self.modalities)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("modalities", "widths", "depths"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """The config `to_dict` wrote.

        Raises:
            ModelError: not a mapping, missing or unknown keys, or a value `__post_init__` refuses.
        """
        accepted = {f.name for f in fields(cls)}
        if not isinstance(data, dict):
            raise ModelError(f"model config is a {type(data).__name__}; a mapping of {', '.join(sorted(accepted))} expected")
        missing = sorted({"architecture", "num_classes"} - set(data))
        unknown = sorted(set(data) - accepted, key=str)
        if missing or unknown:
            raise ModelError(f"model config does not match this version of seg_perception: missing {missing}, "
                             f"unknown {unknown}; accepted keys: {', '.join(sorted(accepted))}")
        return cls(**data)


def _check_integer(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ModelError(f"{name} {value!r} is invalid; accepted: an integer in [{low}, {high}]")


def quarter_size(size: int) -> int:
    """Size after the two stride-2 stem convolutions (the 1/4-resolution grid the student refines)."""
    return ((size + 1) // 2 + 1) // 2


def k_for_fraction(fraction: float, height: int, width: int) -> int:
    """K that refines `fraction` of the 1/4-resolution locations of an input of this size."""
    return round(fraction * quarter_size(height) * quarter_size(width))


def student_config(num_classes: int, modalities: tuple[str, ...] = ("rgb",), **overrides: Any) -> ModelConfig:
    """The shipped student: ~1 M parameters."""
    return ModelConfig("student", num_classes, modalities, **overrides)


def teacher_config(num_classes: int, modalities: tuple[str, ...] = ("rgb",), **overrides: Any) -> ModelConfig:
    """The shipped teacher: wider and deeper, with a decoder that goes to 1/4 resolution everywhere."""
    defaults: dict[str, Any] = dict(stem_width=48, widths=(96, 192, 320), depths=(3, 4, 3), decoder_width=96,
                                    expansion=4)
    defaults.update(overrides)
    return ModelConfig("teacher", num_classes, modalities, **defaults)
