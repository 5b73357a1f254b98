"""The io subsystem's error type."""
from __future__ import annotations


class ConversionError(ValueError):
    """A message could not be converted to or from arrays.

    The message says what was wrong and what is accepted, e.g.
    "image encoding 'yuv420' is not supported; supported: rgb8, bgr8, ...".
    """


class BagError(RuntimeError):
    """A bag could not be opened, read or written; the message names the bag and the problem."""
