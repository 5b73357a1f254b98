"""Frames without labels, for label-free distillation: the images of a folder, or the RGB images of rosbags."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import Augment
from .layouts import FolderDatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")


class UnlabelledFrames(Dataset):
    """RGB frames as training samples {"rgb": float32 (3, H, W) in [0, 1], "index"}, at `size`.

    Frames are kept in memory as uint8 at their stored resolution (a folder's are decoded on first
    use, a bag's when it is read); with `augment`, each sample is scaled, cropped, flipped and
    colour-jittered from the stream (seed, epoch, index), else resized.

    Use `from_images` or `from_bags`.
    """

    def __init__(self, frames: list[np.ndarray] | list[Path], size: tuple[int, int], *,
                 augment: Augment | None = None, seed: int = 0, names: list[str] | None = None) -> None:
        if not frames:
            raise FolderDatasetError("no frames to distil from")
        self._frames: list[Any] = list(frames)
        self.size = tuple(size)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.names = names or [str(f) if isinstance(f, Path) else f"frame {i}" for i, f in enumerate(frames)]

    @classmethod
    def from_images(cls, folder: str | os.PathLike, size: tuple[int, int] | None = None, **options: Any
                    ) -> UnlabelledFrames:
        """Every image file under `folder` (recursively, sorted by path); `size` defaults to 320 wide with
        the first frame's aspect ratio.

        Raises:
            FolderDatasetError: no such folder, or no images in it.
        """
        root = Path(folder)
        if not root.is_dir():
            raise FolderDatasetError(f"image folder {root} does not exist or is not a folder")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise FolderDatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
        return cls(paths, size or _derived(_read(paths[0])), **options)

    @classmethod
    def from_bags(cls, bags: Iterable[str | os.PathLike], topic: str | None = None,
                  size: tuple[int, int] | None = None, **options: Any) -> UnlabelledFrames:
        """The colour images of `topic` in `bags` (Image or CompressedImage), decoded once into memory; without
        a topic, the one colour image topic the bags have.

        Raises:
            FolderDatasetError: an unreadable bag, a topic that is missing or not a colour image, no topic
                given where there are several, or a message that does not decode.
        """
        from seg_perception.io import BagError, BagReader, ConversionError
        from seg_perception.pipeline.decode import MessageDecoder

        decoder = MessageDecoder()
        paths = [Path(b) for b in bags]
        frames: list[np.ndarray] = []
        try:
            with BagReader(paths) as reader:
                topic = topic or _colour_topic(reader)
                if reader.topics.get(topic) not in IMAGE_TYPES:
                    found = reader.topics.get(topic, "missing")
                    raise FolderDatasetError(f"topic {topic} of {', '.join(map(str, paths))} is {found}; an image topic "
                                             f"({' or '.join(IMAGE_TYPES)}) expected")
                for message in reader.messages([topic]):
                    frames.append(decoder.decode("rgb", message.msg, topic))
        except (BagError, ConversionError) as exc:
            raise FolderDatasetError(f"cannot read frames from {', '.join(map(str, paths))}: {exc}") from None
        if not frames:
            raise FolderDatasetError(f"topic {topic} of {', '.join(map(str, paths))} has no messages")
        names = [f"{topic}[{i}]" for i in range(len(frames))]
        return cls(frames, size or _derived(frames[0]), names=names, **options)

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations for `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as stored: uint8 (H, W, 3) RGB (decoded into memory on first use)."""
        if isinstance(self._frames[index], Path):
            self._frames[index] = _read(self._frames[index])
        return self._frames[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rgb = self.frame(index)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, _, _ = self.augment(rgb, np.zeros(rgb.shape[:2], np.uint8), self.size, 0, rng)
        else:
            resized = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
            image = np.ascontiguousarray(resized.transpose(2, 0, 1), np.float32) / 255.0
        return {"rgb": torch.from_numpy(image), "index": index}


def _colour_topic(reader: Any) -> str:
    """The one topic of `reader` whose first message is a colour image."""
    candidates = []
    for topic, typename in sorted(reader.topics.items()):
        if typename not in IMAGE_TYPES:
            continue
        first = next(iter(reader.messages([topic])), None)
        if first is not None and (typename.endswith("CompressedImage") or getattr(first.msg, "encoding", "")
                                  in COLOUR_ENCODINGS):
            candidates.append(topic)
    if len(candidates) != 1:
        listed = ", ".join(candidates) if candidates else "none"
        raise FolderDatasetError(f"choose the image topic to distil from (--topic); colour image topics: {listed}")
    return candidates[0]


def _derived(rgb: np.ndarray) -> tuple[int, int]:
    from .sizes import derived_size

    return derived_size((rgb.shape[1], rgb.shape[0]))


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FolderDatasetError(f"cannot read image {path} (not an image, or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
