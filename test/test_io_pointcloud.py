"""PointCloud2 ⇄ numpy: checked against struct unpacking of hand-built buffers, through real CDR in both worlds."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cdr_roundtrip
from seg_perception.io.errors import ConversionError
from seg_perception.io.messages import RosbagsFactory, as_bytes, make_header
from seg_perception.io.pointcloud import (
    array_to_cloud,
    cloud_dtype,
    cloud_to_array,
    cloud_to_columns,
    cloud_to_xyz,
    pack_rgb,
    unpack_rgb,
    xyz_to_cloud,
)

TYPENAME = "sensor_msgs/msg/PointCloud2"
# PointField datatype → (struct format character, size), written out from sensor_msgs/PointField.msg.
STRUCT = {1: ("b", 1), 2: ("B", 1), 3: ("h", 2), 4: ("H", 2), 5: ("i", 4), 6: ("I", 4), 7: ("f", 4), 8: ("d", 8)}
OUSTER = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 16, 7, 1), ("t", 20, 6, 1), ("ring", 24, 4, 1)]


def _fields(factory, layout):
    return [factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c) for n, o, d, c in layout]


def _cloud(factory, layout, data: bytes, *, height, width, point_step, row_step, big=False, frame_id="lidar"):
    """A PointCloud2 built field by field from raw bytes, without the code under test."""
    return factory.make(
        TYPENAME, header=make_header(factory, 123_456_789_012, frame_id), height=height, width=width,
        fields=_fields(factory, layout), is_bigendian=big, point_step=point_step, row_step=row_step,
        data=np.frombuffer(data, np.uint8), is_dense=True,
    )


def _expected(layout, data: bytes, *, height, width, point_step, row_step, big=False):
    """name → list over points (row-major) of tuples of the field's values, by struct.unpack_from."""
    order = ">" if big else "<"
    out = {}
    for name, offset, datatype, count in layout:
        char, size = STRUCT[datatype]
        out[name] = [
            struct.unpack_from(f"{order}{count}{char}", data, r * row_step + c * point_step + offset)
            for r in range(height) for c in range(width)
        ]
    return out


