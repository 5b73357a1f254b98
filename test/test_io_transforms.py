"""Transforms: quaternion maths against known rotations, Transform/Pose round trips, and the TransformBuffer."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import cdr_roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.io.errors import ConversionError
from seg_perception.io.messages import RosbagsFactory, make_header, stamp_to_ns
from seg_perception.io.transforms import (
    TransformBuffer,
    TransformError,
    matrix_to_pose,
    matrix_to_quaternion,
    matrix_to_transform,
    matrix_to_transform_stamped,
    quaternion_to_matrix,
    slerp,
    transform_to_matrix,
)

S = math.sqrt(0.5)
SEC = 1_000_000_000
PROPERTY = settings(max_examples=80, deadline=None)

# 90° about each axis: (axis, quaternion x y z w, rotation matrix)
QUARTER_TURNS = [
    ("x", [S, 0, 0, S], [[1, 0, 0], [0, 0, -1], [0, 1, 0]]),
    ("y", [0, S, 0, S], [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
    ("z", [0, 0, S, S], [[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
]

unit_quaternion = st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1)


def rot_z(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_x(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def homogeneous(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def hamilton(a, b) -> np.ndarray:
    """Quaternion product a ⊗ b, both (x, y, z, w)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


# --- quaternions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("axis, q, R", QUARTER_TURNS)
def test_quarter_turns_about_each_axis(axis, q, R):
    assert np.allclose(quaternion_to_matrix(q), R, atol=1e-12)
    assert np.allclose(matrix_to_quaternion(R), q, atol=1e-12)
    assert np.allclose(quaternion_to_matrix(np.array(q) * -3.0), R, atol=1e-12)  # scale and sign do not matter


def test_vectorised_over_leading_axes():
    qs = np.array([q for _, q, _ in QUARTER_TURNS]).reshape(3, 1, 4)
    Rs = quaternion_to_matrix(qs)
    assert Rs.shape == (3, 1, 3, 3)
    assert np.allclose(Rs[:, 0], [R for _, _, R in QUARTER_TURNS])
    assert np.allclose(matrix_to_quaternion(Rs), qs)


@pytest.mark.parametrize("axis", [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3]])
def test_half_turns_are_recovered(axis):
    # 180° about n: R = 2 n nᵀ - I, q = ±(n, 0); the trace-only formula fails exactly here.
    n = np.array(axis, dtype=float) / np.linalg.norm(axis)
    q = matrix_to_quaternion(2 * np.outer(n, n) - np.eye(3))
    assert np.allclose(np.abs(q), np.abs(np.append(n, 0.0)), atol=1e-12)
    assert abs(np.dot(q[:3], n)) == pytest.approx(1.0)


@PROPERTY
@given(a=unit_quaternion, b=unit_quaternion, v=st.tuples(*[st.floats(-10, 10)] * 3))
def test_quaternion_identities(a, b, v):
    a, b, v = np.array(a), np.array(b), np.array(v)
    a_unit = a / np.linalg.norm(a)
    Ra = quaternion_to_matrix(a)
    # R(a) v equals a v a* (Hamilton products written out by hand)
    rotated = hamilton(hamilton(a_unit, np.append(v, 0.0)), a_unit * [-1, -1, -1, 1])[:3]
    assert np.allclose(Ra @ v, rotated, atol=1e-9)
    assert np.allclose(Ra @ quaternion_to_matrix(b), quaternion_to_matrix(hamilton(a, b)), atol=1e-9)
    assert np.allclose(Ra.T @ Ra, np.eye(3), atol=1e-12) and np.linalg.det(Ra) == pytest.approx(1.0)
    q = matrix_to_quaternion(Ra)
    assert q[3] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
    assert np.allclose(q, a_unit, atol=1e-9) or np.allclose(q, -a_unit, atol=1e-9)


