"""Messages → the arrays the pipeline works on, by role; the one place that knows message types.

Nodes and replay both pass their messages through `MessageDecoder`, so a live frame and a replayed
frame become the same arrays. A message that cannot be decoded raises `ConversionError`; callers
count it by reason and skip it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from seg_perception.io import (
    ConversionError,
    Evt3Decoder,
    camera_model_from_info,
    cloud_to_array,
    compressed_to_array,
    event_array_to_events,
    image_to_array,
    image_to_rgb,
    packet_to_events,
    stamp_to_ns,
)

ROLES = ("rgb", "thermal", "events", "lidar", "labels", "lidar_labels", "camera_info", "tf", "tf_static")


@dataclass
class LidarSweep:
    """A decoded sweep: points (N, 3) float32 in the sensor frame, per-point time offsets from the
    header stamp (ns, zeros when the cloud has no time field), the frame and the header stamp."""

    points: np.ndarray
    time_offset_ns: np.ndarray
    frame_id: str
    stamp_ns: int


class MessageDecoder:
    """Stateful where the stream needs it (evt3 packets carry state across messages)."""

    def __init__(self) -> None:
        self._evt3: dict[str, Evt3Decoder] = {}

    def decode(self, role: str, msg: Any, topic: str = "") -> Any:
        """The payload of `msg` in role `role` (see ROLES).

        Returns:
            rgb: (H, W, 3) uint8 RGB; thermal: (H, W) uint16 radiometric counts; labels: (H, W)
            integer class ids; events: EVENT_DTYPE array; lidar: LidarSweep; lidar_labels: (N,) integer
            class ids, point for point the sweep's (a "label" field); camera_info: CameraModel;
            tf / tf_static: the message itself (for a TransformBuffer).

        Raises:
            ConversionError: the message does not fit the role (wrong type or encoding).
        """
        typename = type(msg).__name__
        if role == "rgb":
            return compressed_to_array(msg) if _is_compressed(msg) else np.ascontiguousarray(image_to_rgb(msg))
        if role in ("thermal", "labels"):
            image = compressed_to_array(msg) if _is_compressed(msg) else image_to_array(msg)
            wrong_type = image.dtype != np.uint16 if role == "thermal" else not np.issubdtype(image.dtype, np.integer)
            if image.ndim != 2 or wrong_type:
                wanted = "mono16 radiometric counts" if role == "thermal" else "single-channel class ids (mono8/mono16)"
                raise ConversionError(f"{role} image has dtype {image.dtype} and shape {image.shape}; {wanted} expected")
            return image
        if role == "events":
            if hasattr(msg, "encoding") and hasattr(msg, "events"):  # event_camera_msgs/EventPacket
                if topic not in self._evt3:
                    self._evt3[topic] = Evt3Decoder(int(msg.width), int(msg.height))
                return packet_to_events(msg, self._evt3[topic])
            return event_array_to_events(msg)
        if role == "lidar":
            cloud = cloud_to_array(msg)
            names = cloud.dtype.names or ()
            if not {"x", "y", "z"} <= set(names):
                raise ConversionError(f"point cloud fields {list(names)} lack x, y, z")
            flat = cloud.reshape(-1)
            points = np.stack([flat["x"], flat["y"], flat["z"]], axis=1).astype(np.float32)
            # Per-point time: a "t" field of ns since the stamp (Ouster and this package); else none.
            offsets = flat["t"].astype(np.int64) if "t" in names else np.zeros(len(flat), np.int64)
            return LidarSweep(points, offsets, msg.header.frame_id, stamp_to_ns(msg.header.stamp))
        if role == "lidar_labels":
            cloud = cloud_to_array(msg)
            if "label" not in (cloud.dtype.names or ()) or not np.issubdtype(cloud.dtype["label"], np.integer):
                raise ConversionError(f"point cloud fields {list(cloud.dtype.names or ())} lack an integer 'label' "
                                      f"field of per-point class ids")
            return cloud["label"].reshape(-1)
        if role == "camera_info":
            return camera_model_from_info(msg)
        if role in ("tf", "tf_static"):
            if not hasattr(msg, "transforms"):
                raise ConversionError(f"{typename} on a TF topic; tf2_msgs/TFMessage expected")
            return msg
        raise ConversionError(f"role {role!r} is not known; roles: {', '.join(ROLES)}")


def _is_compressed(msg: Any) -> bool:
    return hasattr(msg, "format") and not hasattr(msg, "encoding")
