"""sensor_msgs/Image conversions against hand-built byte layouts, cv2 colour conversions and real CDR."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from conftest import cdr_roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.io.errors import ConversionError
from seg_perception.io.image import array_to_image, image_to_array, image_to_rgb
from seg_perception.io.messages import RosbagsFactory, as_bytes, make_header, stamp_to_ns

IMAGE = "sensor_msgs/msg/Image"

# encoding → (struct code of one channel, channels), written out from sensor_msgs/image_encodings.hpp.
NAMED = {
    "rgb8": ("B", 3), "rgba8": ("B", 4), "rgb16": ("H", 3), "rgba16": ("H", 4),
    "bgr8": ("B", 3), "bgra8": ("B", 4), "bgr16": ("H", 3), "bgra16": ("H", 4),
    "mono8": ("B", 1), "mono16": ("H", 1),
    "bayer_rggb8": ("B", 1), "bayer_bggr8": ("B", 1), "bayer_gbrg8": ("B", 1), "bayer_grbg8": ("B", 1),
    "bayer_rggb16": ("H", 1), "bayer_bggr16": ("H", 1), "bayer_gbrg16": ("H", 1), "bayer_grbg16": ("H", 1),
    "uyvy": ("B", 2), "yuv422": ("B", 2), "yuyv": ("B", 2), "yuv422_yuy2": ("B", 2),
}
DEPTH_CODES = {"8U": "B", "8S": "b", "16U": "H", "16S": "h", "32S": "i", "32F": "f", "64F": "d"}
GENERIC = {f"{depth}C{n}": (code, n) for depth, code in DEPTH_CODES.items() for n in (1, 2, 3, 4)}
ALL = {**NAMED, **GENERIC}


def random_values(code: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random pixel values covering the whole range of the struct type `code`."""
    dtype = np.dtype(code)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def pack_image(values: np.ndarray, code: str, step: int, bigendian: bool) -> bytes:
    """Row by row with struct, independent of numpy's views: each row's values, then zero padding."""
    rows = []
    for row in values.reshape(values.shape[0], -1).tolist():
        packed = struct.pack(f"{'>' if bigendian else '<'}{len(row)}{code}", *row)
        rows.append(packed + bytes(step - len(packed)))
    return b"".join(rows)


def shape_of(height: int, width: int, channels: int) -> tuple[int, ...]:
    return (height, width) if channels == 1 else (height, width, channels)


@pytest.mark.parametrize("encoding", sorted(ALL))
def test_round_trip_through_cdr(factory, encoding):
    code, channels = ALL[encoding]
    values = random_values(code, shape_of(5, 6, channels), np.random.default_rng(7))
    header = make_header(factory, 1_700_000_000_123_456_789, "camera_optical")
    msg = array_to_image(values, encoding, header=header, factory=factory)
    assert image_to_array(msg).tobytes() == values.tobytes()  # the factory's own world, before CDR
    back = cdr_roundtrip(msg, IMAGE)
    item = struct.calcsize(code)
    assert (back.height, back.width, back.encoding) == (5, 6, encoding)
    assert (back.step, back.is_bigendian) == (6 * channels * item, 0)
    assert stamp_to_ns(back.header.stamp) == 1_700_000_000_123_456_789
    assert back.header.frame_id == "camera_optical"
    assert as_bytes(back.data).tobytes() == pack_image(values, code, back.step, bigendian=False)
    decoded = image_to_array(back)
    assert decoded.dtype == np.dtype(code) and decoded.shape == values.shape
    np.testing.assert_array_equal(decoded, values)


@pytest.mark.parametrize("bigendian", [False, True])
def test_padded_rows_through_cdr(factory, bigendian):
    values = random_values("H", (4, 5, 3), np.random.default_rng(3))
    step = 5 * 3 * 2 + 6
    msg = factory.make(IMAGE, height=4, width=5, encoding="rgb16", is_bigendian=int(bigendian), step=step,
                       data=np.frombuffer(pack_image(values, "H", step, bigendian), np.uint8))
    for message in (msg, cdr_roundtrip(msg, IMAGE)):
        decoded = image_to_array(message)
        assert decoded.dtype.isnative
        np.testing.assert_array_equal(decoded, values)


