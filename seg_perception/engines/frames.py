"""Pre- and post-processing shared by every backend: raw sensor frames → the model's input tensor,
and the engine's outputs → results at the frame's resolution.

Both run in torch on the engine's device, so a CUDA engine uploads a frame once and downloads
H x W results once; a CPU engine runs the same code on CPU tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seg_perception.io.encoding import KELVIN_AT_0C, THERMAL_CENTER_C, THERMAL_SCALE_C, EventWindow

from .errors import EngineError, SegmenterInputError

FITS = ("resize", "letterbox", "crop")
_FIT_NAMES = {"stretch": "resize"}  # model cards' name for it


@dataclass(frozen=True)
class Placement:
    """Where a frame of `source` size (width, height) lands in a model input of `input` size: the box
    (x0, y0, width, height) its content fills; the rest is padding (letterbox), or the box overflows
    the input and the overflow is cut (crop)."""

    source: tuple[int, int]
    box: tuple[int, int, int, int]
    input: tuple[int, int] = (0, 0)


def place(source: tuple[int, int], size: tuple[int, int], fit: str) -> Placement:
    """The placement of a frame of `source` (width, height) in a model input of `size`."""
    width, height = size
    if fit == "resize":
        return Placement(source, (0, 0, width, height), size)
    scale = (min if fit == "letterbox" else max)(width / source[0], height / source[1])
    w, h = round(source[0] * scale), round(source[1] * scale)
    if fit == "letterbox":
        w, h = min(width, w), min(height, h)
    else:
        w, h = max(width, w), max(height, h)
    return Placement(source, ((width - w) // 2, (height - h) // 2, w, h), size)


def fit_name(fit: str) -> str:
    """A resize policy's canonical name.

    Raises:
        ValueError: an unknown one.
    """
    fit = _FIT_NAMES.get(fit, fit)
    if fit not in FITS:
        raise ValueError(f"fit {fit!r} is not known; choose stretch (resize), letterbox or crop")
    return fit


class Preprocessor:
    """Frames → (x (1, C, H, W), present (1, M)) float32 on `device`, modalities in the model's order.

    The modalities are assumed registered (same field of view, any resolution); each is resized, or
    letterboxed with the aspect ratio of the first given modality, to width x height. Encodings
    follow `seg_perception.io.encoding`: rgb uint8 (H, W, 3) in RGB order; thermal uint16 (H, W)
    radiometric counts (kelvin x 100); events an `EventWindow` or a (bins, H, W) float32 voxel grid.
    """

    def __init__(self, modalities: tuple[str, ...], event_bins: int, width: int, height: int, *,
                 fit: str = "resize", device: str | torch.device = "cpu") -> None:
        self.modalities = modalities
        self.event_bins = event_bins
        self.size = (width, height)
        self.fit = fit_name(fit)
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
        placement = place(next(iter(sizes.values())), self.size, self.fit)
        parts, present = [], []
        width, height = self.size
        for modality in self.modalities:
            value = given[modality]
            channels = self.event_bins if modality == "events" else 3 if modality == "rgb" else 1
            if value is None:
                parts.append(torch.zeros(1, channels, height, width, device=self.device))
                present.append(0.0)
                continue
            tensor = _fit(self._encode(modality, value, placement), placement)
            parts.append(tensor.float().div_(255.0) if modality == "rgb" else tensor)
            present.append(1.0)
        x = torch.cat(parts, dim=1).contiguous()
        return x, torch.tensor([present], dtype=torch.float32, device=self.device), placement

    def feed(self, frame: dict[str, object]) -> dict[str, np.ndarray]:
        """ONNX feeds {"x", "present"} (numpy) of a frame dict; modalities the model lacks are ignored
        (for calibration and parity checks on frames that carry every modality)."""
        x, present, _ = self(**{m: v for m, v in frame.items() if m in self.modalities})
        return {"x": x.cpu().numpy(), "present": present.cpu().numpy()}

    def _source_size(self, modality: str, value: object) -> tuple[int, int]:
        if modality == "events":
            if isinstance(value, EventWindow):
                return value.width, value.height
            if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[0] == self.event_bins:
                return value.shape[2], value.shape[1]
            raise SegmenterInputError(f"events must be an EventWindow or a ({self.event_bins}, H, W) float32 voxel grid; "
                                      f"got {_describe(value)}")
        return _image_size(modality, value)

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
        if modality == "rgb":
            return _rgb_tensor(value, self.device)
        tensor = _to_device(value, self.device)
        celsius = tensor.reshape(1, 1, *tensor.shape[:2]).float().div_(100.0).sub_(KELVIN_AT_0C)
        return celsius.sub_(THERMAL_CENTER_C).div_(THERMAL_SCALE_C)


class ImagePreprocessor:
    """RGB frames → the input tensor a model card describes (`card.Binding`): resized by its policy,
    channel order, value range, mean and std, element type and layout; on `device`.

    Returns (feeds, placement): feeds maps the image input and the card's extra inputs to tensors.
    """

    def __init__(self, binding: Any, device: str | torch.device = "cpu") -> None:
        spec = binding.card.input
        self.binding = binding
        self.fit = fit_name(spec.resize)
        self.device = torch.device(device)
        scale = 1.0 / 255.0 if spec.range == 1 else 1.0
        # (pixel * scale - mean) / std as one multiply-add per channel
        self.gain = torch.tensor([scale / s for s in spec.std], device=self.device).view(1, 3, 1, 1)
        self.offset = torch.tensor([-m / s for m, s in zip(spec.mean, spec.std)], device=self.device).view(1, 3, 1, 1)
        self.bgr = spec.channels == "BGR"
        self.extra = {k: torch.from_numpy(v).to(self.device) for k, v in binding.extra.items()}

    def __call__(self, rgb: np.ndarray) -> tuple[dict[str, torch.Tensor], Placement]:
        source = _image_size("rgb", rgb)
        placement = place(source, self.binding.run_size(source), self.fit)
        tensor = _fit(_rgb_tensor(rgb, self.device), placement)
        if self.bgr:
            tensor = tensor.flip(1)
        if self.binding.dtype == "uint8":
            tensor = tensor.round().to(torch.uint8) if tensor.is_floating_point() else tensor
        else:
            tensor = tensor.float().mul_(self.gain).add_(self.offset)
            if self.binding.dtype == "float16":
                tensor = tensor.half()
        tensor = tensor.permute(0, 2, 3, 1) if self.binding.layout == "NHWC" else tensor
        return {self.binding.input.name: tensor.contiguous(), **self.extra}, placement


def _image_size(modality: str, value: object) -> tuple[int, int]:
    """(width, height) of an rgb or thermal frame.

    Raises:
        SegmenterInputError: not an array of the modality's encoding.
    """
    expected = {"rgb": ("(H, W, 3) uint8 array in RGB order", np.uint8, 3),
                "thermal": ("(H, W) uint16 array of radiometric counts (kelvin x 100)", np.uint16, 1)}[modality]
    ok = isinstance(value, np.ndarray) and value.dtype == expected[1] and (
        value.ndim == 3 and value.shape[2] == expected[2] or value.ndim == 2 and expected[2] == 1)
    if not ok or value.shape[0] < 1 or value.shape[1] < 1:
        raise SegmenterInputError(f"{modality} must be a {expected[0]}; got {_describe(value)}")
    return value.shape[1], value.shape[0]


def _to_device(value: np.ndarray, device: torch.device) -> torch.Tensor:
    array = np.ascontiguousarray(value)  # a message's buffer is read-only; torch wants writable memory
    return torch.from_numpy(array if array.flags.writeable else array.copy()).to(device, non_blocking=True)


def _rgb_tensor(value: np.ndarray, device: torch.device) -> torch.Tensor:
    """(1, 3, H, W) at the frame's resolution: uint8 on CPU (a channels_last view, what uint8 resizing
    wants: it is resized before scaling, the fast path), float on CUDA (which resizes floats only)."""
    rgb = _to_device(value, device).permute(2, 0, 1)[None]
    return rgb if device.type == "cpu" else rgb.float()


def _fit(tensor: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Resize a (1, C, h, w) tensor to its placement's box, then pad (letterbox) or cut (crop) it to the input."""
    x0, y0, w, h = placement.box
    if tensor.shape[-2:] != (h, w):
        shrink = tensor.shape[-1] > w or tensor.shape[-2] > h
        tensor = F.interpolate(tensor, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    width, height = placement.input
    if (w, h) == (width, height):
        return tensor
    return F.pad(tensor, (x0, width - w - x0, y0, height - h - y0))  # negative padding cuts


class OutputDecoder:
    """A foreign network's raw output (`card.Binding`: logits, probabilities, sigmoid scores or class
    ids, NCHW or NHWC, at any resolution) → {"labels" (1, h, w) int64, "confidence" (1, h, w) float32}
    on its device; class ids carry no confidence (it is unavailable, not 1.0). Ids outside the label
    set become `ignore_id`.

    Raises (when called):
        EngineError: a score output whose channel count is not the label set's (dynamic graphs).
    """

    def __init__(self, kind: str, layout: str, num_classes: int, ignore_id: int) -> None:
        self.kind, self.layout, self.num_classes, self.ignore_id = kind, layout, num_classes, ignore_id

    def log_probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) class log-probabilities: log-softmax of logits, the log of probabilities (per-class
        sigmoids normalised to sum to one), and for class ids a one-hot distribution (1e-4 elsewhere)."""
        if self.kind == "class_ids":
            ids = self(raw)["labels"]
            valid = ids != self.ignore_id
            one_hot = torch.nn.functional.one_hot(ids.clamp(0, self.num_classes - 1), self.num_classes)
            probabilities = one_hot.permute(0, 3, 1, 2).float() * valid[:, None] + 1e-4
        else:
            scores = raw.float().permute(0, 3, 1, 2) if self.layout == "NHWC" else raw.float()
            if self.kind == "logits":
                return torch.log_softmax(scores, dim=1)
            probabilities = torch.sigmoid(scores) if self.kind == "sigmoid" else scores.clamp_min(1e-8)
        return torch.log(probabilities / probabilities.sum(dim=1, keepdim=True))

    def __call__(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.kind == "class_ids":
            ids = raw.reshape(1, *raw.shape[-3:-1]) if self.layout == "NHWC" else raw.reshape(1, *raw.shape[-2:])
            ids = ids.long()
            return {"labels": ids.masked_fill_((ids < 0) | (ids >= self.num_classes), self.ignore_id)}
        scores = raw.float()
        if self.layout == "NHWC":
            scores = scores.permute(0, 3, 1, 2)
        if scores.shape[1] != self.num_classes:
            raise EngineError(f"the model output has {scores.shape[1]} channels but its label set has "
                              f"{self.num_classes} classes")
        top, labels = scores.max(dim=1)
        if self.kind == "logits":  # max softmax = 1 / sum(exp(l - max))
            confidence = torch.reciprocal(torch.exp(scores - top.unsqueeze(1)).sum(dim=1))
        elif self.kind == "sigmoid":
            confidence = torch.sigmoid(top)
        else:
            confidence = top
        return {"labels": labels, "confidence": confidence}


class Postprocessor:
    """Engine outputs → labels (uint8, or uint16 for larger label sets), confidence and the refined mask
    at the frame's resolution.

    Each frame pixel takes the output pixel under its centre, wherever its placement put it in the
    model input and whatever the output's resolution relative to that input (1/4-resolution logits,
    full-resolution labels): the same nearest-pixel rule for every model, so every pixel's confidence
    belongs to its label and padding never maps back. Pixels a crop cut away get `fill` (the ignore
    id), confidence 0, refined False.

    Args:
        label_dtype: np.uint8 or np.uint16.
        class_map: optional lookup table, model id → published id (a run-time class map), with one
            entry per model class.
        fill: the label of pixels with no prediction.
    """

    def __init__(self, label_dtype: type, *, class_map: np.ndarray | None = None, fill: int = 255) -> None:
        self.label_dtype = label_dtype
        self.class_map = torch.from_numpy(class_map.astype(np.int64)) if class_map is not None else None
        self.fill = fill
        self._lookups: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor, bool]] = {}

    def __call__(self, outputs: dict[str, torch.Tensor], placement: Placement
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """outputs: "labels" (1, h, w) integers; optional "confidence" (1, h, w) and "refined" (1, 1, h', w')."""
        labels = outputs["labels"]
        if self.class_map is not None:
            if self.class_map.device != labels.device:  # moved once, to the engine's device
                self.class_map = self.class_map.to(labels.device)
            labels = self.class_map[labels.long().clamp_(0, self.class_map.numel() - 1)]
        labels = self.to_source(labels[0].to(torch.int32), placement, self.fill).cpu().numpy()
        confidence = outputs.get("confidence")
        if confidence is not None:
            confidence = self.to_source(confidence[0].float(), placement, 0.0).cpu().numpy()
        refined = outputs.get("refined")
        if refined is None:
            refined_mask = np.zeros(labels.shape, bool)
        else:
            refined_mask = self.to_source(refined[0, 0], placement, 0.0).cpu().numpy() > 0.5
        return labels.astype(self.label_dtype, copy=False), confidence, refined_mask

    def to_source(self, tensor: torch.Tensor, placement: Placement, fill: float) -> torch.Tensor:
        """A (..., h, w) output map at the frame's (..., H, W) resolution by the nearest-pixel rule; `fill`
        where a crop cut the frame away."""
        rows, cols, inside = self._lookup(tuple(tensor.shape[-2:]), placement, tensor.device)
        out = tensor.index_select(-2, rows).index_select(-1, cols)
        if inside is not None:
            out[..., ~inside] = fill
        return out

    def _lookup(self, shape: tuple[int, ...], placement: Placement, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Row and column indices into an output of `shape` for each frame pixel, and the mask of frame
        pixels inside the model input (None when all are)."""
        key = (shape, placement, device)
        found = self._lookups.get(key)
        if found is None:
            rows, rows_inside = _centres(placement, shape[0], axis=1)
            cols, cols_inside = _centres(placement, shape[1], axis=0)
            inside = None
            if not (rows_inside.all() and cols_inside.all()):
                inside = torch.from_numpy(rows_inside[:, None] & cols_inside[None, :]).to(device)
            found = (torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device), inside)
            if len(self._lookups) > 8:  # frames of a stream share a size; bound it all the same
                self._lookups.clear()
            self._lookups[key] = found
        return found


def _centres(placement: Placement, out_size: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """For each frame pixel along `axis` (0: x, 1: y): the output pixel under its centre (clamped), and
    whether the centre lies inside the model input (not cut away by a crop)."""
    x0, y0, w, h = placement.box
    start, extent, size = (x0, w, placement.input[0]) if axis == 0 else (y0, h, placement.input[1])
    count = placement.source[axis]
    centres = start + (np.arange(count) + 0.5) * (extent / count)  # in model input pixels
    index = np.floor(centres * (out_size / size)).astype(np.int64)
    return np.clip(index, 0, out_size - 1), (centres >= 0) & (centres < size)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
