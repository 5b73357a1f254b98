"""Engine errors: each message says what went wrong and what to do about it."""
from __future__ import annotations


class EngineError(RuntimeError):
    """Exporting, building, loading or running an inference engine failed."""


class BackendUnavailable(EngineError):
    """A backend cannot run on this machine (a package or device is missing); the message says which."""


class SegmenterInputError(ValueError):
    """A frame given to a Segmenter is unusable (wrong dtype, shape or modality); the message says what is accepted."""
