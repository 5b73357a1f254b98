"""sensor_msgs/CompressedImage ⇄ numpy arrays: JPEG and PNG as image_transport writes them, compressedDepth."""
from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

from .errors import ConversionError
from .limits import DEFAULT_MAX_PIXELS, check_pixels
from .messages import MessageFactory, RosbagsFactory, as_bytes, make_header

COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
FORMATS = ("jpeg", "png", "compressedDepth")
_CODEC_ALIASES = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
_COLOUR = ("rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16", "bgra16")

# compressed_depth_image_transport's ConfigHeader before the PNG: int32 format enum, float depthParam[2].
_DEPTH_HEADER = struct.Struct("<iff")
_INV_DEPTH = 0

_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)
# codec → (array dtypes, channel counts, description for errors). JPEG holds neither 16 bits nor alpha.
_ACCEPTS: dict[str, tuple[tuple[np.dtype, ...], tuple[int, ...], str]] = {
    "jpeg": ((_U8,), (1, 3), "uint8 HxW, HxWx1 or HxWx3"),
    "png": ((_U8, _U16), (1, 3, 4), "uint8 or uint16 HxW, HxWx1, HxWx3 or HxWx4"),
    "compressedDepth": ((_U16,), (1,), "uint16 HxW or HxWx1"),
}