def _as_rows(values: np.ndarray, count: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # random bytes make signalling NaNs; widening quiets them
        return np.asarray(values, dtype=np.float64).reshape(-1, count)


def _ouster_bytes(points, *, point_step=32, row_pad=0, width=None, fill=0xAB):
    """Hand-pack (x, y, z, intensity, t, ring) tuples, padding bytes set to `fill`."""
    width = width if width is not None else len(points)
    rows = []
    for start in range(0, len(points), width):
        row = bytearray()
        for x, y, z, i, t, ring in points[start:start + width]:
            point = bytearray([fill]) * point_step
            struct.pack_into("<3f", point, 0, x, y, z)
            struct.pack_into("<fIH", point, 16, i, t, ring)
            row += point
        rows.append(bytes(row) + bytes([fill]) * row_pad)
    return b"".join(rows)


# --- hand-built buffers against struct ----------------------------------------------------------


@pytest.mark.parametrize("row_pad", [0, 6])
def test_ouster_layout_matches_struct(factory, row_pad):
    rng = np.random.default_rng(1)
    height, width = 3, 4
    points = [
        (*rng.normal(size=4).astype(np.float32).tolist(), int(rng.integers(0, 2**32)), int(rng.integers(0, 2**16)))
        for _ in range(height * width)
    ]
    data = _ouster_bytes(points, width=width, row_pad=row_pad)
    row_step = width * 32 + row_pad
    msg = _cloud(factory, OUSTER, data, height=height, width=width, point_step=32, row_step=row_step)
    expected = _expected(OUSTER, data, height=height, width=width, point_step=32, row_step=row_step)

    array = cloud_to_array(msg)
    assert array.shape == (height, width)
    columns = cloud_to_columns(msg)
    for name, *_ in OUSTER:
        want = np.array([v[0] for v in expected[name]])
        np.testing.assert_array_equal(array[name].reshape(-1), want)
        np.testing.assert_array_equal(columns[name].reshape(-1), want)
        assert columns[name].flags.c_contiguous and columns[name].dtype.isnative
    assert columns["ring"].dtype == np.uint16 and columns["t"].dtype == np.uint32
    xyz = cloud_to_xyz(msg)
    want_xyz = np.array([[p[0], p[1], p[2]] for p in points], dtype=np.float32)
    np.testing.assert_array_equal(xyz, want_xyz)
    assert xyz.dtype == np.float32 and xyz.shape == (height * width, 3)


def test_structured_view_is_zero_copy_with_row_padding():
    factory = RosbagsFactory()
    data = _ouster_bytes([(1, 2, 3, 4, 5, 6)] * 6, width=3, row_pad=8)
    msg = _cloud(factory, OUSTER, data, height=2, width=3, point_step=32, row_step=3 * 32 + 8)
    array = cloud_to_array(msg)
    assert np.shares_memory(array, as_bytes(msg.data))
    assert array.strides == (3 * 32 + 8, 32)
    decoded = cloud_to_array(cdr_roundtrip(msg, TYPENAME))
    assert not decoded.flags.writeable  # a view of the deserialised, read-only buffer
    assert decoded["ring"].tolist() == [[6, 6, 6], [6, 6, 6]]


def test_big_endian_cloud_matches_struct(factory):
    layout = [("x", 0, 8, 1), ("y", 8, 8, 1), ("z", 16, 8, 1), ("intensity", 24, 3, 1), ("label", 26, 1, 1)]
    values = [(1.5, -2.25, 1e300, -7, -3), (0.0, float("nan"), 3.0, 1234, 127)]
    data = b"".join(struct.pack(">3dhb5x", *v) for v in values)
    msg = _cloud(factory, layout, data, height=1, width=2, point_step=32, row_step=64, big=True)
    array = cloud_to_array(msg)
    assert array.dtype["x"] == np.dtype(">f8")
    np.testing.assert_array_equal(array["intensity"], [-7, 1234])
    columns = cloud_to_columns(msg, ["intensity", "x"])
    assert list(columns) == ["intensity", "x"]
    assert columns["intensity"].dtype == np.dtype("=i2") and columns["x"].dtype == np.dtype("=f8")
    np.testing.assert_array_equal(columns["x"], [1.5, 0.0])
    xyz = cloud_to_xyz(msg, skip_nans=False)
    np.testing.assert_array_equal(xyz, np.array([[1.5, -2.25, np.inf], [0.0, np.nan, 3.0]], np.float32))
    np.testing.assert_array_equal(cloud_to_xyz(msg), np.array([[1.5, -2.25, np.inf]], np.float32))


def test_count_padding_fields_and_overlap():
    factory = RosbagsFactory()
    # normal (3 x FLOAT32, count 3) behind xyz, a PCL "_" padding field, and rgb/rgba sharing their bytes.
    layout = [("normal", 16, 7, 3), ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("_", 12, 2, 4),
              ("rgb", 28, 7, 1), ("rgba", 28, 6, 1)]
    point = struct.pack("<3f4x3fI", 1.0, 2.0, 3.0, 0.5, 0.25, -1.0, 0xFF102030)
    msg = _cloud(factory, layout, point * 2, height=1, width=2, point_step=32, row_step=64)
    array = cloud_to_array(msg)
    assert array.dtype.names == ("normal", "x", "y", "z", "rgb", "rgba")
    assert array["normal"].shape == (2, 3)
    np.testing.assert_array_equal(array["normal"][1], [0.5, 0.25, -1.0])
    assert array["rgba"].tolist() == [0xFF102030] * 2
    assert unpack_rgb(array["rgb"]).tolist() == [[0x10, 0x20, 0x30]] * 2
    assert unpack_rgb(array["rgba"], alpha=True).tolist() == [[0x10, 0x20, 0x30, 0xFF]] * 2
    columns = cloud_to_columns(msg, ["normal", "rgba", "x"])
    assert columns["normal"].shape == (2, 3) and columns["normal"].flags.c_contiguous
    assert columns["rgba"].tolist() == [0xFF102030] * 2


def test_nan_points_are_skipped_only_when_asked():
    factory = RosbagsFactory()
    nan = float("nan")
    points = [(1, 2, 3, 0, 0, 0), (nan, 0, 0, 0, 0, 0), (4, 5, nan, 0, 0, 0), (7, 8, 9, 0, 0, 0)]
    msg = _cloud(factory, OUSTER, _ouster_bytes(points, width=2), height=2, width=2, point_step=32, row_step=64)
    np.testing.assert_array_equal(cloud_to_xyz(msg), [[1, 2, 3], [7, 8, 9]])
    kept = cloud_to_xyz(msg, skip_nans=False)
    assert kept.shape == (4, 3) and np.isnan(kept[1, 0]) and np.isnan(kept[2, 2])


@pytest.mark.parametrize("offset", [0, 2])  # the message's bytes 4-byte aligned in memory, or not
def test_skipping_nans_drops_exactly_the_points_with_a_nan_coordinate(offset):
    nan, inf = float("nan"), float("inf")
    points = [(nan, 1, 1, 0, 0, 0), (1, nan, 1, 0, 0, 0), (1, 1, nan, 0, 0, 0), (inf, -inf, 0, 0, 0, 0),
              (nan, nan, nan, 0, 0, 0), (-1.5, 2.5, 3.5, 0, 0, 0)]
    data = np.frombuffer(bytes(offset) + _ouster_bytes(points, width=6), np.uint8)[offset:]
    msg = _cloud(RosbagsFactory(), OUSTER, data, height=1, width=6, point_step=32, row_step=192)
    np.testing.assert_array_equal(cloud_to_xyz(msg), np.array([[inf, -inf, 0], [-1.5, 2.5, 3.5]], np.float32))
    all_nan = _cloud(RosbagsFactory(), OUSTER, _ouster_bytes(points[4:5], width=1), height=1, width=1,
                     point_step=32, row_step=32)
    assert cloud_to_xyz(all_nan).shape == (0, 3)


def test_xyz_fallback_for_scattered_or_integer_coordinates():
    factory = RosbagsFactory()
    layout = [("z", 0, 3, 1), ("x", 4, 7, 1), ("y", 12, 5, 1)]
    data = struct.pack("<h2xf4xi", -5, 1.25, 70000) + struct.pack("<h2xf4xi", 9, -0.5, -2)
    msg = _cloud(factory, layout, data, height=1, width=2, point_step=16, row_step=32)
    np.testing.assert_array_equal(cloud_to_xyz(msg), np.array([[1.25, 70000, -5], [-0.5, -2, 9]], np.float32))


def test_empty_cloud():
    factory = RosbagsFactory()
    msg = _cloud(factory, OUSTER, b"", height=1, width=0, point_step=32, row_step=0)
    assert cloud_to_array(msg).shape == (0,)
    assert cloud_to_xyz(msg).shape == (0, 3)
    assert cloud_to_columns(msg)["ring"].shape == (0,)
    back = cloud_to_array(cdr_roundtrip(array_to_cloud(cloud_to_array(msg)), TYPENAME))
    assert back.shape == (0,) and back.dtype == cloud_to_array(msg).dtype


# --- random layouts (hypothesis) ------------------------------------------------------------------


@st.composite
def layouts(draw):
    n_fields = draw(st.integers(1, 6))
    named_xyz = draw(st.booleans())
    layout, offset = [], 0
    for i in range(n_fields):
        datatype = draw(st.integers(1, 8))
        count = draw(st.integers(1, 3))
        offset += draw(st.integers(0, 3))  # padding before the field, aligned or not
        name = "xyz"[i] if named_xyz and i < 3 else f"f{i}"
        layout.append((name, offset, datatype, count))
        offset += STRUCT[datatype][1] * count
    point_step = offset + draw(st.integers(0, 5))
    layout = draw(st.permutations(layout))  # PointFields listed in any order
    height = draw(st.integers(1, 3))
    width = draw(st.integers(0, 5))
    row_step = width * point_step + draw(st.integers(0, 9))
    big = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, row_step * height, dtype=np.uint8).tobytes()
    return list(layout), dict(height=height, width=width, point_step=point_step, row_step=row_step, big=big), data


