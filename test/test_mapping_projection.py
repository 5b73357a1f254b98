"""LiDAR → camera label transfer (projection, culling, occlusion) and LiDAR de-skewing, against known answers."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from seg_perception.io.camera import CameraModel
from seg_perception.io.transforms import invert_transform
from seg_perception.mapping.errors import MappingError
from seg_perception.mapping.projection import (
    BEHIND,
    INVALID,
    LABELLED,
    OCCLUDED,
    OUTSIDE,
    PointLabels,
    deskew,
    label_points,
)

W, H = 640, 480
K = [[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]]
# REP 103 LiDAR axes (x forward, y left, z up) → optical axes (x right, y down, z forward), plus an offset.
R_OPTICAL_LIDAR = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
OFFSET = np.array([0.1, 0.2, -0.3])


def encode(u, v):
    """The label the position-encoding image holds at pixel (u, v): neighbours differ by 1 and 7."""
    return (np.asarray(u) + 7 * np.asarray(v)) % 250


def position_labels(width: int = W, height: int = H) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width]
    return encode(u, v).astype(np.uint8)


def rigid(R=np.eye(3), t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def pinhole(width: int = W, height: int = H) -> CameraModel:
    return CameraModel(width, height, K)


def test_known_pixels_through_an_extrinsic():
    # optical = R_OPTICAL_LIDAR @ lidar + OFFSET; u = 320 + 500 x / z, v = 240 + 400 y / z.
    points = np.array([
        [5.0, -1.0, 0.5],   # optical (1.1, -0.3, 4.7): u = 320 + 117.02 = 437.02, v = 240 - 25.53 = 214.47
        [9.9, 2.0, 1.0],    # optical (-1.9, -0.8, 9.6): u = 320 - 98.96 = 221.04, v = 240 - 33.33 = 206.67
        [2.3, 0.0, 0.3],    # optical (0.1, -0.1, 2.0): u = 345, v = 220
        [3.3, 3.0, -2.0],   # optical (-2.9, 2.2, 3.0): u = -163.3, outside
    ], np.float32)
    result = label_points(points, rigid(R_OPTICAL_LIDAR, OFFSET), pinhole(), position_labels())
    expected_pixels = [(437, 214), (221, 207), (345, 220)]
    assert result.status.tolist() == [LABELLED, LABELLED, LABELLED, OUTSIDE]
    assert result.labels.tolist() == [int(encode(u, v)) for u, v in expected_pixels] + [-1]
    assert result.labels.dtype == np.int32 and result.confidence.dtype == np.float32 and result.status.dtype == np.uint8
    assert result.labelled.tolist() == [True, True, True, False]
    assert len(result) == 4


def test_image_border_rounds_to_the_nearest_pixel():
    # Identity extrinsic, z = 5: u = 320 + 100 x, v = 240 + 80 y. Pixel k covers [k - 0.5, k + 0.5).
    def at(u, v):
        return [(u - 320.0) / 100.0, (v - 240.0) / 80.0, 5.0]

    points = np.array([at(-0.4, -0.4), at(-0.6, 10.2), at(639.4, 479.4), at(639.6, 100.0), at(100.0, 479.6),
                       at(12.49, 33.51)], np.float64)
    result = label_points(points, np.eye(4), pinhole(), position_labels(), occlusion=False)
    assert result.status.tolist() == [LABELLED, OUTSIDE, LABELLED, OUTSIDE, OUTSIDE, LABELLED]
    assert result.labels[[0, 2, 5]].tolist() == [int(encode(0, 0)), int(encode(639, 479)), int(encode(12, 34))]


@pytest.mark.parametrize("model, D", [
    ("plumb_bob", (-0.25, 0.08, 0.001, -0.002, -0.01)),
    ("rational_polynomial", (-0.2, 0.05, 0.0005, 0.001, 0.01, 0.2, 0.02, 0.01)),
    ("equidistant", (0.05, -0.01, 0.002, -0.0005)),
    # Strong barrel distortion that folds back before the image corners (so no view-box cull is possible).
    ("plumb_bob", (-0.45, 0.0, 0.0, 0.0, 0.0)),
])
def test_distorted_camera_agrees_with_opencv(model, D):
    camera = CameraModel(W, H, K, D=D, distortion_model=model)
    rng = np.random.default_rng(3)
    # Pixels over and just beyond the image (where the view-box cull must not drop anything), at
    # random depths, turned into LiDAR-frame points with OpenCV's own undistortion.
    pixels = rng.uniform((-30.0, -30.0), (W + 30.0, H + 30.0), (4000, 2))
    undistort = cv2.fisheye.undistortPoints if model == "equidistant" else cv2.undistortPoints
    rays = undistort(pixels.reshape(-1, 1, 2), np.array(K), np.array(D)).reshape(-1, 2)
    depth = rng.uniform(1.0, 40.0, len(pixels))
    optical = np.column_stack([rays * depth[:, None], depth])
    T = rigid(R_OPTICAL_LIDAR, OFFSET)
    lidar = (optical - OFFSET) @ R_OPTICAL_LIDAR  # R^T (optical - t)

    rvec, _ = cv2.Rodrigues(R_OPTICAL_LIDAR)
    if model == "equidistant":
        expected, _ = cv2.fisheye.projectPoints(lidar.reshape(-1, 1, 3), rvec, OFFSET, np.array(K), np.array(D))
    else:
        expected, _ = cv2.projectPoints(lidar, rvec, OFFSET, np.array(K), np.array(D))
    expected = expected.reshape(-1, 2)
    # float32 projection: skip points within 1e-3 px of a rounding boundary.
    fraction = expected + 0.5 - np.floor(expected + 0.5)
    clear = ((fraction > 1e-3) & (fraction < 1 - 1e-3)).all(axis=1)
    col, row = np.floor(expected + 0.5).astype(int).T
    # Past the radius where the radial polynomial folds back the model rejects points (they come
    # from outside the field of view); OpenCV projects them regardless.
    unfolded = np.hypot(rays[:, 0], rays[:, 1]) < camera.max_normalized_radius
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H) & unfolded

    result = label_points(lidar.astype(np.float32), T, camera, position_labels(), occlusion=False)
    assert inside[clear].sum() > 2500 and (~inside[clear]).sum() > 200
    assert (result.status[clear & inside] == LABELLED).all()
    assert (result.status[clear & ~inside] == OUTSIDE).all()
    np.testing.assert_array_equal(result.labels[clear & inside], encode(col, row)[clear & inside])


def test_behind_near_invalid_and_outside():
    nan, inf = np.nan, np.inf
    points = np.array([
        [0.0, 0.0, -5.0],   # behind
        [0.0, 0.0, 0.2],    # in front but closer than min_depth 0.3
        [0.0, 0.0, 0.31],   # just beyond min_depth: u = 320, v = 240
        [nan, 0.0, 5.0],
        [0.0, inf, 5.0],
        [-inf, 0.0, 5.0],
        [0.0, 0.0, nan],
        [50.0, 0.0, 5.0],   # u = 5320
        [0.0, -50.0, 5.0],  # v = -3760
        [1.0, 0.0, -0.0],   # on the camera plane
    ], np.float32)
    result = label_points(points, np.eye(4), pinhole(), position_labels(), occlusion=False)
    assert result.status.tolist() == [BEHIND, BEHIND, LABELLED, INVALID, INVALID, INVALID, INVALID, OUTSIDE,
                                      OUTSIDE, BEHIND]
    assert result.labels.tolist() == [-1, -1, int(encode(320, 240))] + [-1] * 7
    assert result.confidence.tolist() == [0.0, 0.0, 1.0] + [0.0] * 7


def test_min_depth_is_a_parameter():
    points = np.array([[0.0, 0.0, 0.2], [0.0, 0.0, 1.5]])
    result = label_points(points, np.eye(4), pinhole(), position_labels(), min_depth=2.0)
    assert result.status.tolist() == [BEHIND, BEHIND]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_input_gives_empty_output(dtype):
    result = label_points(np.zeros((0, 3), dtype), np.eye(4), pinhole(), position_labels())
    assert len(result) == 0
    assert result.labels.shape == result.confidence.shape == result.status.shape == (0,)
    assert (result.labels.dtype, result.confidence.dtype, result.status.dtype) == (np.int32, np.float32, np.uint8)


def test_all_points_invalid_gives_no_labels():
    result = label_points(np.full((5, 3), np.nan), np.eye(4), pinhole(), position_labels())
    assert (result.status == INVALID).all() and not result.labelled.any()


def occluder_scene():
    """A wall at z = 10 m and the front face of a 0.6 m box at z = 3 m, both in the camera's optical
    frame, as a LiDAR 0.5 m to the camera's right measures them (wall points in the box's LiDAR
    shadow are missing). Returns (LiDAR-frame points, is_box, hidden_from_camera, clear_of_box)."""
    x, y = np.meshgrid(np.arange(-3.0, 3.0001, 0.05), np.arange(-2.0, 2.0001, 0.05))
    wall = np.column_stack([x.ravel(), y.ravel(), np.full(x.size, 10.0)])
    # The LiDAR at (0.5, 0, 0) sees a wall point unless its ray crosses z = 3 inside the box face.
    crossing_x, crossing_y = 0.5 + 0.3 * (wall[:, 0] - 0.5), 0.3 * wall[:, 1]
    wall = wall[~((np.abs(crossing_x) <= 0.3) & (np.abs(crossing_y) <= 0.3))]
    # The camera's ray to a wall point crosses z = 3 at 0.3 times its x, y.
    hidden = (np.abs(wall[:, 0]) <= 1.0) & (np.abs(wall[:, 1]) <= 1.0)
    # The box's points reach 48 px from the principal point, their cells up to 4 px farther, the 3x3
    # neighbourhood another 4 px: wall points beyond 60 px (1.2 m on the wall, at 50 px/m) are clear.
    clear = (np.abs(wall[:, 0]) > 1.2) | (np.abs(wall[:, 1]) > 1.2)
    bx, by = np.meshgrid(np.arange(-0.29, 0.2901, 0.02), np.arange(-0.29, 0.2901, 0.02))
    box = np.column_stack([bx.ravel(), by.ravel(), np.full(bx.size, 3.0)])
    optical = np.concatenate([wall, box])
    is_box = np.arange(len(optical)) >= len(wall)
    hidden = np.concatenate([hidden, np.zeros(len(box), bool)])
    clear = np.concatenate([clear, np.zeros(len(box), bool)])
    return (optical - (0.5, 0.0, 0.0)).astype(np.float32), is_box, hidden, clear


WALL, BOX = 3, 7


def occluder_labels() -> tuple[CameraModel, np.ndarray]:
    camera = CameraModel(W, H, [[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    v, u = np.mgrid[0:H, 0:W]
    # The box face spans |x|, |y| <= 0.3 at 3 m: 50 px either side of the principal point.
    labels = np.where((np.abs(u - 319.5) <= 50) & (np.abs(v - 239.5) <= 50), BOX, WALL).astype(np.uint8)
    return camera, labels


def test_occluded_background_is_not_painted_with_the_foreground_label():
    points, is_box, hidden, clear = occluder_scene()
    camera, labels = occluder_labels()
    T_camera_lidar = rigid(t=(0.5, 0.0, 0.0))
    result = label_points(points, T_camera_lidar, camera, labels)
    assert hidden.sum() > 300
    assert (result.status[hidden] == OCCLUDED).all()
    assert (result.status[is_box] == LABELLED).all() and (result.labels[is_box] == BOX).all()
    assert (result.status[clear] == LABELLED).all() and (result.labels[clear] == WALL).all()
    # Near the silhouette the neighbourhood test is conservative: wall points there are occluded
    # or labelled wall, never labelled box.
    wall = ~is_box
    assert not (result.labels[wall] == BOX).any()

    # Without the test, the wall behind the box gets the box's label: the scene exercises occlusion.
    plain = label_points(points, T_camera_lidar, camera, labels, occlusion=False)
    assert (plain.status == LABELLED).all()
    assert (plain.labels[hidden] == BOX).sum() > 0.9 * hidden.sum()


def test_occlusion_margins_keep_nearby_depths_visible():
    # Three points on one pixel: the limit is 10 * (1 + 0.05) + 0.3 = 10.8 m by default, 10 m without margins.
    points = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 10.4], [0.0, 0.0, 11.0]], np.float32)
    result = label_points(points, np.eye(4), pinhole(), position_labels())
    assert result.status.tolist() == [LABELLED, LABELLED, OCCLUDED]
    tight = label_points(points, np.eye(4), pinhole(), position_labels(), occlusion_margin_m=0.0,
                         occlusion_relative=0.0)
    assert tight.status.tolist() == [LABELLED, OCCLUDED, OCCLUDED]


def test_occlusion_neighbourhood_is_three_cells_wide():
    # A near point at u = 320 (cell 80 of 4 px); far points at u = 320 + 4 k, i.e. k cells to the right.
    far = [[(320.0 + 4 * k - 320.0) / 500.0 * 20.0, 0.0, 20.0] for k in (1, 2)]
    points = np.array([[0.0, 0.0, 5.0]] + far, np.float32)
    result = label_points(points, np.eye(4), pinhole(), position_labels())
    assert result.status.tolist() == [LABELLED, OCCLUDED, LABELLED]
    wide = label_points(points, np.eye(4), pinhole(), position_labels(), occlusion_cell_px=8)
    assert wide.status.tolist() == [LABELLED, OCCLUDED, OCCLUDED]


def test_labels_at_half_resolution_use_the_resized_camera():
    # Optical (0.1, -0.1, 2.0) is pixel (345, 220) at full resolution; resizing about pixel centres
    # puts it at ((345 + 0.5) / 2 - 0.5, (220 + 0.5) / 2 - 0.5) = (172.25, 109.75) → (172, 110).
    points = np.array([[0.1, -0.1, 2.0], [3.1, 0.0, 5.0]], np.float32)  # the second: u = 630 → 314.75 → 315
    half = position_labels(W // 2, H // 2)
    result = label_points(points, np.eye(4), pinhole(), half)
    assert result.status.tolist() == [LABELLED, LABELLED]
    assert result.labels.tolist() == [int(encode(172, 110)), int(encode(315, 120))]
    assert int(encode(172, 110)) != int(encode(345, 220))  # the full-resolution pixel would not match


def test_uint16_labels_and_confidence_image():
    v, u = np.mgrid[0:H, 0:W]
    labels = ((u + 1000 * v) % 60000).astype(np.uint16)
    confidence = ((u + 1000 * v) / 1e6).astype(np.float32)
    points = np.array([[0.1, -0.1, 2.0], [0.0, 0.0, -1.0]], np.float32)  # pixel (345, 220); behind
    result = label_points(points, np.eye(4), pinhole(), labels, confidence)
    assert result.labels.tolist() == [(345 + 220_000) % 60000, -1]
    np.testing.assert_allclose(result.confidence, [(345 + 220_000) / 1e6, 0.0], rtol=1e-6)
    default = label_points(points, np.eye(4), pinhole(), labels, default_confidence=0.7)
    np.testing.assert_allclose(default.confidence, [0.7, 0.0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(points=np.zeros((4, 2))), r"points of shape \(4, 2\)"),
    (dict(points=np.zeros(3)), r"\(N, 3\)"),
    (dict(T=np.eye(4)[:3]), r"T_camera_lidar has shape \(3, 4\)"),
    (dict(T=np.full((4, 4), np.nan)), "T_camera_lidar has non-finite"),
    (dict(T=np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]])), "bottom row"),
    (dict(T=np.diag([2.0, 2.0, 2.0, 1.0])), "not a rotation"),
    (dict(T=np.diag([1.0, 1.0, -1.0, 1.0])), "not a rotation"),
    (dict(labels=np.zeros((4, 5, 3), np.uint8)), r"labels image of shape \(4, 5, 3\)"),
    (dict(labels=np.zeros((0, 5), np.uint8)), "non-empty"),
    (dict(labels=np.zeros((4, 5), np.float32)), "integer class-id"),
    (dict(confidence=np.zeros((4, 6), np.float32)), r"confidence image of shape \(4, 6\)"),
    (dict(min_depth=0.0), "min_depth"),
    (dict(occlusion_cell_px=0), "occlusion parameters"),
    (dict(occlusion_margin_m=-1.0), "occlusion parameters"),
])
def test_bad_arguments_raise_mapping_error(kwargs, match):
    args = dict(points=np.zeros((2, 3), np.float32), T=np.eye(4), labels=np.zeros((4, 5), np.uint8))
    args.update(kwargs)
    points, T, labels = args.pop("points"), args.pop("T"), args.pop("labels")
    with pytest.raises(MappingError, match=match):
        label_points(points, T, pinhole(), labels, **args)


def test_point_labels_labelled_mask():
    result = PointLabels(np.array([2, -1], np.int32), np.array([0.5, 0.0], np.float32),
                         np.array([LABELLED, OCCLUDED], np.uint8))
    assert result.labelled.tolist() == [True, False]


def test_simulated_rig_agrees_with_ground_truth_and_occlusion_removes_most_errors():
    from seg_perception.sim import World

    world = World(0, "day")
    frame = next(world.frames(1, events=False))
    scan = frame.lidar
    T_camera_lidar = invert_transform(world.T_base_camera) @ world.T_base_lidar

    def pose_at(stamps):
        return world.trajectory.poses(world.time_at(stamps)) @ world.T_base_lidar

    points = deskew(scan.points, scan.time_offset_ns, scan.start_ns, pose_at, frame.stamp_ns).reshape(-1, 3)
    truth = scan.labels.reshape(-1).astype(np.int32)
    plain = label_points(points, T_camera_lidar, world.models.camera, frame.labels, occlusion=False)
    checked = label_points(points, T_camera_lidar, world.models.camera, frame.labels)
    wrong_plain = (plain.labels[plain.labelled] != truth[plain.labelled]).sum()
    wrong_checked = (checked.labels[checked.labelled] != truth[checked.labelled]).sum()
    assert plain.labelled.sum() > 5000
    assert checked.labelled.sum() > 0.5 * plain.labelled.sum()
    assert wrong_checked < 0.3 * wrong_plain
    assert (checked.labels[checked.labelled] == truth[checked.labelled]).mean() > 0.98
    assert (checked.status[~np.isfinite(points).all(axis=1)] == INVALID).all()


# --- deskew -----------------------------------------------------------------------------------------

START_NS = 1_700_000_000_000_000_000
SWEEP_NS = 100_000_000  # 10 Hz


def moving_poses(velocity=(0.0, 0.0, 0.0), yaw_rate=0.0, origin=np.eye(4)):
    """pose_at for a sensor moving at constant velocity (map frame) and yaw rate from START_NS."""
    calls = []

    def pose_at(stamps):
        stamps = np.asarray(stamps)
        calls.append(stamps)
        assert stamps.dtype == np.int64
        s = (stamps - START_NS) * 1e-9
        T = np.tile(np.eye(4), (len(s), 1, 1))
        c, sn = np.cos(yaw_rate * s), np.sin(yaw_rate * s)
        T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -sn, sn, c
        T[:, :3, 3] = s[:, None] * np.asarray(velocity)
        return origin @ T

    pose_at.calls = calls
    return pose_at


def sweep(rng, count=4000, columns=1000):
    """Random points of a sweep with `columns` firing times spread over SWEEP_NS."""
    column = rng.integers(0, columns, count)
    offsets = (column * (SWEEP_NS // columns)).astype(np.uint32)
    return offsets


def test_deskew_constant_velocity_shifts_by_velocity_times_dt():
    rng = np.random.default_rng(0)
    offsets = sweep(rng)
    velocity = 10.0
    # A static wall at map x = 20; the sensor at map x = v t measures it at x = 20 - v t.
    t = offsets.astype(np.float64) * 1e-9
    wall = np.column_stack([np.full(len(t), 20.0), rng.uniform(-5, 5, len(t)), rng.uniform(-1, 3, len(t))])
    measured = wall - np.column_stack([velocity * t, np.zeros_like(t), np.zeros_like(t)])
    reference = START_NS + SWEEP_NS
    pose_at = moving_poses((velocity, 0.0, 0.0))
    out = deskew(measured.astype(np.float32), offsets, START_NS, pose_at, reference, slices=32)
    # In the frame at the sweep's end every wall point is at x = 20 - v * 0.1: early points moved by v dt.
    expected = wall - (velocity * 0.1, 0.0, 0.0)
    bound = velocity * (offsets.max() - offsets.min() + 1) * 1e-9 / (2 * 32)
    error = np.abs(out - expected)
    assert out.dtype == np.float32
    assert error[:, 0].max() <= bound + 1e-4 and error[:, 1:].max() < 1e-4
    assert np.abs(measured - expected).max() > 0.9  # the raw points were off by up to 1 m
    # pose_at was asked once, for 32 slice mid times inside the sweep plus the reference.
    (stamps,) = pose_at.calls
    assert len(stamps) == 33 and stamps[-1] == reference
    assert (stamps[:-1] >= START_NS).all() and (stamps[:-1] <= START_NS + int(offsets.max())).all()


def test_deskew_identity_motion_leaves_points_unchanged():
    rng = np.random.default_rng(1)
    offsets = sweep(rng, count=500)
    points = rng.uniform(-30, 30, (500, 3))
    points[::7] = np.nan
    origin = np.array([[0.0, -1.0, 0.0, 100.0], [1.0, 0.0, 0.0, -40.0], [0.0, 0.0, 1.0, 2.0], [0, 0, 0, 1.0]])
    out = deskew(points, offsets, START_NS, moving_poses(origin=origin), START_NS + 50_000_000)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, points, atol=1e-9)
    assert np.isnan(out[::7]).all()


def direct_deskew(points, offsets, velocity, yaw_rate, reference):
    """Each point with its own exact pose: T_ref^-1 @ T(t_i) @ p_i, one at a time."""
    pose_at = moving_poses(velocity, yaw_rate)
    T_ref_inv = invert_transform(pose_at(np.array([reference], np.int64))[0])
    out = np.empty_like(points)
    for i, (p, dt) in enumerate(zip(points, offsets)):
        T = pose_at(np.array([START_NS + int(dt)], np.int64))[0]
        out[i] = (T_ref_inv @ T @ np.append(p, 1.0))[:3]
    return out


def test_deskew_rotating_sensor_matches_per_point_poses():
    rng = np.random.default_rng(2)
    offsets = sweep(rng, count=300)
    points = rng.uniform(-20, 20, (300, 3))
    velocity, yaw_rate = (8.0, 1.0, 0.0), 2.0
    reference = START_NS + 60_000_000
    exact = direct_deskew(points, offsets, velocity, yaw_rate, reference)
    speed, radius = np.linalg.norm(velocity), np.linalg.norm(points, axis=1).max()
    errors = {}
    for slices in (8, 32, 1000):
        out = deskew(points, offsets, START_NS, moving_poses(velocity, yaw_rate), reference, slices=slices)
        errors[slices] = np.linalg.norm(out - exact, axis=1).max()
        half_slice = (offsets.max() - offsets.min() + 1) * 1e-9 / (2 * slices)
        assert errors[slices] <= 1.05 * (speed + yaw_rate * radius) * half_slice + 1e-9
    assert errors[8] > errors[32] > 10 * errors[1000]


def test_deskew_keeps_an_organised_shape_and_handles_empty_input():
    rng = np.random.default_rng(3)
    points = rng.uniform(-10, 10, (4, 6, 3)).astype(np.float32)
    offsets = np.tile(np.arange(6, dtype=np.uint32) * 1000, (4, 1))
    out = deskew(points, offsets, START_NS, moving_poses((1.0, 0.0, 0.0)), START_NS)
    assert out.shape == (4, 6, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], points[..., 0] + offsets * 1e-9, atol=1e-5)
    empty = deskew(np.zeros((0, 3)), np.zeros(0, np.int64), START_NS, moving_poses(), START_NS)
    assert empty.shape == (0, 3)


def test_deskew_single_time_uses_one_pose():
    points = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    offsets = np.array([20_000_000, 20_000_000])
    out = deskew(points, offsets, START_NS, moving_poses((5.0, 0.0, 0.0)), START_NS)
    np.testing.assert_allclose(out, points + (0.1, 0.0, 0.0), atol=1e-12)


@pytest.mark.parametrize("points, offsets, pose_at, slices, match", [
    (np.zeros((3, 3)), np.zeros(4, np.int64), None, 32, r"time_offset_ns of shape \(4,\)"),
    (np.zeros((3, 3)), np.zeros(3, np.float64), None, 32, "integer offsets"),
    (np.zeros((3, 2)), np.zeros(3, np.int64), None, 32, r"points of shape \(3, 2\)"),
    (np.zeros((3, 3)), np.zeros(3, np.int64), None, 0, "slices 0"),
    (np.zeros((3, 3)), np.zeros(3, np.int64), lambda s: np.eye(4), 32, "pose_at's result has shape"),
    (np.zeros((3, 3)), np.zeros(3, np.int64), lambda s: np.tile(np.eye(4), (5, 1, 1)), 32, "5 poses for 2 stamps"),
    (np.zeros((3, 3)), np.zeros(3, np.int64), lambda s: np.tile(2 * np.eye(4), (len(s), 1, 1)), 32,
     "bottom row|not a rotation"),
])
def test_deskew_bad_arguments_raise_mapping_error(points, offsets, pose_at, slices, match):
    with pytest.raises(MappingError, match=match):
        deskew(points, offsets, START_NS, pose_at or moving_poses(), START_NS, slices=slices)


def test_missing_transform_is_a_mapping_error_not_a_crash():
    camera = CameraModel(64, 48, [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    with pytest.raises(MappingError, match=r"T_camera_lidar has shape \(\); \(4, 4\) rigid transforms expected"):
        label_points(np.zeros((3, 3)), None, camera, np.zeros((48, 64), np.uint8))
