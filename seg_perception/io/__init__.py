"""Message ⇄ array conversions, the rosbags type store, and bag reading/writing.

Readers accept rclpy messages and rosbags type-store messages alike (fields are read by name);
writers build messages through a `MessageFactory` (rosbags classes by default). Bad input raises
`ConversionError` naming what was wrong and what is accepted.
"""
from .bags import BagMessage, BagReader, BagWriter, read_messages
from .camera import CameraModel, camera_info_from_model, camera_model_from_info, camera_model_from_yaml, distort_normalized
from .compressed import array_to_compressed, compressed_to_array
from .encoding import EVENT_WINDOW_NS, EventWindow, encode_thermal, events_to_voxel_grid
from .errors import BagError, ConversionError
from .events import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    Evt3Decoder,
    encode_evt3,
    event_array_to_events,
    events_to_event_array,
    events_to_packet,
    packet_to_events,
    packet_to_events_and_triggers,
)
from .image import array_to_image, encoding_layout, image_to_array, image_to_rgb
from .labels import label_set_to_msg, msg_to_label_set
from .limits import DEFAULT_MAX_PIXELS
from .messages import MessageFactory, RosbagsFactory, as_bytes, make_header, make_stamp, stamp_to_ns
from .pointcloud import (
    array_to_cloud,
    cloud_dtype,
    cloud_to_array,
    cloud_to_columns,
    cloud_to_xyz,
    pack_rgb,
    require_scalar_fields,
    unpack_rgb,
    xyz_to_cloud,
)
from .transforms import (
    TransformBuffer,
    TransformError,
    invert_transform,
    matrix_to_pose,
    matrix_to_quaternion,
    matrix_to_transform,
    matrix_to_transform_stamped,
    quaternion_to_matrix,
    slerp,
    transform_to_matrix,
)
from .typestore import default_typestore

__all__ = [
    "BagError", "BagMessage", "BagReader", "BagWriter", "CameraModel", "ConversionError", "DEFAULT_MAX_PIXELS",
    "EVENT_DTYPE", "EVENT_WINDOW_NS", "TRIGGER_DTYPE",
    "EventWindow", "Evt3Decoder", "encode_thermal", "events_to_voxel_grid",
    "MessageFactory", "RosbagsFactory", "TransformBuffer", "TransformError", "array_to_cloud", "array_to_compressed",
    "array_to_image", "as_bytes", "camera_info_from_model", "camera_model_from_info", "camera_model_from_yaml", "cloud_dtype", "cloud_to_array",
    "cloud_to_columns", "cloud_to_xyz", "compressed_to_array", "default_typestore", "distort_normalized",
    "encode_evt3", "encoding_layout", "event_array_to_events", "events_to_event_array", "events_to_packet",
    "image_to_array", "image_to_rgb", "invert_transform", "label_set_to_msg", "make_header", "make_stamp", "matrix_to_pose",
    "matrix_to_quaternion", "matrix_to_transform", "matrix_to_transform_stamped", "msg_to_label_set", "pack_rgb", "packet_to_events",
    "packet_to_events_and_triggers",
    "quaternion_to_matrix", "read_messages", "require_scalar_fields", "slerp", "stamp_to_ns", "transform_to_matrix", "unpack_rgb",
    "xyz_to_cloud",
]