def _check_against_struct(msg, layout, geometry, data):
    expected = _expected(layout, data, **geometry)
    array = cloud_to_array(msg)
    height, width = geometry["height"], geometry["width"]
    assert array.shape == ((width,) if height == 1 else (height, width))
    columns = cloud_to_columns(msg)
    for name, _, _, count in layout:
        want = np.array(expected[name], dtype=np.float64).reshape(-1, count)
        np.testing.assert_array_equal(_as_rows(array[name], count), want)
        np.testing.assert_array_equal(_as_rows(columns[name], count), want)
        assert columns[name].flags.c_contiguous and columns[name].dtype.isnative
        assert columns[name].shape == array.shape + ((count,) if count > 1 else ())
    if {"x", "y", "z"} <= set(expected) and all(c == 1 for n, _, _, c in layout if n in "xyz"):
        with np.errstate(over="ignore"):
            want = np.array([[expected[a][i][0] for a in "xyz"] for i in range(height * width)]).astype(np.float32)
        want = want.reshape(-1, 3)
        np.testing.assert_array_equal(cloud_to_xyz(msg, skip_nans=False), want)
        np.testing.assert_array_equal(cloud_to_xyz(msg), want[~np.isnan(want).any(axis=1)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=layouts())
def test_random_layouts_match_struct_and_round_trip(factory, case):
    layout, geometry, data = case
    msg = _cloud(factory, layout, data, **geometry)
    _check_against_struct(msg, layout, geometry, data)
    received = cdr_roundtrip(msg, TYPENAME)
    _check_against_struct(received, layout, geometry, data)

    # Encoding the decoded view drops only the row padding: the bytes of every row come back.
    again = cdr_roundtrip(array_to_cloud(cloud_to_array(received), factory=factory), TYPENAME)
    height, width, point_step, row_step = (geometry[k] for k in ("height", "width", "point_step", "row_step"))
    assert (again.height, again.width, again.point_step) == (height, width, point_step)
    assert again.row_step == width * point_step
    if any(STRUCT[datatype][1] > 1 for _, _, datatype, _ in layout):  # bytes have no byte order
        assert bool(again.is_bigendian) == geometry["big"]
    rows = b"".join(data[r * row_step: r * row_step + width * point_step] for r in range(height))
    assert bytes(as_bytes(again.data)) == rows
    got = sorted((f.name, f.offset, f.datatype, f.count) for f in again.fields)
    assert got == sorted(layout)


@st.composite
def lidar_layouts(draw):
    """Driver-like layouts: adjacent FLOAT32 x, y, z, then aligned extras in whole 32-bit words."""
    offset = 4 * draw(st.integers(0, 2))
    layout = [("x", offset, 7, 1), ("y", offset + 4, 7, 1), ("z", offset + 8, 7, 1)]
    offset += 12
    for i in range(draw(st.integers(0, 5))):
        datatype = draw(st.integers(1, 8))
        size = STRUCT[datatype][1]
        offset += draw(st.integers(0, 2)) * size
        offset = -(-offset // size) * size
        layout.append((f"e{i}", offset, datatype, 1))
        offset += size
    point_step = -(-offset // 4) * 4 + 4 * draw(st.integers(0, 2))
    height = draw(st.integers(1, 4))
    width = draw(st.integers(1, 6))
    row_step = width * point_step + (draw(st.sampled_from([0, 0, 0, 4])) if height > 1 else 0)
    big = draw(st.sampled_from([False, False, True]))
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, row_step * height, dtype=np.uint8).tobytes()
    return layout, dict(height=height, width=width, point_step=point_step, row_step=row_step, big=big), data


@settings(max_examples=60, deadline=None)
@given(case=lidar_layouts())
def test_lidar_layouts_fast_paths_match_struct(case):
    layout, geometry, data = case
    msg = _cloud(RosbagsFactory(), layout, data, **geometry)
    _check_against_struct(msg, layout, geometry, data)
    received = cdr_roundtrip(msg, TYPENAME)  # the data at whatever alignment CDR leaves it
    _check_against_struct(received, layout, geometry, data)
    subset = [name for name, *_ in layout][::2]
    expected = _expected(layout, data, **geometry)
    for name, column in cloud_to_columns(received, subset).items():
        np.testing.assert_array_equal(column.reshape(-1), np.array([v[0] for v in expected[name]]))


# --- encoding through real CDR, both worlds ---------------------------------------------------------


def test_array_round_trip_through_cdr(factory):
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "t", "ring", "normal"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u4", "<u2", ("<f8", (2,))],
                      "offsets": [0, 4, 8, 16, 20, 24, 32], "itemsize": 48})
    rng = np.random.default_rng(3)
    array = np.zeros((2, 5), dtype)
    for name in ("x", "y", "z", "intensity"):
        array[name] = rng.normal(size=(2, 5))
    array["t"] = rng.integers(0, 2**32, (2, 5))
    array["ring"] = rng.integers(0, 2**16, (2, 5))
    array["normal"] = rng.normal(size=(2, 5, 2))
    msg = array_to_cloud(array, stamp_ns=5_000_000_123, frame_id="os_lidar", factory=factory)
    back = cdr_roundtrip(msg, TYPENAME)
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (5, 123, "os_lidar")
    assert (back.height, back.width, back.point_step, back.row_step) == (2, 5, 48, 240)
    assert [(f.name, f.offset, f.datatype, f.count) for f in back.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 16, 7, 1), ("t", 20, 6, 1),
        ("ring", 24, 4, 1), ("normal", 32, 8, 2)]
    assert back.is_dense and not back.is_bigendian
    decoded = cloud_to_array(back)
    assert decoded.dtype == dtype
    for name in dtype.names:
        np.testing.assert_array_equal(decoded[name], array[name])
    # The rclpy world's own message (array.array data) decodes the same without CDR.
    np.testing.assert_array_equal(cloud_to_array(msg)["ring"], array["ring"])


