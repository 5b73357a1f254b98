"""sensor_msgs/Image ⇄ numpy arrays: raw layouts as zero-copy views, colour encodings to RGB."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .errors import ConversionError
from .limits import DEFAULT_MAX_PIXELS, check_pixels
from .messages import MessageFactory, RosbagsFactory, as_bytes, make_header

IMAGE_TYPE = "sensor_msgs/msg/Image"


@dataclass(frozen=True)
class PixelLayout:
    """How one encoding lays out a pixel: per-channel dtype (native byte order) and channel count."""

    dtype: np.dtype
    channels: int

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)
_BAYER_PATTERNS = ("rggb", "bggr", "gbrg", "grbg")

# Named encodings of sensor_msgs/image_encodings.hpp. Bayer stays a HxW mosaic and YUV 4:2:2 a packed
# HxWx2 array, as cv_bridge's passthrough does; `image_to_rgb` demosaics / converts them.
NAMED_LAYOUTS: dict[str, PixelLayout] = {
    "rgb8": PixelLayout(_U8, 3), "rgba8": PixelLayout(_U8, 4),
    "rgb16": PixelLayout(_U16, 3), "rgba16": PixelLayout(_U16, 4),
    "bgr8": PixelLayout(_U8, 3), "bgra8": PixelLayout(_U8, 4),
    "bgr16": PixelLayout(_U16, 3), "bgra16": PixelLayout(_U16, 4),
    "mono8": PixelLayout(_U8, 1), "mono16": PixelLayout(_U16, 1),
    **{f"bayer_{p}8": PixelLayout(_U8, 1) for p in _BAYER_PATTERNS},
    **{f"bayer_{p}16": PixelLayout(_U16, 1) for p in _BAYER_PATTERNS},
    # "yuv422" and "yuv422_yuy2" are the deprecated names of "uyvy" and "yuyv".
    "uyvy": PixelLayout(_U8, 2), "yuv422": PixelLayout(_U8, 2),
    "yuyv": PixelLayout(_U8, 2), "yuv422_yuy2": PixelLayout(_U8, 2),
}

# OpenCV depth codes of the generic "<depth>C<channels>" encodings (e.g. 32FC1); "8UC" means one channel.
GENERIC_DEPTHS: dict[str, np.dtype] = {
    "8U": np.dtype(np.uint8), "8S": np.dtype(np.int8), "16U": np.dtype(np.uint16),
    "16S": np.dtype(np.int16), "32S": np.dtype(np.int32), "32F": np.dtype(np.float32),
    "64F": np.dtype(np.float64),
}
_GENERIC = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-9][0-9]*)?$")

SUPPORTED_ENCODINGS = (
    ", ".join(NAMED_LAYOUTS) + ", and <depth>C<channels> with depth in " + "/".join(GENERIC_DEPTHS)
)

# Colour encodings → the cv2.cvtColor code giving RGB (None: already RGB). Bayer codes follow cv_bridge:
# OpenCV names a Bayer pattern by the second row's second and third pixels, so ROS's rggb is BayerBG.
_TO_RGB: dict[str, int | None] = {
    "rgb8": None, "rgb16": None,
    "bgr8": cv2.COLOR_BGR2RGB, "bgr16": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB, "rgba16": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB, "bgra16": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB,
    **{f"bayer_{p}{bits}": code for p, code in (
        ("rggb", cv2.COLOR_BayerBG2RGB), ("bggr", cv2.COLOR_BayerRG2RGB),
        ("gbrg", cv2.COLOR_BayerGR2RGB), ("grbg", cv2.COLOR_BayerGB2RGB),
    ) for bits in (8, 16)},
    "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}
_YUV = ("uyvy", "yuv422", "yuyv", "yuv422_yuy2")

# dtype → encoding inferred by `array_to_image` for 1, 3 and 4 channels; other counts become <depth>C<n>.
_INFERRED: dict[tuple[np.dtype, int], str] = {
    (_U8, 1): "mono8", (_U8, 3): "rgb8", (_U8, 4): "rgba8",
    (_U16, 1): "mono16", (_U16, 3): "rgb16", (_U16, 4): "rgba16",
}


def encoding_layout(encoding: str) -> PixelLayout:
    """The pixel layout of an Image encoding.

    Args:
        encoding: a sensor_msgs/Image encoding string, e.g. "rgb8", "bayer_rggb16", "32FC1".

    Returns:
        The per-channel dtype (native byte order) and the channel count.

    Raises:
        ConversionError: the encoding is not supported.
    """
    layout = NAMED_LAYOUTS.get(encoding)
    if layout is not None:
        return layout
    match = _GENERIC.match(encoding)
    if match is None:
        raise ConversionError(f"image encoding {encoding!r} is not supported; supported: {SUPPORTED_ENCODINGS}")
    return PixelLayout(GENERIC_DEPTHS[match.group(1)], int(match.group(2) or 1))


def image_to_array(msg: Any, *, copy: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/Image to an array in its raw layout (cv_bridge's "passthrough").

    One-channel encodings give HxW, others HxWxC. Bayer encodings stay the HxW mosaic and YUV 4:2:2
    ("uyvy"/"yuv422", "yuyv"/"yuv422_yuy2") the packed HxWx2 bytes; use `image_to_rgb` for colour.

    Without `copy` the result is a zero-copy view of the message's data: strided when rows are padded
    (step larger than a row), and read-only when the message's buffer is (e.g. rosbags deserialised
    from bytes). Big-endian multi-byte data (is_bigendian=1) is byteswapped into a new native-order
    array, so the result always has native byte order (torch and OpenCV reject swapped dtypes).
    Likewise multi-byte pixels that the buffer or the step leaves misaligned (e.g. bgr16 with
    step = width * 6 + 1) are copied to an aligned array, which OpenCV and torch need.

    Args:
        msg: a sensor_msgs/Image of either message world.
        copy: return a C-contiguous array owning its memory instead of a view.
        max_pixels: the largest width * height accepted (default `DEFAULT_MAX_PIXELS`, 50 Mpx).

    Returns:
        The pixel array with the encoding's dtype.

    Raises:
        ConversionError: unknown encoding, non-positive size or one beyond `max_pixels`, step
            shorter than a row, or data length not equal to height * step.
    """
    encoding = str(msg.encoding)
    layout = encoding_layout(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(f"image size {width}x{height} is empty; width and height must be positive")
    check_pixels(width, height, max_pixels, f"{encoding} image")
    row_bytes = width * layout.pixel_bytes
    if step < row_bytes:
        raise ConversionError(
            f"image step {step} is shorter than a row of {width} {encoding} pixels; "
            f"step must be at least {row_bytes} bytes"
        )
    data = as_bytes(msg.data)
    if data.size != height * step:
        raise ConversionError(
            f"image data has {data.size} bytes; height * step = {height} * {step} = {height * step} expected"
        )
    wire = layout.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    # Slicing the padded rows and viewing them with the pixel dtype keeps the message buffer shared.
    array = data.reshape(height, step)[:, :row_bytes].view(wire).reshape(shape)
    if wire != layout.dtype:
        return array.astype(layout.dtype)
    return array.copy() if copy or not array.flags.aligned else array


def image_to_rgb(msg: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a colour-bearing sensor_msgs/Image to an HxWx3 uint8 RGB array (cv_bridge's "rgb8").

    Conversions follow cv_bridge: BGR/RGBA/BGRA/mono are reordered or expanded, Bayer mosaics are
    demosaiced (bilinear, cv2.cvtColor), UYVY and YUYV are converted with OpenCV's BT.601 tables.
    16-bit encodings are converted at 16 bits, then scaled by 255/65535 and rounded. An "rgb8"
    image is returned as `image_to_array` gives it (a view of the message, possibly read-only and
    strided); every other encoding gives a new contiguous array.

    Args:
        msg: a sensor_msgs/Image of either message world.
        max_pixels: the largest width * height accepted (see `image_to_array`).

    Returns:
        HxWx3 uint8 RGB.

    Raises:
        ConversionError: everything `image_to_array` raises; an encoding without colour meaning
            (e.g. "8UC3", "32FC1"); YUV 4:2:2 with an odd width.
    """
    encoding = str(msg.encoding)
    array = image_to_array(msg, max_pixels=max_pixels)
    if encoding not in _TO_RGB:
        raise ConversionError(
            f"image encoding {encoding!r} carries no colour meaning, so it cannot be converted to RGB; "
            f"convertible: {', '.join(_TO_RGB)}"
        )
    if encoding in _YUV and array.shape[1] % 2:
        raise ConversionError(
            f"{encoding} image width {array.shape[1]} is odd; YUV 4:2:2 shares chroma between pixel pairs, "
            "so the width must be even"
        )
    code = _TO_RGB[encoding]
    rgb = array if code is None else cv2.cvtColor(array, code)
    if rgb.dtype == _U16:
        return cv2.convertScaleAbs(rgb, alpha=255.0 / 65535.0)
    return rgb


def array_to_image(
    array: np.ndarray,
    encoding: str | None = None,
    *,
    header: Any | None = None,
    factory: MessageFactory | None = None,
) -> Any:
    """Encode an HxW or HxWxC array as a sensor_msgs/Image (little-endian, tight step).

    Args:
        array: pixel array; any byte order and memory layout (it is copied to contiguous
            little-endian bytes when it is not already).
        encoding: the Image encoding. None infers it: uint8 → mono8/rgb8/rgba8 and uint16 →
            mono16/rgb16/rgba16 for 1/3/4 channels, otherwise "<depth>C<channels>" (e.g. float32
            HxW → 32FC1, uint8 HxWx2 → 8UC2). Colour arrays are taken to be RGB.
        header: std_msgs/Header of the factory's world; default: zero stamp, empty frame_id.
        factory: builds the message; default RosbagsFactory().

    Returns:
        A sensor_msgs/Image of the factory's world.

    Raises:
        ConversionError: array not 2-D or 3-D, empty, dtype without an encoding, unknown encoding,
            or an encoding whose dtype or channel count does not match the array.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ConversionError(f"image array has shape {array.shape}; HxW or HxWxC expected")
    height, width = array.shape[:2]
    channels = array.shape[2] if array.ndim == 3 else 1
    if height == 0 or width == 0 or channels == 0:
        raise ConversionError(f"image array shape {array.shape} is empty; all dimensions must be positive")
    dtype = array.dtype.newbyteorder("=")
    if encoding is None:
        encoding = _infer_encoding(dtype, channels)
    layout = encoding_layout(encoding)
    if dtype != layout.dtype or channels != layout.channels:
        raise ConversionError(
            f"array of {dtype.name} with {channels} channel(s) does not fit image encoding {encoding!r}, "
            f"which needs {layout.dtype.name} with {layout.channels} channel(s)"
        )
    data = np.ascontiguousarray(array, dtype=layout.dtype.newbyteorder("<"))
    factory = factory if factory is not None else RosbagsFactory()
    return factory.make(
        IMAGE_TYPE,
        header=header if header is not None else make_header(factory),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * layout.pixel_bytes,
        data=data.reshape(-1).view(np.uint8),
    )


def _infer_encoding(dtype: np.dtype, channels: int) -> str:
    named = _INFERRED.get((dtype, channels))
    if named is not None:
        return named
    for depth, depth_dtype in GENERIC_DEPTHS.items():
        if depth_dtype == dtype:
            return f"{depth}C{channels}"
    raise ConversionError(
        f"array dtype {dtype.name} has no image encoding; "
        f"supported dtypes: {', '.join(d.name for d in GENERIC_DEPTHS.values())}"
    )
