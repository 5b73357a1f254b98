"""Where the package's data folders (msg/, config/) are, whichever way it was installed."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

PACKAGE = "seg_perception"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
# `pip install` copies the top-level data folders here (see setup.py).
PACKAGED = Path(__file__).resolve().parent / "data"


def _candidates(folder: str) -> Iterator[Path]:
    yield SOURCE_ROOT / folder  # a source checkout, also behind colcon's --symlink-install
    try:
        from ament_index_python.packages import get_package_share_directory

        yield Path(get_package_share_directory(PACKAGE)) / folder
    except (ImportError, LookupError, OSError):  # no ament index, or the package is not in it
        pass
    yield PACKAGED / folder


def resource_dir(folder: str, pattern: str = "*") -> Path:
    """The first `folder` ("msg", "config") holding files matching `pattern`.

    Looked up in a source checkout, then the ament share folder of a colcon install, then the
    copy inside a pip-installed package.

    Raises:
        FileNotFoundError: no such folder anywhere.
    """
    tried = []
    for path in _candidates(folder):
        if any(path.glob(pattern)):
            return path
        tried.append(str(path))
    raise FileNotFoundError(f"no {PACKAGE} {folder}/{pattern} found; looked in {tried}")
