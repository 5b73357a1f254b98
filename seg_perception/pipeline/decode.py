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
    DEFAULT_MAX_PIXELS,
    ConversionError,
    Evt3Decoder,
    camera_model_from_info,
    cloud_to_array,
    compressed_to_array,
    event_array_to_events,
    image_to_array,
    image_to_rgb,
    packet_to_events,
    require_scalar_fields,
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


# The fields a message must have to be read as each kind; anything else is the wrong type for the role.
_KINDS = {
    "Image": ("sensor_msgs/Image", ("header", "height", "width", "encoding", "is_bigendian", "step", "data")),
    "CompressedImage": ("sensor_msgs/CompressedImage", ("header", "format", "data")),
    "PointCloud2": ("sensor_msgs/PointCloud2",
                    ("header", "height", "width", "fields", "is_bigendian", "point_step", "row_step", "data")),
    "EventPacket": ("event_camera_msgs/EventPacket", ("header", "height", "width", "encoding", "is_bigendian", "events")),
    "EventArray": ("dvs_msgs/EventArray", ("header", "height", "width", "events")),
}
# Per-point time offsets (ns) beyond this are not times; a float one this large would not cast to int64.
_MAX_TIME_OFFSET_NS = 2**62


class MessageDecoder:
    """Stateful where the stream needs it (evt3 packets carry state across messages).

    Args:
        max_pixels: the largest image (width * height) accepted from images, compressed images and
            camera infos; larger ones are refused before anything is allocated.
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._evt3: dict[str, Evt3Decoder] = {}
        self.max_pixels = max_pixels

    def decode(self, role: str, msg: Any, topic: str = "") -> Any:
        """The payload of `msg` in role `role` (see ROLES).

        Returns:
            rgb: (H, W, 3) uint8 RGB; thermal: (H, W) uint16 radiometric counts; labels: (H, W)
            integer class ids; events: EVENT_DTYPE array; lidar: LidarSweep; lidar_labels: (N,) integer
            class ids, point for point the sweep's (a "label" field); camera_info: CameraModel;
            tf / tf_static: the message itself (for a TransformBuffer).

        Raises:
            ConversionError: the message does not fit the role (wrong type, encoding or fields) or
                is damaged; never anything else.
        """
        typename = type(msg).__name__
        if role == "rgb":
            if _is_compressed(msg):
                rgb = compressed_to_array(_expect(msg, "CompressedImage", role), max_pixels=self.max_pixels)
                if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                    raise ConversionError(f"rgb compressed image decodes to {rgb.dtype} {rgb.shape}; an 8-bit colour "
                                          "JPEG or PNG (H, W, 3) expected")
                return rgb
            return np.ascontiguousarray(image_to_rgb(_expect(msg, "Image", role), max_pixels=self.max_pixels))
        if role in ("thermal", "labels"):
            if _is_compressed(msg):
                image = compressed_to_array(_expect(msg, "CompressedImage", role), max_pixels=self.max_pixels)
            else:
                image = image_to_array(_expect(msg, "Image", role), max_pixels=self.max_pixels)
            wrong_type = image.dtype != np.uint16 if role == "thermal" else not np.issubdtype(image.dtype, np.integer)
            if image.ndim != 2 or wrong_type:
                wanted = "mono16 radiometric counts" if role == "thermal" else "single-channel class ids (mono8/mono16)"
                raise ConversionError(f"{role} image has dtype {image.dtype} and shape {image.shape}; {wanted} expected")
            return image
        if role == "events":
            if hasattr(msg, "encoding") and hasattr(msg, "events"):  # event_camera_msgs/EventPacket
                _expect(msg, "EventPacket", role)
                if topic not in self._evt3:
                    self._evt3[topic] = Evt3Decoder(int(msg.width), int(msg.height))
                return packet_to_events(msg, self._evt3[topic])
            return event_array_to_events(_expect(msg, "EventArray", role))
        if role == "lidar":
            cloud = cloud_to_array(_expect(msg, "PointCloud2", role))
            names = cloud.dtype.names or ()
            require_scalar_fields(cloud, ("x", "y", "z", *(("t",) if "t" in names else ())), "a lidar sweep")
            flat = cloud.reshape(-1)
            with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf, as cloud_to_xyz
                points = np.stack([flat["x"], flat["y"], flat["z"]], axis=1).astype(np.float32)
            # Per-point time: a "t" field of ns since the stamp (Ouster and this package); else none.
            offsets = _time_offsets(flat["t"]) if "t" in names else np.zeros(len(flat), np.int64)
            return LidarSweep(points, offsets, str(msg.header.frame_id), stamp_to_ns(msg.header.stamp))
        if role == "lidar_labels":
            cloud = cloud_to_array(_expect(msg, "PointCloud2", role))
            if "label" in (cloud.dtype.names or ()):
                require_scalar_fields(cloud, ("label",), "lidar_labels")
            if "label" not in (cloud.dtype.names or ()) or not np.issubdtype(cloud.dtype["label"], np.integer):
                raise ConversionError(f"point cloud fields {list(cloud.dtype.names or ())} lack an integer 'label' "
                                      f"field of per-point class ids")
            return cloud["label"].reshape(-1)
        if role == "camera_info":
            return camera_model_from_info(msg, max_pixels=self.max_pixels)
        if role in ("tf", "tf_static"):
            if not hasattr(msg, "transforms"):
                raise ConversionError(f"{typename} on a TF topic; tf2_msgs/TFMessage expected")
            return msg
        raise ConversionError(f"role {role!r} is not known; roles: {', '.join(ROLES)}")


def _is_compressed(msg: Any) -> bool:
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def _expect(msg: Any, kind: str, role: str) -> Any:
    """`msg` if it has the fields of a `kind` message, else ConversionError naming the role."""
    typename, names = _KINDS[kind]
    missing = [name for name in names if not hasattr(msg, name)]
    if missing:
        raise ConversionError(f"{type(msg).__name__} on the {role} topic lacks {', '.join(missing)}; {typename} expected")
    return msg


def _time_offsets(t: np.ndarray) -> np.ndarray:
    if t.dtype.kind == "f" and not (np.isfinite(t).all() and (np.abs(t) < _MAX_TIME_OFFSET_NS).all()):
        raise ConversionError("lidar 't' field holds non-finite or huge values; ns since the stamp expected")
    return t.astype(np.int64)