@PROPERTY
@given(q=unit_quaternion)
def test_against_scipy_rotation(q):
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    reference = rotation.from_quat(q)  # scipy uses (x, y, z, w) too
    assert np.allclose(quaternion_to_matrix(q), reference.as_matrix(), atol=1e-12)
    ours = matrix_to_quaternion(reference.as_matrix())
    theirs = reference.as_quat()
    assert np.allclose(ours, theirs, atol=1e-9) or np.allclose(ours, -theirs, atol=1e-9)


@pytest.mark.parametrize("q, match", [
    ([0, 0, 0, 0], r"quaternion \[0.0, 0.0, 0.0, 0.0\] is invalid; finite values with a norm in \[1e-06, 1e\+06\]"),
    # Squared, these overflow to an infinite norm, which would turn them into the zero quaternion.
    ([1e154, 1e154, 0, 0], r"quaternion \[1e\+154, 1e\+154, 0.0, 0.0\] is invalid"),
    ([1e7, 0, 0, 0], r"quaternion \[10000000.0, 0.0, 0.0, 0.0\] is invalid"),
    ([np.nan, 0, 0, 1], r"quaternion \[nan, 0.0, 0.0, 1.0\] is invalid"),
    ([[0, 0, 0, 1], [0, np.inf, 0, 1]], r"quaternion \[0.0, inf, 0.0, 1.0\] is invalid"),
    ([0, 0, 1], r"shape \(3,\) are invalid; \(\.\.\., 4\) x, y, z, w expected"),
])
def test_invalid_quaternions_raise(q, match):
    with pytest.raises(ConversionError, match=match):
        quaternion_to_matrix(q)


def test_invalid_rotation_matrices_raise():
    with pytest.raises(ConversionError, match=r"shape \(4, 4\) are invalid; \(\.\.\., 3, 3\) expected"):
        matrix_to_quaternion(np.eye(4))
    with pytest.raises(ConversionError, match=r"non-finite"):
        matrix_to_quaternion(np.full((3, 3), np.nan))


# --- messages ------------------------------------------------------------------------------------

T_KNOWN = homogeneous(rot_z(90), [1.0, -2.0, 0.5])


def test_transform_to_matrix_reads_every_shape_of_message(factory):
    quaternion = factory.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=S, w=S)
    transform = factory.make("geometry_msgs/msg/Transform",
                             translation=factory.make("geometry_msgs/msg/Vector3", x=1.0, y=-2.0, z=0.5), rotation=quaternion)
    pose = factory.make("geometry_msgs/msg/Pose",
                        position=factory.make("geometry_msgs/msg/Point", x=1.0, y=-2.0, z=0.5), orientation=quaternion)
    stamped = factory.make("geometry_msgs/msg/TransformStamped", transform=transform)
    pose_stamped = factory.make("geometry_msgs/msg/PoseStamped", pose=pose)
    with_covariance = factory.make("geometry_msgs/msg/PoseWithCovarianceStamped",
                                   pose=factory.make("geometry_msgs/msg/PoseWithCovariance", pose=pose))
    for msg in (transform, pose, stamped, pose_stamped, with_covariance):
        assert np.allclose(transform_to_matrix(msg), T_KNOWN, atol=1e-12)


def test_transform_stamped_round_trip_through_cdr(factory):
    T = homogeneous(rot_x(-30) @ rot_z(120), [0.25, 1.5, -3.0])
    msg = matrix_to_transform_stamped(T, "base_link", "camera", 1_700_000_000_000_000_007, factory=factory)
    wire = cdr_roundtrip(msg, "geometry_msgs/msg/TransformStamped")
    assert (wire.header.frame_id, wire.child_frame_id) == ("base_link", "camera")
    assert stamp_to_ns(wire.header.stamp) == 1_700_000_000_000_000_007
    assert (wire.transform.translation.x, wire.transform.translation.y, wire.transform.translation.z) == (0.25, 1.5, -3.0)
    assert np.allclose(transform_to_matrix(wire), T, atol=1e-12)
    assert np.allclose(transform_to_matrix(msg), T, atol=1e-12)