@settings(max_examples=80, deadline=None)
@given(
    encoding=st.sampled_from(sorted(ALL)),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    padding=st.integers(0, 13),
    bigendian=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_decode_matches_struct_layout(encoding, height, width, padding, bigendian, seed):
    code, channels = ALL[encoding]
    values = random_values(code, shape_of(height, width, channels), np.random.default_rng(seed))
    step = width * channels * struct.calcsize(code) + padding
    msg = RosbagsFactory().make(IMAGE, height=height, width=width, encoding=encoding, step=step,
                                is_bigendian=int(bigendian),
                                data=np.frombuffer(pack_image(values, code, step, bigendian), np.uint8))
    decoded = image_to_array(msg)
    assert decoded.dtype == np.dtype(code) and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, values)
    copied = image_to_array(msg, copy=True)
    assert copied.flags.c_contiguous and copied.flags.owndata
    np.testing.assert_array_equal(copied, values)


@settings(max_examples=50, deadline=None)
@given(
    code=st.sampled_from(sorted(set(DEPTH_CODES.values()))),
    channels=st.integers(1, 4),
    height=st.integers(1, 8),
    width=st.integers(1, 8),
    order=st.sampled_from(["<", ">"]),
    transpose=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_encode_any_layout_gives_tight_little_endian_bytes(code, channels, height, width, order, transpose, seed):
    values = random_values(code, shape_of(height, width, channels), np.random.default_rng(seed))
    source = values.astype(np.dtype(code).newbyteorder(order))
    if transpose:  # a non-contiguous view of the same pixels
        source = np.ascontiguousarray(np.swapaxes(source, 0, 1)).swapaxes(0, 1)
    msg = array_to_image(source)
    assert msg.is_bigendian == 0 and msg.step == width * channels * struct.calcsize(code)
    assert as_bytes(msg.data).tobytes() == pack_image(values, code, msg.step, bigendian=False)
    np.testing.assert_array_equal(image_to_array(msg), values)


def test_decode_is_a_zero_copy_view(factory):
    values = np.arange(4 * 7 * 3, dtype=np.uint8).reshape(4, 7, 3)
    padded = np.zeros((4, 25), np.uint8)
    padded[:, :21] = values.reshape(4, 21)
    msg = factory.make(IMAGE, height=4, width=7, encoding="rgb8", step=25, data=padded.reshape(-1))
    view = image_to_array(msg)
    assert np.shares_memory(view, as_bytes(msg.data))
    assert view.strides == (25, 3, 1)
    np.testing.assert_array_equal(view, values)
    tight = array_to_image(values, factory=factory)
    assert np.shares_memory(image_to_array(tight), as_bytes(tight.data))
    assert not np.shares_memory(image_to_array(tight, copy=True), as_bytes(tight.data))


@pytest.mark.parametrize(
    ("dtype", "shape", "encoding"),
    [
        (np.uint8, (3, 4), "mono8"), (np.uint8, (3, 4, 1), "mono8"), (np.uint8, (3, 4, 2), "8UC2"),
        (np.uint8, (3, 4, 3), "rgb8"), (np.uint8, (3, 4, 4), "rgba8"), (np.uint16, (3, 4), "mono16"),
        (np.uint16, (3, 4, 3), "rgb16"), (np.uint16, (3, 4, 4), "rgba16"), (np.uint16, (3, 4, 2), "16UC2"),
        (np.int8, (3, 4), "8SC1"), (np.int16, (3, 4), "16SC1"), (np.int32, (3, 4), "32SC1"),
        (np.float32, (3, 4), "32FC1"), (np.float32, (3, 4, 3), "32FC3"), (np.float64, (3, 4), "64FC1"),
        (np.int16, (3, 4, 4), "16SC4"),
    ],
)
def test_encoding_inferred_from_dtype_and_channels(dtype, shape, encoding):
    assert array_to_image(np.zeros(shape, dtype)).encoding == encoding


def test_generic_encoding_without_channel_count_is_one_channel():
    msg = RosbagsFactory().make(IMAGE, height=1, width=2, encoding="16UC", step=4,
                                data=np.frombuffer(struct.pack("<2H", 513, 65535), np.uint8))
    np.testing.assert_array_equal(image_to_array(msg), [[513, 65535]])


# --- image_to_rgb ---------------------------------------------------------------------------------


def expected_8bit(values: np.ndarray) -> np.ndarray:
    """cv_bridge's 16 → 8 bit scaling, value * 255 / 65535 rounded, in integer arithmetic."""
    return ((2 * values.astype(np.uint32) + 257) // 514).astype(np.uint8)


@pytest.mark.parametrize(
    ("encoding", "reorder"),
    [
        ("rgb8", lambda a: a), ("bgr8", lambda a: a[..., ::-1]), ("rgba8", lambda a: a[..., :3]),
        ("bgra8", lambda a: a[..., 2::-1]), ("mono8", lambda a: np.repeat(a[..., None], 3, axis=2)),
        ("rgb16", lambda a: a), ("bgr16", lambda a: a[..., ::-1]), ("rgba16", lambda a: a[..., :3]),
        ("bgra16", lambda a: a[..., 2::-1]), ("mono16", lambda a: np.repeat(a[..., None], 3, axis=2)),
    ],
)
def test_rgb_from_channel_orders(factory, encoding, reorder):
    code, channels = NAMED[encoding]
    values = random_values(code, shape_of(6, 5, channels), np.random.default_rng(11))
    step = 5 * channels * struct.calcsize(code) + 4
    msg = factory.make(IMAGE, height=6, width=5, encoding=encoding, step=step,
                       data=np.frombuffer(pack_image(values, code, step, False), np.uint8))
    expected = reorder(values)
    if code == "H":
        expected = expected_8bit(expected)
    rgb = image_to_rgb(cdr_roundtrip(msg, IMAGE))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 5, 3)
    np.testing.assert_array_equal(rgb, expected)


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image through a 2x2 colour filter; `pattern` reads the filter row by row."""
    mosaic = np.empty(rgb.shape[:2], rgb.dtype)
    for index, colour in enumerate(pattern):
        row, col = divmod(index, 2)
        mosaic[row::2, col::2] = rgb[row::2, col::2, "rgb".index(colour)]
    return mosaic


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_demosaic_recovers_a_flat_colour(factory, pattern, bits):
    colour = np.array([200, 90, 30], np.uint16 if bits == 16 else np.uint8)
    scene = np.broadcast_to(colour * (257 if bits == 16 else 1), (8, 10, 3)).astype(colour.dtype)
    msg = array_to_image(bayer_mosaic(scene, pattern), f"bayer_{pattern}{bits}", factory=factory)
    rgb = image_to_rgb(cdr_roundtrip(msg, IMAGE))
    # Bilinear demosaicing of a flat field is exact away from the border.
    np.testing.assert_array_equal(rgb[2:-2, 2:-2], np.broadcast_to([200, 90, 30], (4, 6, 3)))


# cv_bridge's Bayer codes: OpenCV names a pattern by the second row's second and third pixels.
CV_BAYER = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
            "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}


@settings(max_examples=40, deadline=None)
@given(pattern=st.sampled_from(sorted(CV_BAYER)), bits=st.sampled_from([8, 16]),
       height=st.integers(2, 12), width=st.integers(2, 12), padding=st.integers(0, 6),
       seed=st.integers(0, 2**32 - 1))
def test_bayer_matches_cv2_on_a_padded_mosaic(pattern, bits, height, width, padding, seed):
    code = "H" if bits == 16 else "B"
    mosaic = random_values(code, (height, width), np.random.default_rng(seed))
    step = width * struct.calcsize(code) + padding * struct.calcsize(code)
    msg = RosbagsFactory().make(IMAGE, height=height, width=width, encoding=f"bayer_{pattern}{bits}", step=step,
                                data=np.frombuffer(pack_image(mosaic, code, step, False), np.uint8))
    expected = cv2.cvtColor(mosaic, CV_BAYER[pattern])
    if bits == 16:
        expected = expected_8bit(expected)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


def bt601_rgb(y: float, u: float, v: float) -> np.ndarray:
    """Studio-swing BT.601 YCbCr → RGB (the conversion OpenCV's YUV 4:2:2 decoders implement)."""
    r = 1.164 * (y - 16) + 1.596 * (v - 128)
    g = 1.164 * (y - 16) - 0.813 * (v - 128) - 0.391 * (u - 128)
    b = 1.164 * (y - 16) + 2.018 * (u - 128)
    return np.clip(np.round([r, g, b]), 0, 255)


@pytest.mark.parametrize("encoding", ["uyvy", "yuv422", "yuyv", "yuv422_yuy2"])
def test_yuv422_byte_order_and_colour(factory, encoding):
    # Two pixels sharing chroma: dark and bright luma, a reddish chroma (V high, U neutral).
    y0, y1, u, v = 60, 180, 128, 200
    uyvy = encoding in ("uyvy", "yuv422")
    macropixel = [u, y0, v, y1] if uyvy else [y0, u, y1, v]
    data = np.array(macropixel * 3 * 4, np.uint8)  # 4 rows of 3 macropixels
    msg = factory.make(IMAGE, height=4, width=6, encoding=encoding, step=12, data=data)
    rgb = image_to_rgb(cdr_roundtrip(msg, IMAGE))
    assert rgb.shape == (4, 6, 3)
    assert np.abs(rgb[:, 0::2].astype(int) - bt601_rgb(y0, u, v)).max() <= 2
    assert np.abs(rgb[:, 1::2].astype(int) - bt601_rgb(y1, u, v)).max() <= 2
    packed = image_to_array(msg)
    assert packed.shape == (4, 6, 2)
    np.testing.assert_array_equal(packed[0, :2].reshape(-1), macropixel)


@settings(max_examples=30, deadline=None)
@given(uyvy=st.booleans(), height=st.integers(1, 8), pairs=st.integers(1, 6), padding=st.integers(0, 5),
       seed=st.integers(0, 2**32 - 1))
def test_yuv422_matches_cv2(uyvy, height, pairs, padding, seed):
    packed = random_values("B", (height, 2 * pairs, 2), np.random.default_rng(seed))
    step = 4 * pairs + padding
    msg = RosbagsFactory().make(IMAGE, height=height, width=2 * pairs, encoding="uyvy" if uyvy else "yuyv",
                                step=step, data=np.frombuffer(pack_image(packed, "B", step, False), np.uint8))
    expected = cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_UYVY if uyvy else cv2.COLOR_YUV2RGB_YUY2)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


# --- bad input ------------------------------------------------------------------------------------


def image_msg(**fields):
    defaults = {"height": 2, "width": 3, "encoding": "rgb8", "step": 9, "data": np.zeros(18, np.uint8)}
    return RosbagsFactory().make(IMAGE, **{**defaults, **fields})


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"data": np.zeros(17, np.uint8)}, r"17 bytes; height \* step = 2 \* 9 = 18 expected"),
        ({"data": np.zeros(19, np.uint8)}, r"19 bytes; height \* step"),
        ({"encoding": "yuv420"}, r"'yuv420' is not supported; supported: rgb8, rgba8"),
        ({"encoding": "8UC0"}, r"'8UC0' is not supported"),
        ({"encoding": "32UC1"}, r"'32UC1' is not supported; supported: .*<depth>C<channels>"),
        ({"step": 8, "data": np.zeros(16, np.uint8)}, r"step 8 is shorter than a row .* at least 9 bytes"),
        ({"width": 0, "step": 0, "data": np.zeros(0, np.uint8)}, r"image size 0x2 is empty"),
        ({"height": 0, "data": np.zeros(0, np.uint8)}, r"image size 3x0 is empty"),
    ],
)
def test_bad_image_messages_raise(fields, match):
    with pytest.raises(ConversionError, match=match):
        image_to_array(image_msg(**fields))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"encoding": "8UC3"}, r"'8UC3' carries no colour meaning.*convertible: rgb8"),
        ({"encoding": "32FC1", "width": 1, "step": 4, "data": np.zeros(8, np.uint8)}, r"'32FC1' carries no colour"),
        ({"encoding": "uyvy", "width": 3, "step": 6, "data": np.zeros(12, np.uint8)}, r"width 3 is odd"),
    ],
)
def test_rgb_of_non_colour_encodings_raises(fields, match):
    with pytest.raises(ConversionError, match=match):
        image_to_rgb(image_msg(**fields))


