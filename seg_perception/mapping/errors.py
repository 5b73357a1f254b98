"""Mapping errors: each says what was wrong and what is accepted."""
from __future__ import annotations


class MappingError(ValueError):
    """Input a mapping function cannot use (wrong shape, zero-size image, bad transform, unreadable map file)."""