def test_transform_and_pose_round_trip_through_cdr(factory):
    wire = cdr_roundtrip(matrix_to_transform(T_KNOWN, factory=factory), "geometry_msgs/msg/Transform")
    rotation = wire.rotation
    assert np.allclose([rotation.x, rotation.y, rotation.z, rotation.w], [0, 0, S, S])
    assert np.allclose(transform_to_matrix(wire), T_KNOWN)
    wire = cdr_roundtrip(matrix_to_pose(T_KNOWN, factory=factory), "geometry_msgs/msg/Pose")
    assert (wire.position.x, wire.position.y, wire.position.z) == (1.0, -2.0, 0.5)
    assert np.allclose(transform_to_matrix(wire), T_KNOWN)


@pytest.mark.parametrize("T, match", [
    (np.eye(3), r"shape \(3, 3\) is invalid; a 4x4 homogeneous matrix expected"),
    (np.full((4, 4), np.nan), r"non-finite values"),
    (np.eye(4) + np.diag([0, 0, 0, 1.0]), r"bottom row is \[0.0, 0.0, 0.0, 2.0\]; \[0, 0, 0, 1\] expected"),
    (np.diag([2.0, 2.0, 2.0, 1.0]), r"not a rotation .*orthonormal R with det \+1"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), r"not a rotation .*det = -1"),
])
def test_invalid_matrices_raise(T, match):
    with pytest.raises(ConversionError, match=match):
        matrix_to_transform(T)
    with pytest.raises(ConversionError, match=match):
        TransformBuffer().set_transform(T, "a", "b", 1)


def test_invalid_messages_raise(factory):
    with pytest.raises(ConversionError, match=r"holds no transform; geometry_msgs Transform, TransformStamped, Pose"):
        transform_to_matrix(make_header(factory, 0, "x"))
    zero = factory.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=0.0)  # rclpy's default w is 1
    broken = factory.make("geometry_msgs/msg/Transform", rotation=zero)
    with pytest.raises(ConversionError, match=r"quaternion \[0.0, 0.0, 0.0, 0.0\] is invalid"):
        transform_to_matrix(broken)


@pytest.mark.parametrize("q", [(0.0, 0.0, 0.0, 0.0), (1e154, 0.0, 0.0, 1e154), (0.0, np.nan, 0.0, 1.0)])
def test_buffer_refuses_unusable_quaternions(factory, q):
    rotation = factory.make("geometry_msgs/msg/Quaternion", x=q[0], y=q[1], z=q[2], w=q[3])
    stamped = factory.make("geometry_msgs/msg/TransformStamped", header=make_header(factory, 1, "a"), child_frame_id="b",
                           transform=factory.make("geometry_msgs/msg/Transform", rotation=rotation))
    buffer = TransformBuffer()
    with pytest.raises(ConversionError, match=r"rotation of a -> b .* is invalid; finite values with a norm in"):
        buffer.set_transform(stamped)
    assert buffer.frames == []


# --- the buffer ----------------------------------------------------------------------------------

T_MAP_ODOM = homogeneous(rot_z(90), [10.0, 0.0, 0.0])
T_BASE_CAMERA = homogeneous(rot_z(-90) @ rot_x(-90), [0.5, 0.0, 1.2])  # REP 103 body → optical
T_BASE_LIDAR = homogeneous(rot_z(180), [0.0, 0.0, 1.8])


def T_odom_base(t_sec: float) -> np.ndarray:
    """The robot drives along odom x at 1 m/s without turning."""
    return homogeneous(np.eye(3), [t_sec, 0.0, 0.0])


def _tree() -> TransformBuffer:
    buffer = TransformBuffer()
    buffer.set_transform(T_MAP_ODOM, "map", "odom", static=True)
    buffer.set_transform(T_BASE_CAMERA, "base_link", "camera", static=True)
    buffer.set_transform(T_BASE_LIDAR, "/base_link", "lidar", static=True)
    for i in range(11):  # 1.0 s .. 3.0 s at 5 Hz
        stamp = SEC + i * SEC // 5
        buffer.set_transform(T_odom_base(stamp / SEC), "odom", "base_link", stamp)
    return buffer


