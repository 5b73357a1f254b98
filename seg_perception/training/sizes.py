"""Input sizes that keep the data's aspect ratio: derived from the frames, or checked when given."""
from __future__ import annotations

from .layouts import FolderDatasetError

DEFAULT_WIDTH = 320
# Heights are rounded to a multiple of 16: the student's 1/4, 1/8 and 1/16 grids then tile the frame
# exactly (it runs at any size, interpolating between stages, but misaligned grids shift its features).
MULTIPLE = 16
# An explicit size may differ from the data's aspect ratio by this much (rounding to a multiple) unstretched.
ASPECT_TOLERANCE = 0.03


def derived_size(source: tuple[int, int], width: int = DEFAULT_WIDTH, multiple: int = MULTIPLE) -> tuple[int, int]:
    """(width, height) of `width` with the aspect ratio of `source` (width, height), the height rounded to
    the nearest multiple of `multiple` (at least one), e.g. 480x360 → 320x240, 1920x1080 → 320x176."""
    source_width, source_height = source
    height = max(multiple, multiple * round(width * source_height / source_width / multiple))
    return width, height


def aspect_change(size: tuple[int, int], source: tuple[int, int]) -> float:
    """How much resizing `source` to `size` (both width, height) stretches it: |ratio of aspect ratios - 1|."""
    return abs((size[0] / size[1]) / (source[0] / source[1]) - 1.0)


def check_aspect(size: tuple[int, int], source: tuple[int, int], option: str = "--size", joiner: str = " ") -> None:
    """Refuse a size that changes the frames' aspect ratio by more than `ASPECT_TOLERANCE`; the message
    names `option` and writes sizes as the option takes them (width, `joiner`, height).

    Raises:
        FolderDatasetError: naming the distortion, a size that keeps the ratio, and `--stretch`.
    """
    change = aspect_change(size, source)
    if change > ASPECT_TOLERANCE:
        keep = derived_size(source, size[0])
        raise FolderDatasetError(
            f"{option} {size[0]}{joiner}{size[1]} (aspect {size[0] / size[1]:.2f}) would stretch the "
            f"{source[0]}x{source[1]} frames (aspect {source[0] / source[1]:.2f}) by {100 * change:.0f} %; give a "
            f"size with their aspect ratio (e.g. {keep[0]}{joiner}{keep[1]}), leave it out to derive one, or pass --stretch")
