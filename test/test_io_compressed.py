"""sensor_msgs/CompressedImage conversions against cv2's own decoders, hand-built payloads and real CDR."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from conftest import cdr_roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.io.compressed import array_to_compressed, compressed_to_array
from seg_perception.io.errors import ConversionError
from seg_perception.io.messages import RosbagsFactory, as_bytes, make_header, stamp_to_ns

COMPRESSED = "sensor_msgs/msg/CompressedImage"


def smooth_rgb(height: int, width: int) -> np.ndarray:
    """A smooth colour image, which JPEG reproduces closely."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 64 + 96],
                    axis=-1).astype(np.uint8)


def compressed_msg(fmt: str, payload: bytes, factory=None):
    factory = factory or RosbagsFactory()
    return factory.make(COMPRESSED, format=fmt, data=np.frombuffer(payload, np.uint8))


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def png_with_size(width: int, height: int) -> bytes:
    """A small, well-formed PNG (valid CRCs) whose IHDR claims width x height RGB pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(4096))) + chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """An 8x8 baseline JPEG whose frame header (SOF0) is rewritten to claim width x height."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.mark.parametrize(
    ("dtype", "shape", "fmt"),
    [
        (np.uint8, (7, 9), "mono8; png compressed "),
        (np.uint8, (7, 9, 3), "rgb8; png compressed bgr8"),
        (np.uint8, (7, 9, 4), "rgba8; png compressed bgra8"),
        (np.uint16, (7, 9), "mono16; png compressed "),
        (np.uint16, (7, 9, 3), "rgb16; png compressed bgr16"),
        (np.uint16, (7, 9, 4), "rgba16; png compressed bgra16"),
    ],
)
def test_png_round_trip_through_cdr(factory, dtype, shape, fmt):
    rng = np.random.default_rng(5)
    values = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)
    header = make_header(factory, 42_000_000_007, "thermal")
    msg = array_to_compressed(values, "png", header=header, factory=factory)
    back = cdr_roundtrip(msg, COMPRESSED)
    assert back.format == fmt
    assert stamp_to_ns(back.header.stamp) == 42_000_000_007 and back.header.frame_id == "thermal"
    # The stream itself is an ordinary PNG holding BGR(A), as image_transport writes it.
    stored = cv2.imdecode(as_bytes(back.data), cv2.IMREAD_UNCHANGED)
    if values.ndim == 3:
        np.testing.assert_array_equal(stored, np.concatenate([values[..., 2::-1], values[..., 3:]], axis=-1))
    else:
        np.testing.assert_array_equal(stored, values)
    decoded = compressed_to_array(back)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, values)


@pytest.mark.parametrize("colour", [True, False])
def test_jpeg_round_trip_through_cdr(factory, colour):
    image = smooth_rgb(48, 64)
    values = image if colour else image[..., 0]
    msg = array_to_compressed(values, "jpeg", factory=factory, quality=95)
    back = cdr_roundtrip(msg, COMPRESSED)
    assert back.format == ("rgb8; jpeg compressed bgr8" if colour else "mono8; jpeg compressed ")
    assert as_bytes(back.data)[:2].tobytes() == b"\xff\xd8"  # JPEG start-of-image marker
    independent = cv2.imdecode(as_bytes(back.data), cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    decoded = compressed_to_array(back)
    np.testing.assert_array_equal(decoded, independent[..., ::-1] if colour else independent)
    assert np.abs(decoded.astype(int) - values).mean() < 2.0


def test_jpeg_quality_changes_size():
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    small = array_to_compressed(image, "jpeg", quality=10)
    large = array_to_compressed(image, "jpg", quality=100)
    assert as_bytes(small.data).size < as_bytes(large.data).size


def test_compressed_depth_round_trip_through_cdr(factory):
    depth = np.random.default_rng(2).integers(0, 65535, (6, 8), endpoint=True, dtype=np.uint16)
    big_endian_column = depth[..., None].astype(">u2")  # any byte order and a trailing channel axis
    msg = array_to_compressed(big_endian_column, "compressedDepth", factory=factory)
    back = cdr_roundtrip(msg, COMPRESSED)
    assert back.format == "16UC1; compressedDepth png"
    data = as_bytes(back.data).tobytes()
    assert struct.unpack("<iff", data[:12]) == (0, 0.0, 0.0)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED), depth)
    np.testing.assert_array_equal(compressed_to_array(back), depth)