def test_lookup_composes_the_chain_through_the_common_ancestor():
    buffer = _tree()
    at = 2 * SEC
    T_map_camera = T_MAP_ODOM @ T_odom_base(2.0) @ T_BASE_CAMERA
    assert np.allclose(buffer.lookup("map", "camera", at), T_map_camera)
    assert np.allclose(buffer.lookup("camera", "map", at), np.linalg.inv(T_map_camera))
    assert np.allclose(buffer.lookup("camera", "lidar", at), np.linalg.inv(T_BASE_CAMERA) @ T_BASE_LIDAR)
    assert np.allclose(buffer.lookup("odom", "lidar", at), T_odom_base(2.0) @ T_BASE_LIDAR)
    assert np.array_equal(buffer.lookup("lidar", "/lidar", at), np.eye(4))
    # A point 2 m in front of the camera (optical z): 2 m ahead of the robot, 1.2 m up; the robot at
    # odom x = 2 is at map (10, 2) facing map +y, so the point is at map (10, 2 + 0.5 + 2, 1.2).
    point = buffer.lookup("map", "camera", at) @ [0.0, 0.0, 2.0, 1.0]
    assert np.allclose(point[:3], [10.0, 4.5, 1.2])


def test_static_edges_hold_at_all_times():
    buffer = _tree()
    for stamp in (1, 5 * SEC, 10**18):
        assert np.allclose(buffer.lookup("base_link", "lidar", stamp), T_BASE_LIDAR)
    assert np.allclose(buffer.lookup("base_link", "lidar"), T_BASE_LIDAR)