def compressed_to_array(msg: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG or compressedDepth PNG).

    Accepted `format` strings: plain "jpeg"/"jpg"/"png", image_transport's
    "<encoding>; <jpeg|png> compressed [bgr8|bgr16|bgra8|...]", and compressed_depth_image_transport's
    "<encoding>; compressedDepth [png]" (e.g. "16UC1; compressedDepth png").

    Compressed colour streams hold BGR (image_transport converts before encoding); the array side is
    RGB: colour images come out HxWx3 RGB (HxWx4 RGBA with alpha), whatever their source encoding.
    A colour source whose format lacks "compressed bgr" was compressed in its own channel order
    and is returned as stored, as image_transport does. One-channel images come out HxW, with 16
    bits kept for 16-bit PNGs (thermal, depth); non-colour multi-channel sources (e.g. "8UC3") come
    out as stored. compressedDepth gives the uint16 HxW PNG (millimetres for 16UC1 depth), except
    "32FC1", which gives float32 HxW metres decoded from the quantised inverse depth, NaN where no
    depth was stored.
    The result always owns new memory. The image size is read from the PNG or JPEG header and
    checked against `max_pixels` before anything is decoded, so a small message claiming a huge
    image is refused instead of allocated.

    Args:
        msg: a sensor_msgs/CompressedImage of either message world.
        max_pixels: the largest width * height accepted (default `DEFAULT_MAX_PIXELS`, 50 Mpx).

    Returns:
        The decoded array (uint8 or uint16; float32 for 32FC1 compressedDepth).

    Raises:
        ConversionError: empty data, unknown format, data that is neither PNG nor JPEG, a header
            without a size or with one beyond `max_pixels`, bytes that do not decode, or a
            compressedDepth message with a missing header, non-finite depth parameters (32FC1),
            an unsupported codec (e.g. rvl) or a non-16-bit PNG.
    """
    data = as_bytes(msg.data)
    fmt = str(msg.format)
    if data.size == 0:
        raise ConversionError(f"compressed image ({fmt!r}) has no data; a JPEG or PNG byte stream is expected")
    encoding, separator, rest = fmt.partition(";")
    if not separator:
        encoding, rest = "", fmt
    encoding = encoding.strip()
    words = rest.split()
    if "compresseddepth" in (word.lower() for word in words):
        return _decode_depth(data, encoding, words, fmt, max_pixels)
    codec = _CODEC_ALIASES.get(words[0].lower()) if words else None
    if codec is None:
        raise ConversionError(
            f"compressed image format {fmt!r} is not supported; supported: 'jpeg', 'png', "
            "'<encoding>; jpeg compressed <encoding>', '<encoding>; png compressed <encoding>', "
            "'<encoding>; compressedDepth png'"
        )
    image = _imdecode(data, fmt, max_pixels)
    # A plain "jpeg"/"png" is an ordinary file, so BGR once decoded, like a colour source marked "compressed bgr".
    stream_is_bgr = not separator or (encoding in _COLOUR and "compressed bgr" in rest)
    if stream_is_bgr and image.ndim == 3 and image.shape[2] in (3, 4):
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return image


def array_to_compressed(
    array: np.ndarray,
    format: str = "jpeg",  # noqa: A002 - the message field's name
    *,
    header: Any | None = None,
    factory: MessageFactory | None = None,
    quality: int = 95,
    png_level: int = 3,
) -> Any:
    """Encode an array as a sensor_msgs/CompressedImage the way image_transport's plugins do.

    Colour arrays are RGB (RGBA): they are stored as BGR(A) with the format
    "rgb8; jpeg compressed bgr8" (or "png", "rgb16 ... bgr16", "rgba8; png compressed bgra8").
    One-channel arrays are stored as they are: "mono8; jpeg compressed ", "mono16; png compressed "
    (the trailing space is image_transport's). "compressedDepth" stores a uint16 HxW depth image
    losslessly as "16UC1; compressedDepth png" behind compressed_depth_image_transport's 12-byte
    header (no depth_max cutoff is applied).

    Args:
        array: uint8 HxW, HxWx1 or HxWx3 for "jpeg"; uint8 or uint16 HxW, HxWx1, HxWx3 or HxWx4 for
            "png"; uint16 HxW or HxWx1 for "compressedDepth".
        format: "jpeg" (or "jpg"), "png" or "compressedDepth".
        header: std_msgs/Header of the factory's world; default: zero stamp, empty frame_id.
        factory: builds the message; default RosbagsFactory().
        quality: JPEG quality, 0-100 (image_transport's default 95).
        png_level: PNG compression level, 0-9 (image_transport's default 3; lower is faster).

    Returns:
        A sensor_msgs/CompressedImage of the factory's world.

    Raises:
        ConversionError: unknown format, out-of-range quality or level, or an array whose shape or
            dtype the format cannot hold.
    """
    codec = "compressedDepth" if format == "compressedDepth" else _CODEC_ALIASES.get(format.lower())
    if codec is None:
        raise ConversionError(f"compressed image format {format!r} is not supported; supported: {', '.join(FORMATS)}")
    if not 0 <= quality <= 100:
        raise ConversionError(f"JPEG quality {quality} is out of range; 0-100 accepted")
    if not 0 <= png_level <= 9:
        raise ConversionError(f"PNG compression level {png_level} is out of range; 0-9 accepted")
    array = np.asarray(array)
    if not array.dtype.isnative:  # cv2 takes native byte order only
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    channels = array.shape[2] if array.ndim == 3 else 1
    dtypes, channel_counts, accepted = _ACCEPTS[codec]
    if array.ndim not in (2, 3) or array.dtype not in dtypes or channels not in channel_counts or 0 in array.shape:
        raise ConversionError(
            f"array of {array.dtype.name} {array.shape} cannot be stored as {codec}; {accepted} accepted"
        )
    bits = 8 * array.dtype.itemsize
    if codec == "compressedDepth":
        png = _imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, png_level])
        payload = _DEPTH_HEADER.pack(_INV_DEPTH, 0.0, 0.0) + png
        fmt = "16UC1; compressedDepth png"
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, png_level]
        if channels == 1:
            fmt = f"mono{bits}; {codec} compressed "
            stream = array
        elif channels == 3:
            fmt = f"rgb{bits}; {codec} compressed bgr{bits}"
            stream = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
        else:
            fmt = f"rgba{bits}; {codec} compressed bgra{bits}"
            stream = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
        payload = _imencode(".jpg" if codec == "jpeg" else ".png", stream, params)
    factory = factory if factory is not None else RosbagsFactory()
    return factory.make(
        COMPRESSED_IMAGE_TYPE,
        header=header if header is not None else make_header(factory),
        format=fmt,
        data=np.frombuffer(payload, dtype=np.uint8),
    )


def _decode_depth(data: np.ndarray, encoding: str, words: list[str], fmt: str, max_pixels: int) -> np.ndarray:
    lowered = [word.lower() for word in words]
    after = lowered[lowered.index("compresseddepth") + 1:]
    # Releases before the codec was named wrote PNG only.
    codec = after[0] if after else "png"
    if codec != "png":
        raise ConversionError(f"compressedDepth codec {codec!r} in {fmt!r} is not supported; supported: png")
    if data.size <= _DEPTH_HEADER.size:
        raise ConversionError(
            f"compressedDepth data has {data.size} bytes; a {_DEPTH_HEADER.size}-byte header and a PNG are expected"
        )
    _, quant_a, quant_b = _DEPTH_HEADER.unpack(data[:_DEPTH_HEADER.size].tobytes())
    image = _imdecode(data[_DEPTH_HEADER.size:], fmt, max_pixels)
    if image.dtype != np.uint16 or image.ndim != 2:
        raise ConversionError(
            f"compressedDepth PNG holds {image.dtype.name} {image.shape}; a one-channel 16-bit PNG is expected"
        )
    # Like compressed_depth_image_transport, every encoding but 32-bit float is the raw 16-bit PNG.
    if encoding != "32FC1":
        return image
    if not (np.isfinite(quant_a) and np.isfinite(quant_b)):
        raise ConversionError(f"compressedDepth header has depth parameters {quant_a}, {quant_b}; finite values expected")
    # Inverse-depth quantisation of compressed_depth_image_transport, in float32 as it computes it.
    with np.errstate(divide="ignore"):
        depth = np.float32(quant_a) / (image.astype(np.float32) - np.float32(quant_b))
    depth[image == 0] = np.nan
    return depth


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IHDR = struct.Struct(">I4sII")  # the first chunk: length, type "IHDR", width, height
_JPEG_SOI = b"\xff\xd8"
# Frame headers (SOF0-15 but DHT C4, JPG C8 and DAC CC), which give the image size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI (EOI and SOS end the search).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _claimed_size(data: memoryview, fmt: str) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR or a JPEG's frame header, without decoding.

    OpenCV cannot report an image's size without decoding it, and decoding allocates the full
    image first; these fixed header fields are what libpng and libjpeg size the allocation by.
    """
    if data[:len(_PNG_SIGNATURE)] == _PNG_SIGNATURE:
        if len(data) >= len(_PNG_SIGNATURE) + _PNG_IHDR.size:
            _, chunk, width, height = _PNG_IHDR.unpack_from(data, len(_PNG_SIGNATURE))
            if chunk == b"IHDR":
                return width, height
        raise ConversionError(f"compressed image data ({fmt!r}) is a PNG without an IHDR header; a whole PNG expected")
    if data[:len(_JPEG_SOI)] == _JPEG_SOI:
        position = len(_JPEG_SOI)
        while position + 4 <= len(data):
            if data[position] != 0xFF:
                break
            marker = data[position + 1]
            if marker == 0xFF:  # fill byte before a marker
                position += 1
            elif marker in _JPEG_STANDALONE:
                position += 2
            elif marker in _JPEG_SOF:
                if position + 9 <= len(data):
                    height, width = struct.unpack_from(">HH", data, position + 5)
                    return width, height
                break
            elif marker in (0xD9, 0xDA):  # EOI, SOS: no frame header before the scan
                break
            else:
                position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
        raise ConversionError(f"compressed image data ({fmt!r}) is a JPEG without a frame header; a whole JPEG expected")
    raise ConversionError(
        f"compressed image data ({fmt!r}) starts with {bytes(data[:8])!r}, which is neither PNG nor JPEG; "
        "accepted: PNG and JPEG"
    )


def _imdecode(data: np.ndarray, fmt: str, max_pixels: int) -> np.ndarray:
    width, height = _claimed_size(memoryview(data), fmt)
    if width == 0 or height == 0:
        raise ConversionError(f"compressed image ({fmt!r}) header gives size {width}x{height}; a non-empty image expected")
    check_pixels(width, height, max_pixels, f"compressed image ({fmt!r})")
    try:
        # IMREAD_UNCHANGED keeps 16-bit samples and alpha, and ignores EXIF orientation.
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ConversionError(
            f"compressed image data ({fmt!r}) does not decode ({exc}); a JPEG or PNG is expected"
        ) from None
    if image is None:
        raise ConversionError(f"compressed image data ({fmt!r}, {data.size} bytes) does not decode as JPEG or PNG")
    return image


def _imencode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise ConversionError(f"cv2.imencode({ext!r}) failed for {image.dtype.name} {image.shape}")
    return encoded.tobytes()