@settings(max_examples=50, deadline=None)
@given(height=st.integers(1, 24), width=st.integers(1, 24), channels=st.sampled_from([1, 3, 4]),
       sixteen=st.booleans(), level=st.integers(0, 9), seed=st.integers(0, 2**32 - 1))
def test_png_is_lossless_for_any_shape(height, width, channels, sixteen, level, seed):
    dtype = np.uint16 if sixteen else np.uint8
    shape = (height, width) if channels == 1 else (height, width, channels)
    values = np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)
    msg = cdr_roundtrip(array_to_compressed(values, "png", png_level=level), COMPRESSED)
    np.testing.assert_array_equal(compressed_to_array(msg), values)


# --- decoding payloads built by other encoders ----------------------------------------------------


def test_plain_formats_are_ordinary_files_decoded_to_rgb(factory):
    rgb = smooth_rgb(10, 12)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("png", png(bgr), factory)), rgb)
    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    expected = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("jpeg", jpeg, factory)), expected)
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("JPG", jpeg, factory)), expected)
    grey = rgb[..., 1].copy()
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("png", png(grey), factory)), grey)
    bgra = np.dstack([bgr, np.full((10, 12), 77, np.uint8)])
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("png", png(bgra), factory)),
                                  np.dstack([rgb, np.full((10, 12), 77, np.uint8)]))


@pytest.mark.parametrize("source", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_sources_marked_bgr_come_out_rgb(source):
    rgb = smooth_rgb(5, 6)
    msg = compressed_msg(f"{source}; png compressed bgr8", png(np.ascontiguousarray(rgb[..., ::-1])))
    np.testing.assert_array_equal(compressed_to_array(msg), rgb)


def test_streams_not_marked_bgr_are_returned_as_stored():
    stored = smooth_rgb(5, 6)
    # A colour source compressed in its own (RGB) order, as image_transport's decoder assumes.
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("rgb8; png compressed rgb8", png(stored))), stored)
    # Non-colour three-channel data carries no channel order at all.
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("8UC3; png compressed ", png(stored))), stored)
    # A Bayer mosaic is one channel; image_transport compresses it as is.
    mosaic = stored[..., 0].copy()
    np.testing.assert_array_equal(compressed_to_array(compressed_msg("bayer_rggb8; png compressed ", png(mosaic))),
                                  mosaic)


@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth png", "16UC1; compressedDepth", "mono16; compressedDepth png"])
def test_compressed_depth_16bit_from_hand_built_payload(factory, fmt):
    depth = np.random.default_rng(9).integers(0, 65535, (5, 7), endpoint=True, dtype=np.uint16)
    payload = struct.pack("<iff", 0, 0.0, 0.0) + png(depth)
    msg = cdr_roundtrip(compressed_msg(fmt, payload, factory), COMPRESSED)
    decoded = compressed_to_array(msg)
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, depth)