@pytest.mark.parametrize(
    ("array", "encoding", "match"),
    [
        (np.zeros((2, 3), np.float32), "rgb8", r"float32 with 1 channel\(s\) does not fit .*'rgb8'.*uint8 with 3"),
        (np.zeros((2, 3, 3), np.uint8), "mono8", r"uint8 with 3 channel\(s\) does not fit .*'mono8'"),
        (np.zeros((2, 3), np.uint8), "mono16", r"does not fit image encoding 'mono16'"),
        (np.zeros((2, 3, 2), np.uint8), "bayer_rggb8", r"does not fit image encoding 'bayer_rggb8'"),
        (np.zeros((2, 3), np.uint8), "yuv420", r"'yuv420' is not supported; supported"),
        (np.zeros(6, np.uint8), None, r"shape \(6,\); HxW or HxWxC expected"),
        (np.zeros((1, 2, 3, 4), np.uint8), None, r"HxW or HxWxC expected"),
        (np.zeros((0, 3), np.uint8), None, r"shape \(0, 3\) is empty"),
        (np.zeros((2, 3, 0), np.uint8), None, r"is empty"),
        (np.zeros((2, 3), bool), None, r"dtype bool has no image encoding; supported dtypes: uint8"),
        (np.zeros((2, 3), np.uint32), None, r"dtype uint32 has no image encoding"),
        (np.zeros((2, 3), np.float16), None, r"dtype float16 has no image encoding"),
    ],
)
def test_bad_arrays_raise(array, encoding, match):
    with pytest.raises(ConversionError, match=match):
        array_to_image(array, encoding)