def test_big_endian_array_and_header_reuse(factory):
    array = np.array([(1.0, -2, 3), (4.5, 6, 7)], dtype=[("x", ">f8"), ("a", ">i2"), ("b", "u1")])
    header = make_header(factory, 42, "base_link")
    back = cdr_roundtrip(array_to_cloud(array, header=header, factory=factory), TYPENAME)
    assert back.is_bigendian and back.point_step == 11 and back.header.frame_id == "base_link"
    assert bytes(as_bytes(back.data)) == struct.pack(">dhB", 1.0, -2, 3) + struct.pack(">dhB", 4.5, 6, 7)
    np.testing.assert_array_equal(cloud_to_columns(back)["a"], [-2, 6])


def test_xyz_to_cloud_round_trip(factory):
    rng = np.random.default_rng(4)
    points = rng.normal(size=(3, 4, 3))
    intensity = rng.random((3, 4)).astype(np.float32)
    ring = np.arange(12, dtype=np.uint16).reshape(3, 4)
    msg = xyz_to_cloud(points, intensity=intensity, ring=ring, frame_id="velodyne", factory=factory)
    back = cdr_roundtrip(msg, TYPENAME)
    assert [(f.name, f.offset, f.datatype, f.count) for f in back.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 12, 7, 1), ("ring", 16, 4, 1)]
    assert (back.height, back.width, back.point_step) == (3, 4, 18)
    np.testing.assert_array_equal(cloud_to_xyz(back), points.astype(np.float32).reshape(-1, 3))
    columns = cloud_to_columns(back, ["ring", "intensity"])
    np.testing.assert_array_equal(columns["ring"], ring)
    np.testing.assert_array_equal(columns["intensity"], intensity)
    first = struct.unpack_from("<4fH", bytes(as_bytes(back.data)), 0)
    assert first == (*points[0, 0].astype(np.float32).tolist(), float(intensity[0, 0]), 0)


