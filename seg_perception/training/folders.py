"""Training samples from image and label folders in the layouts users have (see `layouts`), with label maps
and label ids checked against the label set."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from seg_perception.io.encoding import encode_thermal
from seg_perception.label_maps import LabelMap, LabelMapError, load_label_map
from seg_perception.labels import LabelSet, LabelSetError, load_label_set

from .augment import Augment
from .layouts import FolderDatasetError, find_split


class FolderDataset(Dataset):
    """Aligned training samples from image and label folders, in the format of `SimDataset`.

    The layout (Cityscapes, generic, SegNet/CamVid or a dataset YAML) is detected unless `layout`
    names one; see `seg_perception.training.layouts`.

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

    Without a label map, the ids of each label image are checked against the label set the first
    time it is read: an id that is neither a class nor the ignore id is an error.

    Samples are deterministic: with `flip`, sample `index` is mirrored (all modalities together)
    when a draw from the random stream (seed, epoch, index) says so; `set_epoch` changes the draw.

    Args:
        root: dataset folder, or dataset YAML file.
        split: split name ("train", "val", …).
        label_map: a LabelMap, the name of one in config/label_maps, a path to one, or None (the
            dataset YAML's, if it names one).
        size: output (width, height); None keeps each image's size.
        layout: "auto", "cityscapes", "generic", "segnet" or "yaml".
        label_set: what the (mapped) label ids are: a LabelSet, a name or a path; default the label
            map's target, else the dataset YAML's, else None (raw ids, unchecked).
        flip: random horizontal flips (augmentation).
        seed: seed of the flips.
        thermal_scale: thermal counts per kelvin.
        cache: keep each sample's resized frame (uint8) and label ids in memory after its first read, so
            that later epochs decode nothing (in the process that reads it: the trainer's, with no
            loader workers).
        augment: random scale, crop to `size`, flip and colour jitter (see `Augment`), drawn from the
            stream (seed, epoch, index); `flip` is then ignored. Frames are kept at their stored
            resolution (when cached), so that scaling up reads real pixels. Needs `size`.

    Raises:
        FolderDatasetError: missing folders, unmatched files, no samples, a bad option, label map or
            label set, or a label map whose target is not `label_set`.
    """

    def __init__(self, root: str | os.PathLike, split: str, label_map: LabelMap | str | os.PathLike | None = None,
                 size: tuple[int, int] | None = None, layout: str = "auto", *,
                 label_set: LabelSet | str | os.PathLike | None = None, flip: bool = False, seed: int = 0,
                 thermal_scale: float = 100.0, cache: bool = False, augment: Augment | None = None) -> None:
        self.root = Path(root)
        self.split = split
        if size is not None and (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                                       for v in size)):
            raise FolderDatasetError(f"size must be (width, height) of positive integers or None, got {size!r}")
        if augment is not None and size is None:
            raise FolderDatasetError("augmentation crops to the training size: give a size with augment")
        if not thermal_scale > 0:
            raise FolderDatasetError(f"thermal_scale must be > 0 (counts per kelvin), got {thermal_scale!r}")
        files = find_split(self.root, split, layout)
        self.layout, self.samples = files.layout, files.samples
        self.size = tuple(size) if size is not None else None
        label_map = label_map if label_map is not None else files.label_map
        try:
            self.label_map = label_map if isinstance(label_map, LabelMap) or label_map is None \
                else load_label_map(label_map)
        except LabelMapError as exc:
            raise FolderDatasetError(str(exc)) from None
        self._label_set = _label_set(label_set if label_set is not None else files.label_set, self.label_map)
        self._checked: set[int] = set()
        self.cache = cache
        self._cached: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        self.flip = flip
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.thermal_scale = float(thermal_scale)

    @property
    def label_set(self) -> LabelSet | None:
        """The label set of the produced labels, or None for raw, unchecked ids."""
        return self._label_set

    @property
    def has_thermal(self) -> bool:
        return self.samples[0].thermal is not None

    def source_size(self) -> tuple[int, int]:
        """(width, height) of the split's first image, as stored.

        Raises:
            FolderDatasetError: the image cannot be read.
        """
        height, width = _read(self.samples[0].image, cv2.IMREAD_COLOR, "image").shape[:2]
        return width, height

    def set_epoch(self, epoch: int) -> None:
        """Draw new flips for `epoch` (deterministic per (seed, epoch, index))."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample `index` as stored: RGB uint8 (H, W, 3) and raw label ids (H, W) uint8 or uint16 (ids checked
        on the first read, see the class).

        Raises:
            IndexError: no such sample.
            FolderDatasetError: an unreadable image, a label image that is not single-channel 8- or
                16-bit ids, of another size than its image, or holding ids outside the label set.
        """
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
        if index not in self._checked:
            self._check_ids(labels, paths.label)
            self._checked.add(index)
        return rgb, labels

    def map_labels(self, labels: np.ndarray) -> np.ndarray:
        """Raw label ids (uint8 or uint16) → int64 ids of the label set (through the label map, if any)."""
        return self.label_map.apply(labels) if self.label_map is not None else labels.astype(np.int64)

    def class_counts(self, num_classes: int) -> np.ndarray:
        """Pixels of each class over the split (label set ids, ignore left out), as int64 (num_classes,);
        reads every sample once (into memory when cached)."""
        counts = np.zeros(num_classes, np.int64)
        for index in range(len(self)):
            labels = self.map_labels(self._resized(index)[1]).ravel()
            counts += np.bincount(labels[labels < num_classes], minlength=num_classes)[:num_classes]
        return counts

    def __getitem__(self, index: int) -> dict[str, Any]:
        rgb, labels, thermal = self._resized(index)
        paths = self.samples[index]
        labels = self.map_labels(labels)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augment is not None:
            ignore = self._label_set.ignore_id if self._label_set is not None else 255
            image, labels, thermal = self.augment(rgb, labels, self.size, ignore, rng, thermal)
        else:
            if self.flip and rng.random() < 0.5:
                rgb, labels = rgb[:, ::-1], labels[:, ::-1]
                thermal = thermal[:, ::-1] if thermal is not None else None
            image = np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32) / 255.0
        sample: dict[str, Any] = {
            "rgb": torch.from_numpy(image),
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
        }
        if thermal is not None:
            sample["thermal"] = torch.from_numpy(np.ascontiguousarray(thermal)[None])
        sample.update(index=index, path=str(paths.image), label_path=str(paths.label))
        return sample

    def _resized(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """RGB uint8, raw label ids and thermal at the output size, or as stored when augmenting (from memory
        when cached)."""
        if index in self._cached:
            return self._cached[index]
        rgb, labels = self.read(index)
        paths = self.samples[index]
        width, height = self.size if self.size and self.augment is None else (rgb.shape[1], rgb.shape[0])
        resized = (cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA),
                   cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST),
                   self._thermal(paths.thermal, width, height) if paths.thermal is not None else None)
        if self.cache:
            self._cached[index] = resized
        return resized

    def _check_ids(self, labels: np.ndarray, path: Path) -> None:
        """Raw ids must be classes of the label set or its ignore id (a label map makes every id valid)."""
        if self._label_set is None or self.label_map is not None:
            return
        accepted = {c.id for c in self._label_set.classes} | {self._label_set.ignore_id}
        found = np.flatnonzero(np.bincount(labels.ravel(), minlength=1)).tolist()
        if not set(found) <= accepted:
            raise FolderDatasetError(
                f"label image {path} holds ids {found}, of which {sorted(set(found) - accepted)} are not in label set "
                f"{self._label_set.name!r} (accepted: classes {_ranges(accepted - {self._label_set.ignore_id})} and "
                f"ignore {self._label_set.ignore_id}); choose the label set of the data or map its ids with a label "
                f"map")

    def _thermal(self, path: Path, width: int, height: int) -> np.ndarray:
        counts = _read(path, cv2.IMREAD_UNCHANGED, "thermal image")
        if counts.ndim != 2 or counts.dtype != np.uint16:
            raise FolderDatasetError(f"thermal image {path} is {counts.dtype} with shape {counts.shape}; expected "
                                     f"single-channel 16-bit radiometric counts (kelvin × {self.thermal_scale:g})")
        counts = cv2.resize(counts.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
        return encode_thermal(counts, self.thermal_scale)


def _label_set(given: LabelSet | str | os.PathLike | None, label_map: LabelMap | None) -> LabelSet | None:
    """The dataset's label set: `given` (which a label map must target), else the label map's target."""
    if given is None:
        return label_map.label_set if label_map is not None else None
    try:
        label_set = given if isinstance(given, LabelSet) else load_label_set(given)
    except (LabelSetError, OSError, yaml.YAMLError) as exc:
        raise FolderDatasetError(f"label set {str(given)!r}: {exc}") from None
    if label_map is not None and label_map.label_set != label_set:
        raise FolderDatasetError(f"label map {label_map.name!r} maps onto label set {label_map.label_set.name!r}, "
                                 f"not {label_set.name!r}; use a map onto {label_set.name!r} or that label set")
    return label_set


def _ranges(ids: set[int]) -> str:
    """Sorted ids with runs written as ranges: {0, 1, 2, 5} → "0-2, 5"."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _read(path: Path, flags: int, what: str) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FolderDatasetError(f"cannot read {what} {path} (missing, not an image, or corrupt)")
    return image
