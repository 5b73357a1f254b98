"""sensor_msgs/PointCloud2 ⇄ numpy structured arrays, with fast column paths for LiDAR layouts."""
from __future__ import annotations

import functools
import sys
from typing import Any, Iterable

import cv2
import numpy as np

from .errors import ConversionError
from .messages import MessageFactory, RosbagsFactory, as_bytes, make_header

# sensor_msgs/PointField datatype constants.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)

# PointField datatype → (name, numpy dtype without byte order).
POINTFIELD_DTYPES: dict[int, tuple[str, np.dtype]] = {
    INT8: ("INT8", np.dtype("i1")),
    UINT8: ("UINT8", np.dtype("u1")),
    INT16: ("INT16", np.dtype("i2")),
    UINT16: ("UINT16", np.dtype("u2")),
    INT32: ("INT32", np.dtype("i4")),
    UINT32: ("UINT32", np.dtype("u4")),
    FLOAT32: ("FLOAT32", np.dtype("f4")),
    FLOAT64: ("FLOAT64", np.dtype("f8")),
}
_DATATYPE_OF = {(dtype.kind, dtype.itemsize): code for code, (_, dtype) in POINTFIELD_DTYPES.items()}
_SUPPORTED = ", ".join(f"{code} ({name})" for code, (name, _) in POINTFIELD_DTYPES.items())
_SUPPORTED_NUMPY = "int8, uint8, int16, uint16, int32, uint32, float32, float64 (or fixed sub-arrays of them)"

# PCL (and the PCD format) name padding fields "_"; they are bytes to skip, not data.
_PADDING_NAMES = ("", "_")
_LITTLE_HOST = sys.byteorder == "little"
_TYPENAME = "sensor_msgs/msg/PointCloud2"
_CV_MAX_CHANNELS = 512  # OpenCV's CV_CN_MAX, not exported by the cv2 module
_MAX_POINT_STEP = 2**31 - 1  # numpy keeps a dtype's itemsize in a C int


def cloud_dtype(fields: Iterable[Any], point_step: int, is_bigendian: bool = False) -> np.dtype:
    """The structured dtype of one point: each PointField at its offset, itemsize `point_step`.

    Fields named "_" or "" (PCL's padding convention) are left out; their bytes stay in the
    itemsize. A field with count > 1 becomes a sub-array field. Overlapping fields are allowed and
    read like a C union (each field decodes its own bytes).

    Args:
        fields: sensor_msgs/PointField messages of either world.
        point_step: bytes per point.
        is_bigendian: byte order of the multi-byte fields.

    Returns:
        A numpy structured dtype with explicit offsets and itemsize == point_step.

    Raises:
        ConversionError: unsupported datatype, count < 1, duplicate names, a field that extends
            past point_step, or point_step beyond 2**31 - 1 bytes.
    """
    if point_step > _MAX_POINT_STEP:
        raise ConversionError(f"PointCloud2 point_step {point_step} is too large; accepted: up to {_MAX_POINT_STEP} bytes")
    order = ">" if is_bigendian else "<"
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    for field in fields:
        name, offset = str(field.name), int(field.offset)
        datatype, count = int(field.datatype), int(field.count)
        if name in _PADDING_NAMES:
            continue
        if datatype not in POINTFIELD_DTYPES:
            raise ConversionError(f"PointField {name!r} has datatype {datatype}, which is not supported; supported: {_SUPPORTED}")
        if count < 1:
            raise ConversionError(f"PointField {name!r} has count {count}; count must be >= 1")
        if name in names:
            raise ConversionError(f"PointField name {name!r} appears more than once; field names must be unique")
        type_name, base = POINTFIELD_DTYPES[datatype]
        size = base.itemsize * count
        if offset < 0 or offset + size > point_step:
            raise ConversionError(
                f"PointField {name!r} (offset {offset}, {count} x {type_name} = {size} bytes) extends past "
                f"point_step {point_step}; every field must lie within [0, point_step)"
            )
        base = base.newbyteorder(order)
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})


def _geometry(msg: Any) -> tuple[int, int, int, int]:
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height < 0 or width < 0:
        raise ConversionError(f"PointCloud2 height {height} x width {width}; both must be >= 0")
    if point_step < 1 and height * width > 0:
        raise ConversionError(f"PointCloud2 point_step is {point_step} with {height * width} points; it must be >= 1")
    if row_step < width * point_step:
        raise ConversionError(
            f"PointCloud2 row_step {row_step} is smaller than width * point_step = {width} * {point_step} = "
            f"{width * point_step}; row_step must be >= width * point_step"
        )
    return height, width, point_step, row_step