def test_is_dense_computed_or_given():
    points = np.array([[0, 0, 0], [1, np.nan, 1]], np.float32)
    assert not xyz_to_cloud(points).is_dense
    assert xyz_to_cloud(points[:1]).is_dense
    assert xyz_to_cloud(points, is_dense=True).is_dense
    assert array_to_cloud(np.zeros(3, [("a", "u1")])).is_dense


def test_non_contiguous_array_is_copied_and_encoded():
    array = np.zeros(6, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    array["x"] = np.arange(6)
    msg = array_to_cloud(array[::2])
    assert msg.width == 3 and msg.row_step == 36
    assert cloud_to_columns(msg, ["x"])["x"].tolist() == [0, 2, 4]


# --- packed rgb -----------------------------------------------------------------------------------


def test_rgb_packing_matches_hand_computation():
    packed = pack_rgb(np.array([0x12, 255, 0], np.uint8), np.array([0x34, 0, 0], np.uint8), np.array([0x56, 0, 255], np.uint8))
    bits = [0x00123456, 0x00FF0000, 0x000000FF]
    want = [struct.unpack("<f", struct.pack("<I", b))[0] for b in bits]
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == bits
    np.testing.assert_array_equal(packed, np.array(want, np.float32))
    assert unpack_rgb(packed).tolist() == [[0x12, 0x34, 0x56], [255, 0, 0], [0, 0, 255]]
    rgba = pack_rgb(1, 2, 3, a=200)
    assert int(rgba.view(np.uint32)) == (200 << 24) | (1 << 16) | (2 << 8) | 3
    assert unpack_rgb(rgba, alpha=True).tolist() == [1, 2, 3, 200]


def test_rgb_field_in_big_endian_cloud():
    factory = RosbagsFactory()
    data = struct.pack(">fI", 0.0, 0x00A0B0C0)
    layout = [("x", 0, 7, 1), ("rgb", 4, 7, 1)]
    msg = _cloud(factory, layout, data, height=1, width=1, point_step=8, row_step=8, big=True)
    assert unpack_rgb(cloud_to_array(msg)["rgb"]).tolist() == [[0xA0, 0xB0, 0xC0]]
    assert unpack_rgb(cloud_to_columns(msg)["rgb"]).tolist() == [[0xA0, 0xB0, 0xC0]]


# --- bad input ------------------------------------------------------------------------------------


def _bad(**overrides):
    factory = RosbagsFactory()
    geometry = dict(height=1, width=2, point_step=16, row_step=32)
    layout = overrides.pop("layout", [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)])
    data = overrides.pop("data", bytes(32))
    geometry.update(overrides)
    return _cloud(factory, layout, data, **geometry)


