"""Ground truth from a folder of label images, for bags that carry no label topic.

Each file is one frame's single-channel class-id image (PNG, mono8 or mono16) named after its
stamp: the stem ends in nanoseconds (`1700000000100000000.png`, `frame-1700000000100000000.png`)
or in seconds with a decimal point (`1581624652.150.png`, as many datasets name them). A frame
takes the image closest to its stamp within the slop.
"""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import cv2
import numpy as np

from .config import ConfigError

SUFFIXES = (".png", ".tif", ".tiff")
_STAMP = re.compile(r"(\d+\.\d+|\d{16,})$")


def stamp_from_name(stem: str) -> int | None:
    """Nanoseconds from a file stem ending in a ns stamp (16+ digits) or decimal seconds; None otherwise."""
    found = _STAMP.search(stem)
    if found is None:
        return None
    text = found.group(1)
    return int(Decimal(text) * 1_000_000_000) if "." in text else int(text)


class LabelFolder:
    """The label images of `path`, looked up by stamp.

    Raises:
        ConfigError: the folder does not exist, holds no label images, or a file's name carries no stamp.
    """

    def __init__(self, path: str | Path, slop_ns: int) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"label folder {self.path} does not exist")
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise ConfigError(f"label folder {self.path} holds no label images ({', '.join(SUFFIXES)})")
        unnamed = [p.name for p in files if stamp_from_name(p.stem) is None]
        if unnamed:
            raise ConfigError(f"label images must be named by stamp (…<ns>.png or …<seconds>.<fraction>.png); "
                              f"{len(unnamed)} are not, e.g. {unnamed[0]}")
        order = np.argsort([stamp_from_name(p.stem) for p in files], kind="stable")
        self.files = [files[i] for i in order]
        self.stamps_ns = np.array([stamp_from_name(p.stem) for p in self.files], np.int64)
        self.slop_ns = slop_ns

    def __len__(self) -> int:
        return len(self.files)

    def at(self, stamp_ns: int) -> np.ndarray | None:
        """The label image closest to `stamp_ns` within the slop, else None.

        Raises:
            ConfigError: the file is unreadable or not a single-channel integer image.
        """
        i = int(np.searchsorted(self.stamps_ns, stamp_ns))
        candidates = [j for j in (i - 1, i) if 0 <= j < len(self.files)]
        best = min(candidates, key=lambda j: abs(int(self.stamps_ns[j]) - stamp_ns))
        if abs(int(self.stamps_ns[best]) - stamp_ns) > self.slop_ns:
            return None
        image = cv2.imread(str(self.files[best]), cv2.IMREAD_UNCHANGED)
        if image is None or image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
            what = "unreadable" if image is None else f"{image.dtype} with shape {image.shape}"
            raise ConfigError(f"label image {self.files[best]} is {what}; single-channel mono8/mono16 class ids "
                              f"expected")
        return image
