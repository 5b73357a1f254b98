"""Model configurations: architecture, label set, modalities, widths — everything a checkpoint must agree on."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MODALITIES = ("rgb", "thermal", "events")


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
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "depths", tuple(self.depths))
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ModelError(f"modalities {self.modalities} invalid; choose a non-empty subset of {MODALITIES}")
        ordered = tuple(m for m in MODALITIES if m in self.modalities)
        object.__setattr__(self, "modalities", ordered)
        if self.num_classes < 2:
            raise ModelError(f"num_classes must be >= 2, got {self.num_classes}")
        if not 0.0 <= self.refine_fraction <= 1.0:
            raise ModelError(f"refine_fraction must be in [0, 1], got {self.refine_fraction}")

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
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelError(f"model config does not match this version of seg_perception: {exc}") from None


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