@pytest.mark.parametrize("msg_kwargs, match", [
    (dict(data=bytes(31)), r"31 bytes but row_step \* height = 32 \* 1 = 32"),
    (dict(data=bytes(40)), r"40 bytes but row_step \* height"),
    (dict(row_step=24, data=bytes(24)), r"row_step 24 is smaller than width \* point_step = 2 \* 16 = 32"),
    (dict(layout=[("x", 0, 8, 1)], point_step=4, row_step=8, data=bytes(8)),
     r"'x' \(offset 0, 1 x FLOAT64 = 8 bytes\) extends past point_step 4"),
    (dict(layout=[("x", 12, 7, 1), ("y", 14, 4, 2)]), r"'y' .* extends past point_step 16"),
    (dict(layout=[("x", 0, 9, 1)]), r"datatype 9, which is not supported; supported: 1 \(INT8\), .*8 \(FLOAT64\)"),
    (dict(layout=[("x", 0, 0, 1)]), r"datatype 0, which is not supported"),
    (dict(layout=[("x", 0, 7, 0)]), r"'x' has count 0; count must be >= 1"),
    (dict(layout=[("x", 0, 7, 1), ("x", 4, 7, 1)]), r"'x' appears more than once"),
    (dict(layout=[], point_step=0, row_step=0, data=b""), r"point_step is 0 with 2 points"),
])
def test_bad_clouds_raise(msg_kwargs, match):
    msg = _bad(**msg_kwargs)
    for decode in (cloud_to_array, cloud_to_columns, cloud_to_xyz):
        with pytest.raises(ConversionError, match=match):
            decode(msg)


