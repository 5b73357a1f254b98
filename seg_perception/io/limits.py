"""Size limits a converter checks before it allocates, so that no message can make it exhaust memory."""
from __future__ import annotations

from .errors import ConversionError

# 50 Mpx: above any robot camera (8K UHD is 33 Mpx), yet an RGB frame of that size is only 150 MB.
DEFAULT_MAX_PIXELS = 50_000_000


def check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    """Refuse an image of `width` x `height` beyond `max_pixels`.

    Raises:
        ConversionError: naming `what`, its size and the limit.
    """
    if width * height > max_pixels:
        raise ConversionError(
            f"{what} of {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels; "
            "accepted: up to max_pixels (raise it for larger cameras)"
        )