def test_compressed_depth_32bit_inverse_depth_quantisation(factory):
    # compressed_depth_image_transport's defaults: depth_max 10 m, depth_quantization 100.
    quant_a, quant_b = 100.0, 1.0 - 100.0 / 10.0
    depth = np.linspace(0.3, 9.5, 24).reshape(4, 6)
    inverse = np.round(quant_a / depth + quant_b).astype(np.uint16)
    inverse[0, 0] = 0  # no measurement
    payload = struct.pack("<iff", 0, quant_a, quant_b) + png(inverse)
    decoded = compressed_to_array(cdr_roundtrip(compressed_msg("32FC1; compressedDepth png", payload, factory),
                                                COMPRESSED))
    assert decoded.dtype == np.float32 and decoded.shape == (4, 6)
    expected = quant_a / (inverse.astype(np.float64) - quant_b)
    expected[0, 0] = np.nan
    np.testing.assert_allclose(decoded, expected, rtol=1e-6, equal_nan=True)
    valid = inverse > 0
    # Decoding inverts the quantisation: quantising the decoded depth again gives the stored value.
    np.testing.assert_array_equal(np.round(quant_a / decoded[valid] + quant_b), inverse[valid])


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "payload", "match"),
    [
        ("jpeg", b"", r"has no data; a JPEG or PNG byte stream is expected"),
        ("rgb8; jpeg compressed bgr8", b"not an image at all" * 4, r"starts with b'not an i', which is neither PNG nor"),
        ("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, r"is a PNG without an IHDR header"),
        ("jpeg", b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda" + b"\x00" * 20, r"is a JPEG without a frame header"),
        ("jpeg", jpeg_with_size(0, 8), r"header gives size 0x8; a non-empty image expected"),
        ("webp", png(np.zeros((2, 2), np.uint8)), r"format 'webp' is not supported; supported: 'jpeg', 'png'"),
        ("", png(np.zeros((2, 2), np.uint8)), r"format '' is not supported"),
        ("rgb8; h264 compressed", b"\x00" * 20, r"'rgb8; h264 compressed' is not supported"),
        ("16UC1; compressedDepth rvl", b"\x00" * 40, r"codec 'rvl' .* supported: png"),
        ("16UC1; compressedDepth png", b"\x00" * 12, r"has 12 bytes; a 12-byte header and a PNG are expected"),
        ("16UC1; compressedDepth png", struct.pack("<iff", 0, 0, 0) + png(np.zeros((2, 2), np.uint8)),
         r"holds uint8 \(2, 2\); a one-channel 16-bit PNG is expected"),
        ("32FC1; compressedDepth png", struct.pack("<iff", 0, 0, 0) + b"garbage" * 5, r"neither PNG nor JPEG"),
        ("32FC1; compressedDepth png", struct.pack("<iff", 0, float("nan"), 1) + png(np.ones((2, 2), np.uint16)),
         r"depth parameters nan, 1.0; finite values expected"),
    ],
)
def test_bad_compressed_messages_raise(fmt, payload, match):
    with pytest.raises(ConversionError, match=match):
        compressed_to_array(compressed_msg(fmt, payload))


@pytest.mark.parametrize(
    ("array", "fmt", "kwargs", "match"),
    [
        (np.zeros((2, 3), np.uint8), "bmp", {}, r"'bmp' is not supported; supported: jpeg, png, compressedDepth"),
        (np.zeros((2, 3), np.uint16), "jpeg", {}, r"uint16 \(2, 3\) cannot be stored as jpeg; uint8 HxW"),
        (np.zeros((2, 3, 4), np.uint8), "jpeg", {}, r"cannot be stored as jpeg"),
        (np.zeros((2, 3, 2), np.uint8), "png", {}, r"uint8 \(2, 3, 2\) cannot be stored as png"),
        (np.zeros((2, 3), np.float32), "png", {}, r"float32 \(2, 3\) cannot be stored as png"),
        (np.zeros((2, 3), np.uint8), "compressedDepth", {}, r"cannot be stored as compressedDepth; uint16 HxW"),
        (np.zeros((2, 3, 3), np.uint16), "compressedDepth", {}, r"cannot be stored as compressedDepth"),
        (np.zeros(6, np.uint8), "png", {}, r"\(6,\) cannot be stored as png"),
        (np.zeros((0, 3), np.uint8), "png", {}, r"\(0, 3\) cannot be stored as png"),
        (np.zeros((2, 3), np.uint8), "jpeg", {"quality": 101}, r"JPEG quality 101 is out of range; 0-100"),
        (np.zeros((2, 3), np.uint8), "png", {"png_level": 10}, r"PNG compression level 10 is out of range; 0-9"),
    ],
)
def test_bad_arrays_raise(array, fmt, kwargs, match):
    with pytest.raises(ConversionError, match=match):
        array_to_compressed(array, fmt, **kwargs)


@pytest.mark.parametrize(("fmt", "payload"), [
    ("png", png_with_size(30_000, 30_000)),  # 1.1 kB claiming 2.7 GB of RGB
    ("rgb8; jpeg compressed bgr8", jpeg_with_size(65_000, 60_000)),
    ("16UC1; compressedDepth png", struct.pack("<iff", 0, 0, 0) + png_with_size(10_000, 6_000)),
])
def test_huge_claimed_sizes_are_refused_before_decoding(monkeypatch, fmt, payload):
    def no_decoding(*_):
        raise AssertionError("decoded an image whose header is beyond the limit")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ConversionError, match=r"pixels exceeds the limit of 50000000 pixels; accepted: up to max_pixels"):
        compressed_to_array(compressed_msg(fmt, payload))


@pytest.mark.parametrize("encode", [png, lambda image: cv2.imencode(".jpg", image)[1].tobytes()])
def test_max_pixels_is_compared_with_the_header_size(encode):
    msg = compressed_msg("mono8; png compressed ", encode(np.zeros((40, 50), np.uint8)))
    assert compressed_to_array(msg, max_pixels=2000).shape == (40, 50)
    with pytest.raises(ConversionError, match=r"of 50x40 = 2000 pixels exceeds the limit of 1999 pixels"):
        compressed_to_array(msg, max_pixels=1999)
