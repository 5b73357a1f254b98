"""Training samples from image and label folders (Cityscapes layout or images/ + labels/), with label maps."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from seg_perception.label_maps import LabelMap, LabelMapError, load_label_map
from seg_perception.labels import LabelSet
from seg_perception.io.encoding import encode_thermal

LAYOUTS = ("auto", "cityscapes", "generic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CITYSCAPES_IMAGE = "_leftImg8bit.png"
CITYSCAPES_LABEL = "_gtFine_labelIds.png"
# How many offending file names an error message lists before it says "and N more".
SHOWN = 5


class FolderDatasetError(ValueError):
    """A dataset folder, label image or label map that cannot be used, and why."""


@dataclass(frozen=True)
class SamplePaths:
    """The files of one sample."""

    image: Path
    label: Path
    thermal: Path | None = None


class FolderDataset(Dataset):
    """Aligned training samples from image and label folders, in the format of `SimDataset`.

    Layouts (`layout`):

    - "cityscapes": `<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` with
      `<root>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png`;
    - "generic": `<root>/<split>/images/*.{png,jpg,jpeg}` with `<root>/<split>/labels/*.png`, paired
      by file stem, and optionally `<root>/<split>/thermal/*.png` (16-bit) paired the same way;
    - "auto": "cityscapes" when `<root>/leftImg8bit` exists, else "generic".

    Every image must have a label (and a thermal image, when the thermal folder exists) and every
    label an image; otherwise construction fails and names the unmatched files.

    Each sample is a dict:

    - "rgb": float32 (3, H, W) in [0, 1], resized with INTER_AREA;
    - "labels": int64 (H, W), resized with INTER_NEAREST, then mapped by the label map (unmapped
      ids → its ignore id); without a label map the raw ids;
    - "thermal" (when the split has a thermal folder): float32 (1, H, W), normalised like the
      synthetic data (`seg_perception.io.encoding.encode_thermal`) with `thermal_scale` counts per
      kelvin. This assumes radiometric 16-bit images in
      kelvin × `thermal_scale` (100 for the synthetic world and FLIR-style "centikelvin" exports)
      that are registered to the RGB image (same field of view; any resolution);
    - metadata: "index", "path" (the image), "label_path".

    Samples are deterministic: with `flip`, sample `index` is mirrored (all modalities together)
    when a draw from the random stream (seed, epoch, index) says so; `set_epoch` changes the draw.

    Args:
        root: dataset folder.
        split: split folder name ("train", "val", …).
        label_map: a LabelMap, the name of one in config/label_maps, a path to one, or None.
        size: output (width, height); None keeps each image's size.
        layout: "auto", "cityscapes" or "generic".
        flip: random horizontal flips (augmentation).
        seed: seed of the flips.
        thermal_scale: thermal counts per kelvin.

    Raises:
        FolderDatasetError: missing folders, unmatched files, no samples, a bad option or label map.
    """

    def __init__(self, root: str | os.PathLike, split: str, label_map: LabelMap | str | os.PathLike | None = None,
                 size: tuple[int, int] | None = (320, 180), layout: str = "auto", *, flip: bool = False,
                 seed: int = 0, thermal_scale: float = 100.0) -> None:
        self.root = Path(root)
        self.split = split
        if layout not in LAYOUTS:
            raise FolderDatasetError(f"layout {layout!r} is not supported; supported: {', '.join(LAYOUTS)}")
        if size is not None and (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                                       for v in size)):
            raise FolderDatasetError(f"size must be (width, height) of positive integers or None, got {size!r}")
        if not thermal_scale > 0:
            raise FolderDatasetError(f"thermal_scale must be > 0 (counts per kelvin), got {thermal_scale!r}")
        if not self.root.is_dir():
            raise FolderDatasetError(f"dataset root {self.root} is not a folder")
        self.size = tuple(size) if size is not None else None
        try:
            self.label_map = label_map if isinstance(label_map, LabelMap) or label_map is None \
                else load_label_map(label_map)
        except LabelMapError as exc:
            raise FolderDatasetError(str(exc)) from None
        self.layout = layout if layout != "auto" else ("cityscapes" if (self.root / "leftImg8bit").is_dir()
                                                       else "generic")
        self.samples = _cityscapes_pairs(self.root, split) if self.layout == "cityscapes" \
            else _generic_pairs(self.root, split)
        self.flip = flip
        self.seed = seed
        self.epoch = 0
        self.thermal_scale = float(thermal_scale)

    @property
    def label_set(self) -> LabelSet | None:
        """The label set of the produced labels (that of the label map), or None for raw ids."""
        return self.label_map.label_set if self.label_map is not None else None

    @property
    def has_thermal(self) -> bool:
        return self.samples[0].thermal is not None

    def set_epoch(self, epoch: int) -> None:
        """Draw new flips for `epoch` (deterministic per (seed, epoch, index))."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} is out of range for a split of {len(self)} samples")
        paths = self.samples[index]
        rgb = cv2.cvtColor(_read(paths.image, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)
        labels = _read(paths.label, cv2.IMREAD_UNCHANGED, "label image")
        if labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
            raise FolderDatasetError(f"label image {paths.label} is {labels.dtype} with shape {labels.shape}; "
                                     f"expected single-channel 8- or 16-bit class ids (e.g. *_labelIds.png, not a "
                                     f"colour rendering)")
        if labels.shape != rgb.shape[:2]:
            raise FolderDatasetError(f"label image {paths.label} is {labels.shape[1]}x{labels.shape[0]} but image "
                                     f"{paths.image} is {rgb.shape[1]}x{rgb.shape[0]}")
        width, height = self.size or (rgb.shape[1], rgb.shape[0])
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
        labels = self.label_map.apply(labels) if self.label_map is not None else labels.astype(np.int64)
        thermal = self._thermal(paths.thermal, width, height) if paths.thermal is not None else None
        if self.flip and np.random.default_rng([self.seed, self.epoch, index]).random() < 0.5:
            rgb, labels = rgb[:, ::-1], labels[:, ::-1]
            thermal = thermal[:, ::-1] if thermal is not None else None
        sample: dict[str, Any] = {
            "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32) / 255.0),
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
        }
        if thermal is not None:
            sample["thermal"] = torch.from_numpy(np.ascontiguousarray(thermal)[None])
        sample.update(index=index, path=str(paths.image), label_path=str(paths.label))
        return sample

    def _thermal(self, path: Path, width: int, height: int) -> np.ndarray:
        counts = _read(path, cv2.IMREAD_UNCHANGED, "thermal image")
        if counts.ndim != 2 or counts.dtype != np.uint16:
            raise FolderDatasetError(f"thermal image {path} is {counts.dtype} with shape {counts.shape}; expected "
                                     f"single-channel 16-bit radiometric counts (kelvin × {self.thermal_scale:g})")
        counts = cv2.resize(counts.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
        return encode_thermal(counts, self.thermal_scale)


def _read(path: Path, flags: int, what: str) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FolderDatasetError(f"cannot read {what} {path} (missing, not an image, or corrupt)")
    return image


def _require_folder(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FolderDatasetError(f"missing {what} folder {path}")


def _listing(paths: list[Path], root: Path) -> str:
    names = sorted(str(p.relative_to(root)) for p in paths)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _cityscapes_pairs(root: Path, split: str) -> list[SamplePaths]:
    images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    _require_folder(images_dir, "Cityscapes image")
    _require_folder(labels_dir, "Cityscapes label")
    images = {p.relative_to(images_dir).as_posix()[:-len(CITYSCAPES_IMAGE)]: p
              for p in images_dir.glob(f"*/*{CITYSCAPES_IMAGE}")}
    labels = {p.relative_to(labels_dir).as_posix()[:-len(CITYSCAPES_LABEL)]: p
              for p in labels_dir.glob(f"*/*{CITYSCAPES_LABEL}")}
    _check_matched(root, images, labels, f"*{CITYSCAPES_LABEL} label", f"*{CITYSCAPES_IMAGE} image")
    return [SamplePaths(images[key], labels[key]) for key in sorted(images)]


def _generic_pairs(root: Path, split: str) -> list[SamplePaths]:
    base = root / split
    if not base.is_dir() or not (base / "images").is_dir():
        raise FolderDatasetError(f"no dataset layout found under {root} for split {split!r}: expected "
                                 f"{root / 'leftImg8bit' / split} (Cityscapes) or {base / 'images'} with "
                                 f"{base / 'labels'} (generic)")
    _require_folder(base / "labels", "label")
    images = _by_stem(base / "images", IMAGE_SUFFIXES)
    labels = _by_stem(base / "labels", (".png",))
    _check_matched(root, images, labels, "label", "image")
    thermal = None
    if (base / "thermal").is_dir():
        thermal = _by_stem(base / "thermal", (".png",))
        _check_matched(root, images, thermal, "thermal image", "image")
    return [SamplePaths(images[stem], labels[stem], thermal[stem] if thermal is not None else None)
            for stem in sorted(images)]


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in found:
                raise FolderDatasetError(f"{found[path.stem]} and {path} share the stem {path.stem!r}; "
                                         f"keep one file per sample")
            found[path.stem] = path
    return found


def _check_matched(root: Path, images: dict[str, Path], others: dict[str, Path], other: str, image: str) -> None:
    if not images:
        raise FolderDatasetError(f"no images found under {root} (expected {image} files)")
    lonely = [images[k] for k in images.keys() - others.keys()]
    if lonely:
        raise FolderDatasetError(f"{len(lonely)} images have no {other}: {_listing(lonely, root)}")
    orphans = [others[k] for k in others.keys() - images.keys()]
    if orphans:
        raise FolderDatasetError(f"{len(orphans)} {other} files have no {image}: {_listing(orphans, root)}")
