"""Pre- and post-processing shared by every backend: raw sensor frames → the model's input tensor,
and the engine's outputs → results at the frame's resolution.

Both run in torch on the engine's device, so a CUDA engine uploads a frame once and downloads
H x W results once; a CPU engine runs the same code on CPU tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seg_perception.io.encoding import KELVIN_AT_0C, THERMAL_CENTER_C, THERMAL_SCALE_C, EventWindow

from .errors import SegmenterInputError

FITS = ("resize", "letterbox")


@dataclass(frozen=True)
class Placement:
    """Where a frame of `source` size (width, height) lands in the model input: the box
    (x0, y0, width, height) its content fills; the rest is padding (letterbox)."""

    source: tuple[int, int]
    box: tuple[int, int, int, int]


class Preprocessor:
    """Frames → (x (1, C, H, W), present (1, M)) float32 on `device`, modalities in the model's order.

    The modalities are assumed registered (same field of view, any resolution); each is resized, or
    letterboxed with the aspect ratio of the first given modality, to width x height. Encodings
    follow `seg_perception.io.encoding`: rgb uint8 (H, W, 3) in RGB order; thermal uint16 (H, W)
    radiometric counts (kelvin x 100); events an `EventWindow` or a (bins, H, W) float32 voxel grid.
    """

    def __init__(self, modalities: tuple[str, ...], event_bins: int, width: int, height: int, *,
                 fit: str = "resize", device: str | torch.device = "cpu") -> None:
        if fit not in FITS:
            raise ValueError(f"fit {fit!r} is not known; choose {' or '.join(FITS)}")
        self.modalities = modalities
        self.event_bins = event_bins
        self.size = (width, height)
        self.fit = fit
        self.device = torch.device(device)

    def __call__(self, rgb: np.ndarray | None = None, thermal: np.ndarray | None = None,
                 events: EventWindow | np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, Placement]:
        given = {"rgb": rgb, "thermal": thermal, "events": events}
        unknown = [m for m, v in given.items() if v is not None and m not in self.modalities]
        if unknown:
            raise SegmenterInputError(f"the model takes {list(self.modalities)}; it cannot use {unknown}")
        sizes = {m: self._source_size(m, v) for m, v in given.items() if v is not None}
        if not sizes:
            raise SegmenterInputError(f"no input: give at least one of the model's modalities {list(self.modalities)}")
        placement = self.place(next(iter(sizes.values())))
        parts, present = [], []
        width, height = self.size
        for modality in self.modalities:
            value = given[modality]
            channels = self.event_bins if modality == "events" else 3 if modality == "rgb" else 1
            if value is None:
                parts.append(torch.zeros(1, channels, height, width, device=self.device))
                present.append(0.0)
                continue
            tensor = self._fit(self._encode(modality, value, placement), placement)
            parts.append(tensor.float().div_(255.0) if modality == "rgb" else tensor)
            present.append(1.0)
        x = torch.cat(parts, dim=1).contiguous()
        return x, torch.tensor([present], dtype=torch.float32, device=self.device), placement

    def feed(self, frame: dict[str, object]) -> dict[str, np.ndarray]:
        """ONNX feeds {"x", "present"} (numpy) of a frame dict; modalities the model lacks are ignored
        (for calibration and parity checks on frames that carry every modality)."""
        x, present, _ = self(**{m: v for m, v in frame.items() if m in self.modalities})
        return {"x": x.cpu().numpy(), "present": present.cpu().numpy()}

    def place(self, source: tuple[int, int]) -> Placement:
        """The placement of a frame of `source` (width, height)."""
        width, height = self.size
        if self.fit == "resize":
            return Placement(source, (0, 0, width, height))
        scale = min(width / source[0], height / source[1])
        w, h = min(width, round(source[0] * scale)), min(height, round(source[1] * scale))
        return Placement(source, ((width - w) // 2, (height - h) // 2, w, h))

    def _source_size(self, modality: str, value: object) -> tuple[int, int]:
        if modality == "events":
            if isinstance(value, EventWindow):
                return value.width, value.height
            if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[0] == self.event_bins:
                return value.shape[2], value.shape[1]
            raise SegmenterInputError(f"events must be an EventWindow or a ({self.event_bins}, H, W) float32 voxel grid; "
                                      f"got {_describe(value)}")
        expected = {"rgb": ("(H, W, 3) uint8 array in RGB order", np.uint8, 3),
                    "thermal": ("(H, W) uint16 array of radiometric counts (kelvin x 100)", np.uint16, 1)}[modality]
        ok = isinstance(value, np.ndarray) and value.dtype == expected[1] and (
            value.ndim == 3 and value.shape[2] == expected[2] or value.ndim == 2 and expected[2] == 1)
        if not ok or value.shape[0] < 1 or value.shape[1] < 1:
            raise SegmenterInputError(f"{modality} must be a {expected[0]}; got {_describe(value)}")
        return value.shape[1], value.shape[0]

    def _encode(self, modality: str, value: object, placement: Placement) -> torch.Tensor:
        """(1, C, h, w) on the device at the frame's own resolution: rgb still uint8 (it is resized
        before scaling, the fast path), thermal encoded; events binned down to the box when the
        sensor is larger."""
        if modality == "events":
            if isinstance(value, EventWindow):
                box_w, box_h = placement.box[2:]
                out_size = (box_h, box_w) if value.width >= box_w and value.height >= box_h else None
                value = value.voxel_grid(self.event_bins, out_size)
            return torch.from_numpy(np.ascontiguousarray(value, np.float32)).to(self.device)[None]
        array = np.ascontiguousarray(value)  # a message's buffer is read-only; torch wants writable memory
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy()).to(self.device, non_blocking=True)
        if modality == "rgb":
            rgb = tensor.permute(2, 0, 1)[None]  # a channels_last view, what uint8 resizing wants
            return rgb if self.device.type == "cpu" else rgb.float()  # CUDA resizes floats only
        celsius = tensor.reshape(1, 1, *tensor.shape[:2]).float().div_(100.0).sub_(KELVIN_AT_0C)
        return celsius.sub_(THERMAL_CENTER_C).div_(THERMAL_SCALE_C)

    def _fit(self, tensor: torch.Tensor, placement: Placement) -> torch.Tensor:
        x0, y0, w, h = placement.box
        if tensor.shape[-2:] != (h, w):
            shrink = tensor.shape[-1] > w or tensor.shape[-2] > h
            tensor = F.interpolate(tensor, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
        width, height = self.size
        if (w, h) == (width, height):
            return tensor
        return F.pad(tensor, (x0, width - w - x0, y0, height - h - y0))


class Postprocessor:
    """Engine outputs → labels (uint8, or uint16 above 255 classes), confidence and the refined mask at
    the frame's resolution, by nearest-pixel lookup ("nearest-exact": pixel centres), so every
    pixel's confidence belongs to its label and padding never maps back."""

    def __init__(self, num_classes: int, width: int, height: int) -> None:
        self.label_dtype = np.uint8 if num_classes <= 255 else np.uint16
        self.size = (width, height)

    def __call__(self, outputs: dict[str, torch.Tensor], placement: Placement) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        width, height = self.size
        # uint8 interpolates natively; larger ids go through float32, exact below 2**24.
        labels = outputs["labels"].to(torch.uint8 if self.label_dtype == np.uint8 else torch.float32)[:, None]
        refined = outputs["refined"]
        if refined.shape[-2:] != (height, width):
            refined = F.interpolate(refined, size=(height, width), mode="nearest-exact")
        maps = [self._to_source(t, placement) for t in (labels, outputs["confidence"][:, None], refined)]
        labels, confidence, refined = (t[0, 0].cpu().numpy() for t in maps)
        return labels.astype(self.label_dtype, copy=False), confidence, refined > 0.5

    def _to_source(self, tensor: torch.Tensor, placement: Placement) -> torch.Tensor:
        x0, y0, w, h = placement.box
        if (w, h) != self.size:
            tensor = tensor[..., y0:y0 + h, x0:x0 + w]
        source_w, source_h = placement.source
        if (source_w, source_h) == (w, h):
            return tensor
        return F.interpolate(tensor, size=(source_h, source_w), mode="nearest-exact")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