def _cloud_view(msg: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """(structured view of shape (height, width), raw bytes, geometry), validating the message."""
    height, width, point_step, row_step = _geometry(msg)
    dtype = cloud_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    data = as_bytes(msg.data)
    if data.size != row_step * height:
        raise ConversionError(
            f"PointCloud2 data has {data.size} bytes but row_step * height = {row_step} * {height} = "
            f"{row_step * height}; they must match"
        )
    view = np.ndarray((height, width), dtype=dtype, buffer=data, strides=(row_step, point_step))
    return view, data, (height, width, point_step, row_step)


def _shape(view: np.ndarray) -> np.ndarray:
    return view[0] if view.shape[0] == 1 else view


def cloud_to_array(msg: Any) -> np.ndarray:
    """A PointCloud2 as a structured numpy array, zero-copy.

    The array is a strided view of `msg.data` for every valid layout (padding inside a point,
    point_step slack, row padding, any byte order): it never copies, and it is read-only when the
    message's buffer is. Fields keep the message's byte order; `.astype` a field to get native
    order. Use `cloud_to_columns` for contiguous native copies.

    Args:
        msg: a sensor_msgs/PointCloud2 of either world.

    Returns:
        Shape (width,) when height == 1, else (height, width); one named field per PointField
        (sub-array fields for count > 1).

    Raises:
        ConversionError: see `cloud_dtype`; also a data length that is not row_step * height,
            row_step < width * point_step, or point_step 0 for a non-empty cloud.
    """
    view, _, _ = _cloud_view(msg)
    return _shape(view)


def _field_datatype(name: str, dtype: np.dtype) -> tuple[int, int]:
    base, shape = dtype.base, dtype.shape
    code = _DATATYPE_OF.get((base.kind, base.itemsize)) if base.names is None else None
    if code is None:
        raise ConversionError(f"field {name!r} has dtype {dtype}, which PointField cannot hold; supported: {_SUPPORTED_NUMPY}")
    return code, int(np.prod(shape, dtype=np.int64)) if shape else 1


def _byte_order_is_big(dtype: np.dtype) -> bool:
    orders = set()
    for name in dtype.names or ():
        base = dtype.fields[name][0].base
        if base.itemsize > 1:
            orders.add(base.byteorder if base.byteorder in "<>" else ("<" if _LITTLE_HOST else ">"))
    if len(orders) > 1:
        raise ConversionError(f"structured dtype {dtype} mixes byte orders; PointCloud2 has one: use all '<' or all '>'")
    return orders == {">"}


def _dense(array: np.ndarray) -> bool:
    for name in ("x", "y", "z"):
        if name in (array.dtype.names or ()) and array.dtype.fields[name][0].base.kind == "f":
            if not np.isfinite(array[name]).all():
                return False
    return True


def array_to_cloud(
    array: np.ndarray,
    *,
    header: Any | None = None,
    stamp_ns: int = 0,
    frame_id: str = "",
    is_dense: bool | None = None,
    factory: MessageFactory | None = None,
) -> Any:
    """A structured numpy array as a PointCloud2.

    Every named field becomes a PointField at its dtype offset (sub-array fields give count > 1);
    point_step is the dtype's itemsize, so padding in the dtype is kept. Padding between rows is
    not written (row_step = width * point_step). A C-contiguous array is handed to the factory
    without a copy (the rosbags world then shares memory with `array`); anything else, e.g. a
    `cloud_to_array` view of a row-padded cloud, is copied once, padding bytes included.

    Args:
        array: structured array of shape (N,) (height 1) or (height, width) (organised).
        header: an existing std_msgs/Header of the factory's world; else one is made from
            `stamp_ns` and `frame_id`.
        stamp_ns: header stamp in nanoseconds when `header` is None.
        frame_id: header frame when `header` is None.
        is_dense: written as given; None computes it (one pass over the points, about as long as
            copying them): True when every float x, y, z is finite.
        factory: message world; default `RosbagsFactory()`.

    Returns:
        A sensor_msgs/PointCloud2 of the factory's world; is_bigendian follows the dtype.

    Raises:
        ConversionError: not a structured array, not 1-D or 2-D, a field type PointField cannot
            hold, or fields with different byte orders.
    """
    array = np.asarray(array)
    if array.dtype.names is None:
        raise ConversionError(
            f"array_to_cloud needs a structured array with named fields; got dtype {array.dtype} "
            "(use xyz_to_cloud for an (N, 3) array of points)"
        )
    if array.ndim not in (1, 2):
        raise ConversionError(f"array_to_cloud needs shape (N,) or (height, width); got shape {array.shape}")
    factory = factory if factory is not None else RosbagsFactory()
    height, width = (1, array.shape[0]) if array.ndim == 1 else array.shape
    dtype = array.dtype
    big = _byte_order_is_big(dtype)
    layout = []
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        datatype, count = _field_datatype(name, field_dtype)
        layout.append((offset, name, datatype, count))
    fields = [
        factory.make("sensor_msgs/msg/PointField", name=name, offset=offset, datatype=datatype, count=count)
        for offset, name, datatype, count in sorted(layout, key=lambda item: item[0])
    ]
    # Copied as raw records so that padding and unnamed bytes travel too (a structured copy zeroes them).
    raw = array.view(np.dtype((np.void, dtype.itemsize)))
    data = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    if header is None:
        header = make_header(factory, stamp_ns, frame_id)
    return factory.make(
        _TYPENAME,
        header=header,
        height=height,
        width=width,
        fields=fields,
        is_bigendian=big,
        point_step=dtype.itemsize,
        row_step=width * dtype.itemsize,
        data=data,
        is_dense=_dense(array) if is_dense is None else bool(is_dense),
    )


def _require_fields(dtype: np.dtype, wanted: Iterable[str], purpose: str, *, scalar: bool = False) -> None:
    """Raise unless `dtype` has the fields `wanted` (each with count 1 when `scalar`)."""
    wanted = list(wanted)
    missing = [name for name in wanted if name not in dtype.names]
    if missing:
        raise ConversionError(f"{purpose} needs field(s) {missing}; the cloud has fields {list(dtype.names)}")
    arrays = [name for name in wanted if scalar and dtype.fields[name][0].shape]
    if arrays:
        counts = [int(np.prod(dtype.fields[name][0].shape)) for name in arrays]
        raise ConversionError(f"{purpose} needs one value per point in field(s) {arrays}, which have count(s) "
                              f"{counts}; accepted: count 1")


def require_scalar_fields(cloud: np.ndarray, wanted: Iterable[str], purpose: str) -> None:
    """Raise ConversionError unless the structured `cloud` has the fields `wanted`, each with count 1."""
    _require_fields(cloud.dtype, wanted, purpose, scalar=True)


def _packed_words(data: np.ndarray, geometry: tuple[int, int, int, int]) -> np.ndarray | None:
    """The cloud as an (N, point_step / 4) int32 matrix, when its layout allows one without copying."""
    height, width, point_step, row_step = geometry
    if not _LITTLE_HOST or point_step % 4 or (height > 1 and row_step != width * point_step) or height * width == 0:
        return None
    return np.ndarray((height * width, point_step // 4), dtype=np.int32, buffer=data, strides=(point_step, 4))


def cloud_to_xyz(msg: Any, *, skip_nans: bool = True) -> np.ndarray:
    """The x, y, z fields of a PointCloud2 as an (N, 3) float32 array (a copy), organised clouds flattened.

    x, y, z as three little-endian FLOAT32 fields one after another (every common LiDAR driver)
    take one OpenCV channel gather, about as fast as copying the message's bytes; any other types
    or byte order are converted to float32 column by column.

    Args:
        msg: a sensor_msgs/PointCloud2 of either world.
        skip_nans: drop points with NaN in x, y or z (as sensor_msgs_py's read_points does).

    Returns:
        float32 array of shape (N, 3), N = height * width minus the dropped points, row-major.

    Raises:
        ConversionError: x, y or z missing (the message names the fields present) or with count
            other than 1, or any error of `cloud_to_array`.
    """
    view, data, geometry = _cloud_view(msg)
    dtype = view.dtype
    _require_fields(dtype, ("x", "y", "z"), "cloud_to_xyz", scalar=True)
    height, width, point_step, _ = geometry
    (tx, ox), (ty, oy), (tz, oz) = (dtype.fields[name][:2] for name in ("x", "y", "z"))
    words = _packed_words(data, geometry)
    float32 = np.dtype("<f4")
    if (
        words is not None
        and tx == ty == tz == float32
        and ox % 4 == 0
        and oy == ox + 4
        and oz == ox + 8
        and words.shape[1] <= _CV_MAX_CHANNELS
    ):
        # OpenCV's blocked channel gather beats numpy's strided copies (~2x on 32-byte points).
        out = np.empty((height * width, 1, 3), dtype=np.int32)
        source = words.reshape(-1, 1, words.shape[1])
        first = ox // 4
        cv2.mixChannels([source], [out], [first, 0, first + 1, 1, first + 2, 2])
        xyz = out.reshape(-1, 3).view(np.float32)
    else:
        xyz = np.empty((height, width, 3), dtype=np.float32)
        # float64 beyond float32's range becomes ±inf and signalling NaNs become quiet ones, as IEEE
        # casting says; a node should not log a warning per message for that.
        with np.errstate(over="ignore", invalid="ignore"):
            for axis, name in enumerate(("x", "y", "z")):
                xyz[..., axis] = view[name]
        xyz = xyz.reshape(-1, 3)
    # min propagates NaN: one vectorised pass decides whether any point must go. Those are dropped in
    # place in one compiled pass: an isnan over (N, 3), its any() and a boolean-mask copy took ~2x
    # sensor_msgs_py's whole read_points_numpy on a sweep with NaN returns.
    if skip_nans and xyz.size and np.isnan(xyz.min()):
        xyz = xyz[:_compiled_drop_nan_rows()(xyz)]
    return xyz


@functools.cache
def _compiled_drop_nan_rows() -> Any:
    """`_drop_nan_rows` compiled with numba, on first use (importing numba costs half a second)."""
    from numba import njit

    return njit(cache=True, boundscheck=False)(_drop_nan_rows)


def _drop_nan_rows(xyz):
    """Move the rows of the (N, 3) array `xyz` without NaN to its front, in order; return how many.
    Each row is written and the count advances only when it is kept: no branch per point."""
    count = 0
    for i in range(xyz.shape[0]):
        x, y, z = xyz[i, 0], xyz[i, 1], xyz[i, 2]
        xyz[count, 0], xyz[count, 1], xyz[count, 2] = x, y, z
        count += (x == x) & (y == y) & (z == z)
    return count


def cloud_to_columns(msg: Any, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Fields of a PointCloud2 as separate C-contiguous, native-byte-order, writable arrays.

    Always copies (use `cloud_to_array` for zero-copy strided views). When at least two of the
    requested fields are 1-, 2- or 4-byte scalars and the points are packed in whole 32-bit words
    (point_step % 4 == 0, no row padding; Ouster and Velodyne drivers do), the points are
    transposed once with OpenCV and each field is a row of the result (sub-word fields such as a
    uint16 ring are cut out of their word), which reads the message once instead of once per field.
    Other fields (float64, count > 1, unusual layouts) are one numpy strided copy each. Columns may
    share one allocation.

    Args:
        msg: a sensor_msgs/PointCloud2 of either world.
        names: fields to return, in order; None returns every field.

    Returns:
        name → array of shape (width,) or (height, width) like `cloud_to_array`, plus (count,)
        for sub-array fields, in the field's type with native byte order.

    Raises:
        ConversionError: a requested field is missing (the message names the fields present), or
            any error of `cloud_to_array`.
    """
    view, data, geometry = _cloud_view(msg)
    dtype = view.dtype
    names = list(dtype.names) if names is None else list(names)
    _require_fields(dtype, names, "cloud_to_columns")
    shape = _shape(view).shape
    columns: dict[str, np.ndarray] = {}

    words = _packed_words(data, geometry)
    in_word = []
    for name in names:
        field_dtype, offset = dtype.fields[name][:2]
        size = field_dtype.itemsize
        if not field_dtype.shape and size in (1, 2, 4) and offset % size == 0:
            in_word.append((name, field_dtype, offset))
    if words is not None and len(in_word) >= 2:
        first = min(offset for _, _, offset in in_word) // 4
        last = max(offset for _, _, offset in in_word) // 4
        # cv2.transpose is cache-blocked: one pass over the bytes instead of one per field.
        rows = cv2.transpose(words[:, first : last + 1]).view(np.uint32)
        for name, field_dtype, offset in in_word:
            row = rows[offset // 4 - first]
            shift = 8 * (offset % 4)
            if field_dtype.itemsize < 4:
                # Little-endian host: the field's bytes are the word's low bytes after the shift.
                row = (row >> shift if shift else row).astype(f"u{field_dtype.itemsize}")
            column = row.view(field_dtype)
            if not field_dtype.isnative:
                column = column.astype(field_dtype.newbyteorder("="))
            columns[name] = column.reshape(shape)

    for name in names:
        if name not in columns:
            field_dtype = dtype.fields[name][0]
            native = field_dtype.base.newbyteorder("=")
            columns[name] = np.array(_shape(view)[name], dtype=native, order="C", copy=True)
    return {name: columns[name] for name in names}


def xyz_to_cloud(
    points: np.ndarray,
    *,
    header: Any | None = None,
    stamp_ns: int = 0,
    frame_id: str = "",
    is_dense: bool | None = None,
    factory: MessageFactory | None = None,
    **extra_fields: np.ndarray,
) -> Any:
    """Points (and optional per-point fields) as a PointCloud2 with FLOAT32 x, y, z.

    The point layout is packed: x, y, z at offsets 0, 4, 8, then each extra field in the order
    given, in its own dtype (`intensity=np.float32 array`, `ring=np.uint16 array`, ...).

    Args:
        points: (N, 3) or organised (height, width, 3) coordinates; cast to float32.
        header, stamp_ns, frame_id, is_dense, factory: as for `array_to_cloud`.
        **extra_fields: name → array of shape points.shape[:-1], or that plus (count,) for a
            field with count > 1; dtype one that PointField can hold.

    Returns:
        A sensor_msgs/PointCloud2 of the factory's world.

    Raises:
        ConversionError: points not (N, 3) or (H, W, 3), an extra field of the wrong shape or an
            unsupported dtype, or an extra field named x, y or z.
    """
    points = np.asarray(points)
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise ConversionError(f"xyz_to_cloud needs points of shape (N, 3) or (height, width, 3); got {points.shape}")
    lead = points.shape[:-1]
    layout: list[tuple[str, Any]] = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    extras = {}
    for name, values in extra_fields.items():
        values = np.asarray(values)
        if name in ("x", "y", "z"):
            raise ConversionError(f"extra field {name!r} clashes with the coordinates; name it anything but x, y, z")
        if values.shape[: len(lead)] != lead or values.ndim > len(lead) + 1:
            raise ConversionError(
                f"extra field {name!r} has shape {values.shape}; it must be {lead} or {lead} + (count,)"
            )
        _field_datatype(name, values.dtype)
        # Little-endian like x, y, z: one PointCloud2 has one byte order.
        base = values.dtype.newbyteorder("<") if values.dtype.itemsize > 1 else values.dtype
        layout.append((name, base, values.shape[len(lead) :]) if values.ndim > len(lead) else (name, base))
        extras[name] = values
    array = np.empty(lead, dtype=np.dtype(layout))
    for axis, name in enumerate(("x", "y", "z")):
        array[name] = points[..., axis]
    for name, values in extras.items():
        array[name] = values
    return array_to_cloud(array, header=header, stamp_ns=stamp_ns, frame_id=frame_id, is_dense=is_dense, factory=factory)


def pack_rgb(r: Any, g: Any, b: Any, a: Any | None = None) -> np.ndarray:
    """Colours packed the PCL way: 0xAARRGGBB in a uint32, reinterpreted as float32.

    PCL's `rgb` field is FLOAT32 with alpha 0 (or 255 from newer PCL); its `rgba` field holds the
    same bits as UINT32. `.view(np.uint32)` the result for an `rgba` field.

    Args:
        r, g, b: channel values 0-255 (arrays broadcast together, or scalars).
        a: alpha 0-255; None packs 0 in the top byte.

    Returns:
        float32 array of the broadcast shape.

    Raises:
        ConversionError: a channel value outside 0-255.
    """
    channels = [np.asarray(c) for c in (r, g, b, 0 if a is None else a)]
    for label, channel in zip("rgba", channels):
        if channel.size and (channel.min() < 0 or channel.max() > 255):
            raise ConversionError(f"pack_rgb channel {label!r} has values outside 0-255; channels must be 0-255 (uint8)")
    red, green, blue, alpha = (c.astype(np.uint32) for c in channels)
    return ((alpha << 24) | (red << 16) | (green << 8) | blue).astype(np.uint32).view(np.float32)


def unpack_rgb(packed: Any, *, alpha: bool = False) -> np.ndarray:
    """The inverse of `pack_rgb`: packed `rgb` (float32) or `rgba` (uint32) values → uint8 channels.

    Args:
        packed: float32 or uint32 array of any shape and byte order (e.g. `cloud["rgb"]`).
        alpha: also return the top byte as a fourth channel.

    Returns:
        uint8 array of shape packed.shape + (3,) as (r, g, b), or + (4,) as (r, g, b, a).

    Raises:
        ConversionError: packed is neither float32 nor uint32.
    """
    packed = np.asarray(packed)
    if packed.dtype.kind not in "fu" or packed.dtype.itemsize != 4:
        raise ConversionError(f"unpack_rgb needs float32 (rgb) or uint32 (rgba) values; got dtype {packed.dtype}")
    bits = packed.view(np.dtype("u4").newbyteorder(packed.dtype.byteorder)).astype(np.uint32)
    shifts = (16, 8, 0, 24) if alpha else (16, 8, 0)
    return np.stack([(bits >> shift).astype(np.uint8) for shift in shifts], axis=-1)
