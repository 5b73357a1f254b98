"""Point the ROS 2 wheels' CMake exports at this machine's Python and numpy include folders.

The Kilted wheels were built on a machine whose interpreter lived under /opt/python/cp311-cp311/;
their exported CMake targets name its include folders, and CMake refuses targets whose include
folders do not exist. Rewriting the exports inside the virtual environment needs no root access
and leaves the rest of the machine alone. Idempotent.

numpy's headers are reached through a link outside the checkout: the virtual environment lives in
the source tree, and CMake refuses to export include folders "prefixed in the source directory".
"""
from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PREFIX = "/opt/python/cp311-cp311"


def numpy_include_link(prefix: str) -> str:
    """A link outside the checkout to this environment's numpy headers."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    digest = hashlib.sha1(str(Path(prefix).resolve()).encode()).hexdigest()[:12]
    link = cache / "seg_perception" / f"numpy-include-{digest}"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(numpy.get_include(), target_is_directory=True)
    return str(link)


def main(prefix: str) -> int:
    numpy_include = numpy_include_link(prefix)
    replacements = {
        f"{BUILD_PREFIX}/include/python3.11": sysconfig.get_paths()["include"],
        f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include": numpy_include,
    }
    changed = 0
    for path in Path(prefix, "share").glob("*/cmake/*.cmake"):
        text = path.read_text(encoding="utf-8")
        rewritten = text.replace(numpy.get_include(), numpy_include)
        for old, new in replacements.items():
            rewritten = rewritten.replace(old, new)
        if rewritten == text:
            continue
        text = rewritten
        path.write_text(text, encoding="utf-8")
        changed += 1
    print(f"relocate_ros_wheels: rewrote {changed} CMake export file(s) under {prefix}/share", file=sys.stderr)
    # The last line is for the caller: pass it to CMake as Python3_NumPy_INCLUDE_DIR so that this
    # package's own generated targets use the link too.
    print(numpy_include)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