@pytest.mark.parametrize("encoding", ["bgr16", "rgba16", "mono16", "bayer_rggb16", "32FC1", "64FC3"])
@pytest.mark.parametrize("offset", [0, 1])
def test_misaligned_rows_are_copied_aligned(encoding, offset):
    # step = row + 1 puts every other row at an odd address; `offset` misaligns the buffer itself.
    rng = np.random.default_rng(5)
    code, channels = ALL[encoding]
    values = random_values(code, (3, 4, channels), rng)
    row = values[0].nbytes
    padded = np.zeros(3 * (row + 1) + offset, np.uint8)[offset:]
    for r in range(3):
        padded[r * (row + 1): r * (row + 1) + row] = np.frombuffer(values[r].astype("<" + code).tobytes(), np.uint8)
    msg = RosbagsFactory().make(IMAGE, height=3, width=4, encoding=encoding, step=row + 1, data=padded)
    array = image_to_array(msg)
    assert array.flags.aligned
    assert np.array_equal(array.reshape(3, 4, channels), values, equal_nan=True)
    if encoding in ("bgr16", "rgba16", "mono16", "bayer_rggb16"):
        aligned = RosbagsFactory().make(IMAGE, height=3, width=4, encoding=encoding, step=row,
                                        data=np.frombuffer(values.astype("<" + code).tobytes(), np.uint8))
        assert np.array_equal(image_to_rgb(msg), image_to_rgb(aligned))


def test_image_beyond_max_pixels_is_refused():
    msg = array_to_image(np.zeros((40, 50), np.uint8))
    assert image_to_array(msg, max_pixels=2000).shape == (40, 50)
    with pytest.raises(ConversionError, match=r"mono8 image of 50x40 = 2000 pixels exceeds the limit of 1999 pixels"):
        image_to_array(msg, max_pixels=1999)
    with pytest.raises(ConversionError, match=r"exceeds the limit of 1999 pixels"):
        image_to_rgb(msg, max_pixels=1999)
