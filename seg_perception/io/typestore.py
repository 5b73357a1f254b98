"""The rosbags type store used on the ROS-free paths: ROS 2 Kilted types plus event-camera and own messages."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator

INTERFACES = Path(__file__).resolve().parent / "interfaces"
PACKAGE = "seg_perception"


def _msg_dir_candidates() -> Iterator[Path]:
    yield Path(__file__).resolve().parents[2] / "msg"
    try:
        from ament_index_python.packages import get_package_share_directory

        yield Path(get_package_share_directory(PACKAGE)) / "msg"
    except (ImportError, LookupError, OSError):  # no ament index, or the package is not in it
        pass
    yield INTERFACES / PACKAGE / "msg"


def own_msg_dir() -> Path:
    """The folder holding this package's .msg files.

    Looked up in a source checkout (also behind colcon's --symlink-install), then the ament
    share folder of a colcon install, then the copy that `pip install` puts in the package.
    """
    tried = []
    for folder in _msg_dir_candidates():
        if any(folder.glob("*.msg")):
            return folder
        tried.append(str(folder))
    raise FileNotFoundError(f"no {PACKAGE} .msg definitions found; looked in {tried}")


def msg_definitions() -> dict[str, str]:
    """Type name → .msg text for the event-camera messages and this package's own messages."""
    folders = [(p.parent.name, p) for p in sorted(INTERFACES.glob("*/msg")) if p.parent.name != PACKAGE]
    folders.append((PACKAGE, own_msg_dir()))
    return {
        f"{package}/msg/{path.stem}": path.read_text(encoding="utf-8")
        for package, folder in folders
        for path in sorted(folder.glob("*.msg"))
    }


@functools.cache
def default_typestore() -> Any:
    """ROS 2 Kilted standard types + dvs_msgs, event_camera_msgs and seg_perception messages."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name, text in msg_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