def test_missing_fields_are_named():
    msg = _bad(layout=[("x", 0, 7, 1), ("intensity", 4, 7, 1)])
    with pytest.raises(ConversionError, match=r"needs field\(s\) \['y', 'z'\]; the cloud has fields \['x', 'intensity'\]"):
        cloud_to_xyz(msg)
    with pytest.raises(ConversionError, match=r"needs field\(s\) \['ring'\]; the cloud has fields"):
        cloud_to_columns(msg, ["x", "ring"])


def test_bad_arrays_raise():
    with pytest.raises(ConversionError, match="needs a structured array .* got dtype float32 .*xyz_to_cloud"):
        array_to_cloud(np.zeros((4, 3), np.float32))
    with pytest.raises(ConversionError, match=r"shape \(N,\) or \(height, width\); got shape \(1, 2, 3\)"):
        array_to_cloud(np.zeros((1, 2, 3), [("x", "<f4")]))
    with pytest.raises(ConversionError, match=r"'t' has dtype int64, which PointField cannot hold; supported: int8"):
        array_to_cloud(np.zeros(2, [("x", "<f4"), ("t", "<i8")]))
    with pytest.raises(ConversionError, match="mixes byte orders"):
        array_to_cloud(np.zeros(2, [("x", "<f4"), ("y", ">f4")]))
    with pytest.raises(ConversionError, match=r"points of shape \(N, 3\) or \(height, width, 3\); got \(4, 2\)"):
        xyz_to_cloud(np.zeros((4, 2)))
    with pytest.raises(ConversionError, match=r"'ring' has shape \(3,\); it must be \(4,\) or \(4,\) \+ \(count,\)"):
        xyz_to_cloud(np.zeros((4, 3)), ring=np.zeros(3, np.uint16))
    with pytest.raises(ConversionError, match="'flag' has dtype bool"):
        xyz_to_cloud(np.zeros((4, 3)), flag=np.zeros(4, bool))
    with pytest.raises(ConversionError, match="clashes with the coordinates"):
        xyz_to_cloud(np.zeros((4, 3)), x=np.zeros(4, np.float32))
    with pytest.raises(ConversionError, match="float32 \\(rgb\\) or uint32 \\(rgba\\) values; got dtype float64"):
        unpack_rgb(np.zeros(3))
    with pytest.raises(ConversionError, match="'g' has values outside 0-255"):
        pack_rgb(0, 256, 0)


def test_cloud_dtype_layout():
    factory = RosbagsFactory()
    dtype = cloud_dtype(_fields(factory, [("b", 8, 4, 1), ("a", 0, 8, 1)]), 16, is_bigendian=True)
    assert dtype.itemsize == 16
    assert dtype.fields["a"][:2] == (np.dtype(">f8"), 0)
    assert dtype.fields["b"][:2] == (np.dtype(">u2"), 8)


def test_xyz_with_several_values_a_point_is_refused():
    factory = RosbagsFactory()
    layout = [("x", 0, 7, 2), ("y", 8, 7, 1), ("z", 12, 7, 1)]
    msg = _cloud(factory, layout, bytes(32), height=1, width=2, point_step=16, row_step=32)
    assert cloud_to_array(msg)["x"].shape == (2, 2)  # a valid cloud, just not one with a point per x, y, z
    with pytest.raises(ConversionError, match=r"cloud_to_xyz needs one value per point in field\(s\) \['x'\], "
                                              r"which have count\(s\) \[2\]; accepted: count 1"):
        cloud_to_xyz(msg)


@pytest.mark.parametrize("point_step", [2**31, 2**32 - 1])
def test_point_step_beyond_numpy_itemsize_is_refused(point_step):
    msg = _cloud(RosbagsFactory(), [("x", 0, 7, 1)], b"", height=0, width=1, point_step=point_step,
                 row_step=point_step)
    with pytest.raises(ConversionError, match=rf"point_step {point_step} is too large; accepted: up to 2147483647"):
        cloud_to_array(msg)
