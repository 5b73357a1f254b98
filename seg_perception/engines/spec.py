"""What an engine is built for: input size, refinement budget, precision."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import EngineError

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class EngineSpec:
    """The static shape and numeric format an engine runs at.

    Attributes:
        width: model input width (pixels); frames of any size are resized or letterboxed to it. 0 (with
            height 0): each frame's own size (a carded network with dynamic height and width).
        height: model input height.
        k: locations the student refines (0: base prediction only); ignored by the teacher.
        precision: "fp32", "fp16", "bf16" (PyTorch only) or "int8" (ONNX Runtime CPU, TensorRT).
    """

    width: int
    height: int
    k: int
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("width", "height", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise EngineError(f"{name} {value!r} is invalid; accepted: an integer")
        if (self.width, self.height) != (0, 0) and (self.width < 32 or self.height < 32):
            raise EngineError(f"input size {self.width}x{self.height} is too small; use at least 32x32")
        if self.k < 0:
            raise EngineError(f"k must be >= 0, got {self.k}")
        if self.precision not in PRECISIONS:
            raise EngineError(f"precision {self.precision!r} is not known; choose one of {', '.join(PRECISIONS)}")

    @property
    def per_frame(self) -> bool:
        """True when the engine runs each frame at the frame's own size."""
        return (self.width, self.height) == (0, 0)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