def test_interpolation_midpoint_is_the_hand_computed_slerp():
    buffer = TransformBuffer()
    buffer.set_transform(homogeneous(rot_z(90), [0, 0, 0]), "odom", "base_link", 1 * SEC)
    buffer.set_transform(homogeneous(rot_x(90), [2.0, 4.0, -6.0]), "odom", "base_link", 3 * SEC)
    # The slerp midpoint of unit quaternions is their normalised sum:
    # (0, 0, s, s) + (s, 0, 0, s) = (s, 0, s, 2s) → (1, 0, 1, 2) / √6.
    expected = homogeneous(quaternion_to_matrix(np.array([1, 0, 1, 2]) / math.sqrt(6)), [1.0, 2.0, -3.0])
    assert np.allclose(buffer.lookup("odom", "base_link", 2 * SEC), expected, atol=1e-12)
    # A quarter of the way between 0° and 90° about z is 22.5°.
    buffer.set_transform(homogeneous(np.eye(3), [0, 0, 0]), "odom", "base_link", 5 * SEC)
    buffer.set_transform(homogeneous(rot_z(90), [4.0, 0, 0]), "odom", "base_link", 7 * SEC)
    assert np.allclose(buffer.lookup("odom", "base_link", 5 * SEC + SEC // 2), homogeneous(rot_z(22.5), [1.0, 0, 0]))


def test_slerp_takes_the_shorter_arc():
    q0, q1 = np.array([0, 0, 0, 1.0]), np.array([0, 0, S, S])
    half = np.array([0, 0, math.sin(math.pi / 8), math.cos(math.pi / 8)])
    assert np.allclose(slerp(q0, q1, 0.5), half)
    assert np.allclose(slerp(q0, -q1, 0.5), half)  # -q1 is the same rotation
    assert np.allclose(slerp(q0, q0 * -1, 0.3), q0)


def test_stamp_zero_is_the_latest_common_time():
    buffer = _tree()
    for i in range(5):  # a moving camera mount from 0.5 s to 2.5 s
        stamp = SEC // 2 + i * SEC // 2
        buffer.set_transform(homogeneous(np.eye(3), [0.0, 0.0, stamp / SEC]), "base_link", "camera", stamp)
    expected = T_MAP_ODOM @ T_odom_base(2.5) @ homogeneous(np.eye(3), [0.0, 0.0, 2.5])
    assert np.allclose(buffer.lookup("map", "camera", 0), expected)
    assert np.allclose(buffer.lookup("map", "odom"), T_MAP_ODOM)


def test_unknown_and_disconnected_frames_say_what_is_known():
    buffer = _tree()
    with pytest.raises(TransformError, match=r"lookup 'map' <- 'nope' at t=2.000000000 s: frame 'nope' is unknown; "
                                             r"known frames: base_link, camera, lidar, map, odom"):
        buffer.lookup("map", "nope", 2 * SEC)
    buffer.set_transform(np.eye(4), "world", "other", static=True)
    with pytest.raises(TransformError, match=r"not connected: 'other' is in the tree rooted at 'world', "
                                             r"'camera' in the tree rooted at 'map'"):
        buffer.lookup("camera", "other", 2 * SEC)
    assert not buffer.can_transform("camera", "other", 2 * SEC)
    assert buffer.can_transform("map", "camera", 2 * SEC)
    with pytest.raises(TransformError, match=r"known frames: none"):
        TransformBuffer().lookup("a", "a")


def test_extrapolation_errors_give_the_held_range():
    buffer = _tree()
    with pytest.raises(TransformError, match=r"lookup 'map' <- 'camera' at t=3.500000000 s: extrapolation into the future: "
                                             r"requested t=3.500000000 s, newest for odom->base_link is 3.000000000 s "
                                             r"\(11 stamp\(s\) held, 1.000000000 s to 3.000000000 s\)"):
        buffer.lookup("map", "camera", 3 * SEC + SEC // 2)
    with pytest.raises(TransformError, match=r"extrapolation into the past: requested t=0.999999999 s, "
                                             r"oldest for odom->base_link is 1.000000000 s"):
        buffer.lookup("lidar", "odom", SEC - 1)
    assert not buffer.can_transform("map", "camera", 4 * SEC)


def test_extrapolation_tolerance_uses_the_nearest_stamp():
    buffer = TransformBuffer(extrapolation_tolerance_ns=50_000_000)
    buffer.set_transform(T_odom_base(1.0), "odom", "base_link", SEC)
    buffer.set_transform(T_odom_base(2.0), "odom", "base_link", 2 * SEC)
    assert np.allclose(buffer.lookup("odom", "base_link", 2 * SEC + 40_000_000), T_odom_base(2.0))
    assert np.allclose(buffer.lookup("odom", "base_link", SEC - 50_000_000), T_odom_base(1.0))
    with pytest.raises(TransformError, match=r"extrapolation into the future: requested t=2.060000000 s"):
        buffer.lookup("odom", "base_link", 2 * SEC + 60_000_000)


def test_a_single_stamp_answers_only_at_that_stamp():
    buffer = TransformBuffer()
    buffer.set_transform(T_odom_base(1.0), "odom", "base_link", SEC)
    assert np.allclose(buffer.lookup("odom", "base_link", SEC), T_odom_base(1.0))
    assert np.allclose(buffer.lookup("odom", "base_link", 0), T_odom_base(1.0))
    assert not buffer.can_transform("odom", "base_link", SEC + 1)


def test_history_is_bounded_by_the_cache_duration():
    buffer = TransformBuffer(cache_duration_ns=SEC)
    for i in range(31):  # 0 .. 3 s at 10 Hz
        buffer.set_transform(T_odom_base(i / 10), "odom", "base_link", i * SEC // 10)
    with pytest.raises(TransformError, match=r"oldest for odom->base_link is 2.000000000 s \(11 stamp\(s\) held"):
        buffer.lookup("odom", "base_link", SEC + SEC // 2)
    buffer.set_transform(T_odom_base(0.5), "odom", "base_link", SEC // 2)  # older than the window: dropped
    assert not buffer.can_transform("odom", "base_link", SEC // 2)
    assert np.allclose(buffer.lookup("odom", "base_link", 2 * SEC + SEC // 4), T_odom_base(2.25))


def test_out_of_order_and_repeated_stamps():
    buffer = TransformBuffer()
    for t in (3, 1, 2):
        buffer.set_transform(T_odom_base(10.0 * t), "odom", "base_link", t * SEC)
    buffer.set_transform(T_odom_base(-1.0), "odom", "base_link", 2 * SEC)  # replaces the 2 s entry
    assert np.allclose(buffer.lookup("odom", "base_link", 2 * SEC), T_odom_base(-1.0))
    assert np.allclose(buffer.lookup("odom", "base_link", SEC + SEC // 2), T_odom_base(4.5))


def test_a_new_parent_replaces_the_frame_history():
    buffer = _tree()
    buffer.set_transform(T_BASE_LIDAR, "camera", "lidar", 2 * SEC)
    assert np.allclose(buffer.lookup("camera", "lidar", 2 * SEC), T_BASE_LIDAR)
    assert not buffer.can_transform("camera", "lidar", 5 * SEC)  # dynamic now
    buffer.clear()
    assert buffer.frames == []


def test_tf_messages_through_cdr(factory):
    stamped = [
        matrix_to_transform_stamped(T_odom_base(float(i)), "odom", "base_link", i * SEC, factory=factory) for i in (1, 2)
    ]
    static = [matrix_to_transform_stamped(T_BASE_CAMERA, "base_link", "camera", 0, factory=factory)]
    buffer = TransformBuffer()
    if hasattr(stamped[0], "__msgtype__"):
        store = RosbagsFactory()
        for transforms, is_static in ((stamped, False), (static, True)):
            message = store.make("tf2_msgs/msg/TFMessage", transforms=transforms)
            buffer.add_tf_message(cdr_roundtrip(message, "tf2_msgs/msg/TFMessage"), static=is_static)
    else:  # tf2_msgs is not among the ROS wheels: any object with a `.transforms` list is accepted
        buffer.add_tf_message(SimpleNamespace(transforms=stamped))
        buffer.add_tf_message(SimpleNamespace(transforms=static), static=True)
    assert np.allclose(buffer.lookup("odom", "camera", SEC + SEC // 2), T_odom_base(1.5) @ T_BASE_CAMERA)
    assert buffer.frames == ["base_link", "camera", "odom"]


def test_bad_buffer_input_raises(factory):
    buffer = _tree()
    with pytest.raises(ConversionError, match=r"a matrix needs parent, child and stamp_ns"):
        buffer.set_transform(np.eye(4), "odom", "x")
    with pytest.raises(ConversionError, match=r"frame 'odom' cannot be its own parent"):
        buffer.set_transform(np.eye(4), "odom", "/odom", 1)
    with pytest.raises(ConversionError, match=r"camera -> map would close a cycle \('map' is an ancestor of 'camera'\)"):
        buffer.set_transform(np.eye(4), "camera", "map", 1)
    with pytest.raises(ConversionError, match=r"parent frame '' is invalid; a non-empty frame id expected"):
        buffer.set_transform(np.eye(4), "", "x", 1)
    msg = matrix_to_transform_stamped(np.eye(4), "odom", "base_link", 1, factory=factory)
    with pytest.raises(ConversionError, match=r"a TransformStamped carries its frames and stamp"):
        buffer.set_transform(msg, "odom", "base_link")
    msg.transform.rotation.w = 0.0
    with pytest.raises(ConversionError, match=r"rotation of odom -> base_link \[0.0, 0.0, 0.0, 0.0\] is invalid"):
        buffer.set_transform(msg)
    with pytest.raises(ConversionError, match=r"has no 'transforms'; a tf2_msgs/TFMessage expected"):
        buffer.add_tf_message(msg)
    with pytest.raises(ConversionError, match=r"cache_duration_ns=0, extrapolation_tolerance_ns=0 are invalid"):
        TransformBuffer(cache_duration_ns=0)
