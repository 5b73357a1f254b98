"""Camera models: projection against hand-computed pixels and OpenCV, binning/ROI, resizing, CameraInfo round trips."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import cdr_roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.io.camera import (
    CameraModel,
    camera_info_from_model,
    camera_model_from_info,
    camera_model_from_yaml,
    distort_normalized,
)
from seg_perception.io.errors import ConversionError
from seg_perception.io.messages import make_header, stamp_to_ns

K640 = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])
PROPERTY = settings(max_examples=60, deadline=None)

coefficient = st.floats(min_value=-1.0, max_value=1.0)


def _camera(D=(), model="", **kwargs) -> CameraModel:
    return CameraModel(640, 480, K640, np.asarray(D, dtype=np.float64), model, **kwargs)


def _points_in_view(seed: int, n: int, max_radius: float) -> np.ndarray:
    """Points at 0.5-50 m whose normalised radius x/z, y/z is at most max_radius."""
    rng = np.random.default_rng(seed)
    radius = max_radius * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    z = rng.uniform(0.5, 50.0, n)
    return np.stack([radius * np.cos(phi) * z, radius * np.sin(phi) * z, z], axis=1)


def _cv2_project(points: np.ndarray, camera: CameraModel) -> np.ndarray:
    pixels, _ = cv2.projectPoints(points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), camera.K, camera.D)
    return pixels.reshape(-1, 2)


# --- projection: known answers ------------------------------------------------------------------

def test_pinhole_projection_matches_hand_computed_pixels():
    pixels, valid = _camera().project(np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 7.0], [-3.0, 1.5, 10.0]]))
    # u = fx * x / z + cx, v = fy * y / z + cy
    assert np.allclose(pixels, [[445.0, 440.0], [320.0, 240.0], [170.0, 300.0]])
    assert valid.all()
    assert pixels.dtype == np.float64


def test_float32_points_stay_float32_and_leading_axes_are_kept():
    points = np.array([[[1.0, 2.0, 4.0]], [[0.0, 0.0, 1.0]]], dtype=np.float32)
    pixels, valid = _camera().project(points)
    assert pixels.dtype == np.float32 and pixels.shape == (2, 1, 2) and valid.shape == (2, 1)
    assert np.allclose(pixels[:, 0], [[445.0, 440.0], [320.0, 240.0]])
    camera = _camera([-0.2, 0.05, 0.001, -0.002, 0.01], "plumb_bob")
    points = _points_in_view(7, 500, 0.75)
    pixels, valid = camera.project(points.astype(np.float32))
    assert pixels.dtype == np.float32 and valid.all()
    assert np.allclose(pixels, _cv2_project(points, camera), atol=2e-3)


def test_plumb_bob_k1_matches_hand_computed_pixel():
    # x = 0.5, r² = 0.25, radial = 1 + 0.1 * 0.25 → x_d = 0.5125, u = 500 * 0.5125 + 320
    pixels, valid = _camera([0.1, 0, 0, 0, 0], "plumb_bob").project(np.array([[1.0, 0.0, 2.0]]))
    assert valid.all() and np.allclose(pixels, [[576.25, 240.0]])


def test_points_behind_or_non_finite_are_invalid():
    points = np.array([[0, 0, 1.0], [0, 0, 0.0], [1, 1, -2.0], [np.nan, 0, 1.0], [0, np.inf, 1.0], [0, 0, 1e-9]])
    pixels, valid = _camera([0.1, -0.05, 0, 0, 0], "plumb_bob").project(points)
    assert valid.tolist() == [True, False, False, False, False, False]
    assert np.isnan(pixels[1:]).all()
    _, valid = _camera().project(np.array([[0, 0, 0.05]]), min_depth=0.1)
    assert not valid.any()


def test_points_past_the_distortion_fold_are_invalid():
    # r(1 - 0.5 r²) turns back where 1 - 1.5 r² = 0, at r = sqrt(2/3).
    camera = _camera([-0.5, 0, 0, 0, 0], "plumb_bob")
    assert camera.max_normalized_radius == pytest.approx(math.sqrt(2 / 3), abs=1e-3)
    _, valid = camera.project(np.array([[0.8, 0, 1.0], [0.0, 0.83, 1.0], [2.0, 0, 1.0]]))
    assert valid.tolist() == [True, False, False]
    assert _camera([0.1, 0.01, 0, 0, 0], "plumb_bob").max_normalized_radius == math.inf


# --- projection: OpenCV as the reference ----------------------------------------------------------

@PROPERTY
@given(k1=st.floats(-0.3, 0.3), k2=st.floats(-0.1, 0.1), p1=st.floats(-0.01, 0.01), p2=st.floats(-0.01, 0.01),
       k3=st.floats(-0.02, 0.02), five=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_plumb_bob_matches_cv2_project_points(k1, k2, p1, p2, k3, five, seed):
    camera = _camera([k1, k2, p1, p2, k3] if five else [k1, k2, p1, p2], "plumb_bob")
    points = _points_in_view(seed, 200, 0.75)
    pixels, valid = camera.project(points)
    assert valid.all()  # with these ranges the distortion is one-to-one beyond r = 0.75
    assert np.allclose(pixels, _cv2_project(points, camera), atol=1e-6)


@PROPERTY
@given(k=st.tuples(st.floats(-0.3, 0.3), st.floats(-0.1, 0.1), st.floats(-0.02, 0.02)),
       p=st.tuples(st.floats(-0.01, 0.01), st.floats(-0.01, 0.01)),
       k456=st.tuples(st.floats(0.0, 0.3), st.floats(0.0, 0.1), st.floats(0.0, 0.02)),
       seed=st.integers(0, 2**32 - 1))
def test_rational_polynomial_matches_cv2_project_points(k, p, k456, seed):
    camera = _camera([k[0], k[1], p[0], p[1], k[2], *k456], "rational_polynomial")
    points = _points_in_view(seed, 200, 0.75)
    pixels, valid = camera.project(points)
    central = np.hypot(points[:, 0], points[:, 1]) / points[:, 2] < 0.3
    assert valid[central].all()
    assert np.allclose(pixels[valid], _cv2_project(points, camera)[valid], atol=1e-6)


def _points_at_angles(seed: int, n: int, max_angle: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, max_angle, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    distance = rng.uniform(0.5, 30.0, n)
    return distance[:, None] * np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)


@PROPERTY
@given(d=st.tuples(st.floats(-0.05, 0.05), st.floats(-0.01, 0.01), st.floats(-0.002, 0.002), st.floats(-0.002, 0.002)),
       seed=st.integers(0, 2**32 - 1))
def test_equidistant_matches_cv2_fisheye_project_points(d, seed):
    camera = CameraModel(1280, 960, [[300.0, 0, 640.0], [0, 301.0, 480.0], [0, 0, 1]], d, "equidistant")
    points = _points_at_angles(seed, 200, math.radians(80))
    pixels, valid = camera.project(points)
    expected, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), camera.K, camera.D)
    assert valid.all()
    assert np.allclose(pixels, expected.reshape(-1, 2), atol=1e-6)


def test_equidistant_on_the_optical_axis():
    camera = CameraModel(1280, 960, [[300.0, 0, 640.0], [0, 300.0, 480.0], [0, 0, 1]], [0.1, 0, 0, 0], "equidistant")
    pixels, valid = camera.project(np.array([[0.0, 0.0, 3.0]]))
    assert valid.all() and np.allclose(pixels, [[640.0, 480.0]])


@pytest.mark.parametrize("model, d", [
    ("plumb_bob", [-0.2, 0.05, 0.001, -0.002, 0.01]),
    ("rational_polynomial", [0.3, -0.1, 0.001, 0.002, 0.01, 0.2, 0.05, 0.01]),
    ("equidistant", [0.02, -0.01, 0.001, -0.001]),
])
def test_distortion_runs_on_torch_tensors(model, d):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.6, 0.6, (2, 500))
    xd, yd = distort_normalized(torch.from_numpy(x), torch.from_numpy(y), model, d, xp=torch)
    if model == "equidistant":
        expected, _ = cv2.fisheye.projectPoints(np.stack([x, y, np.ones_like(x)], 1).reshape(-1, 1, 3),
                                                np.zeros(3), np.zeros(3), np.eye(3), np.asarray(d))
    else:
        expected, _ = cv2.projectPoints(np.stack([x, y, np.ones_like(x)], 1), np.zeros(3), np.zeros(3), np.eye(3),
                                        np.asarray(d))
    assert np.allclose(np.stack([xd.numpy(), yd.numpy()], 1), expected.reshape(-1, 2), atol=1e-9)


# --- unprojection ---------------------------------------------------------------------------------

def test_unproject_pinhole_hand_computed():
    camera = _camera()
    assert np.allclose(camera.unproject([[445.0, 440.0]]), [[0.25, 0.5, 1.0]])
    assert np.allclose(camera.unproject([[445.0, 440.0]], depth=4.0), [[1.0, 2.0, 4.0]])
    assert np.allclose(camera.unproject([[320.0, 240.0]], depth=[2.0], unit=True), [[0.0, 0.0, 2.0]])
    rays = camera.unproject([[np.nan, 1.0], [320.0, 240.0]])
    assert np.isnan(rays[0]).all() and np.allclose(rays[1], [0, 0, 1])


@PROPERTY
@given(model=st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant"]),
       d=st.tuples(st.floats(-0.1, 0.1), st.floats(-0.02, 0.02), st.floats(-0.005, 0.005), st.floats(-0.005, 0.005),
                   st.floats(-0.01, 0.01), st.floats(0.0, 0.1), st.floats(0.0, 0.02), st.floats(0.0, 0.01)),
       seed=st.integers(0, 2**32 - 1))
def test_unproject_inverts_project(model, d, seed):
    coefficients = {"plumb_bob": d[:5], "rational_polynomial": d, "equidistant": d[:4]}[model]
    camera = _camera(coefficients, model)
    points = _points_in_view(seed, 100, 0.7)
    pixels, valid = camera.project(points)
    assert valid.all()
    rays = camera.unproject(pixels)
    assert np.allclose(rays, points / points[:, 2:], atol=1e-7)
    assert np.allclose(camera.unproject(pixels, depth=points[:, 2]), points, atol=1e-5)
    unit = camera.unproject(pixels, np.linalg.norm(points, axis=1), unit=True)
    assert np.allclose(unit, points, atol=1e-5)


# --- binning, ROI and resizing ------------------------------------------------------------------------

def _stereo_right(**kwargs) -> CameraModel:
    K = [[600.0, 0, 320.0], [0, 610.0, 240.0], [0, 0, 1]]
    P = [[600.0, 0, 320.0, -60.0], [0, 610.0, 240.0, 0], [0, 0, 1, 0]]
    return CameraModel(640, 480, K, [0.0] * 5, "plumb_bob", P=P, **kwargs)


def test_binning_and_roi_follow_image_geometry():
    camera = _stereo_right(binning_x=2, binning_y=2, roi=(100, 50, 400, 300, False))
    # K and P: principal point minus the ROI offset, then column terms / binning_x, row terms / binning_y.
    assert np.allclose(camera.effective_K, [[300, 0, 110], [0, 305, 95], [0, 0, 1]])
    assert np.allclose(camera.effective_P, [[300, 0, 110, -30], [0, 305, 95, 0], [0, 0, 1, 0]])
    assert camera.image_size == (200, 150)
    # full image: (600 * 0.1 + 320, 610 * -0.05 + 240) = (380, 209.5) → ((380 - 100) / 2, (209.5 - 50) / 2)
    pixels, _ = camera.project(np.array([[0.1, -0.05, 1.0]]))
    assert np.allclose(pixels, [[140.0, 79.75]])
    assert np.allclose(camera.unproject([[140.0, 79.75]]), [[0.1, -0.05, 1.0]])


def test_binning_only_roi_only_and_no_binning():
    binned = _stereo_right(binning_x=4, binning_y=1)
    assert np.allclose(binned.effective_K, [[150, 0, 80], [0, 610, 240], [0, 0, 1]])
    assert binned.image_size == (160, 480)
    cropped = _stereo_right(roi=(10, 20, 300, 200, True))
    assert np.allclose(cropped.effective_K, [[600, 0, 310], [0, 610, 220], [0, 0, 1]])
    assert cropped.image_size == (300, 200)
    for plain in (_stereo_right(), _stereo_right(binning_x=1, binning_y=1)):
        assert np.array_equal(plain.effective_K, plain.K) and plain.image_size == (640, 480)


def test_resized_model_matches_cv2_resize_of_a_blob():
    camera = CameraModel(640, 480, [[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    small = camera.resized(320, 240)
    assert np.allclose(small.K, [[250, 0, 159.5], [0, 250, 119.5], [0, 0, 1]])
    assert (small.width, small.height, small.image_size) == (320, 240, (320, 240))
    # Render a blob at a projected point, shrink it with cv2.resize, find its centroid: the
    # resized model must project the point there (area averaging keeps the first moment exactly).
    point = np.array([[-0.37, 0.21, 2.0]])
    (u, v), = camera.project(point)[0]
    rows, cols = np.mgrid[0:480, 0:640]
    blob = np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * 3.0**2))
    shrunk = cv2.resize(blob, (320, 240), interpolation=cv2.INTER_AREA)
    rows, cols = np.mgrid[0:240, 0:320]
    centroid = [(shrunk * cols).sum() / shrunk.sum(), (shrunk * rows).sum() / shrunk.sum()]
    assert np.allclose(small.project(point)[0][0], centroid, atol=1e-6)


def test_resized_applies_binning_and_roi_first():
    camera = _stereo_right(binning_x=2, binning_y=2, roi=(100, 50, 400, 300, False))
    doubled = camera.resized(400, 300)
    # effective cx = 110 → (110 + 0.5) * 2 - 0.5
    assert np.allclose(doubled.K, [[600, 0, 220.5], [0, 610, 190.5], [0, 0, 1]])
    assert np.allclose(doubled.P[0], [600, 0, 220.5, -60])
    assert doubled.roi == (0, 0, 0, 0, False) and doubled.binning_x == 0


# --- rectification ------------------------------------------------------------------------------------------

def test_undistort_image_matches_cv2_undistort():
    camera = _camera([-0.25, 0.08, 0.001, -0.001, 0.0], "plumb_bob")
    image = (np.random.default_rng(1).uniform(0, 255, (480, 640, 3))).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 3)  # smooth, so interpolation differences stay small
    ours = camera.undistort_image(image)
    expected = cv2.undistort(image, camera.K, camera.D)
    assert ours.shape == image.shape and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    assert camera.undistort_maps() is camera.undistort_maps()  # cached


def test_undistort_fisheye_image_matches_cv2_fisheye():
    camera = CameraModel(640, 480, [[250.0, 0, 320], [0, 250.0, 240], [0, 0, 1]], [0.05, -0.01, 0.002, 0.0], "equidistant")
    image = cv2.GaussianBlur(np.random.default_rng(2).uniform(0, 255, (480, 640)).astype(np.uint8), (0, 0), 3)
    expected = cv2.fisheye.undistortImage(image, camera.K, camera.D, Knew=camera.K)
    assert np.abs(camera.undistort_image(image).astype(int) - expected.astype(int)).max() <= 1


def test_undistort_moves_a_distorted_point_to_its_pinhole_position():
    camera = _camera([-0.3, 0.1, 0.0, 0.0, 0.0], "plumb_bob")
    point = np.array([[1.0, 0.6, 2.5]])
    (u, v), = camera.project(point)[0]
    rows, cols = np.mgrid[0:480, 0:640]
    blob = np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * 2.0**2))
    rectified = camera.undistort_image(blob.astype(np.float32))
    centroid = [(rectified * cols).sum() / rectified.sum(), (rectified * rows).sum() / rectified.sum()]
    assert np.allclose(centroid, [500 * 0.4 + 320, 400 * 0.24 + 240], atol=0.1)  # P = [K | 0]


# --- CameraInfo round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("model, d", [
    ("", []),
    ("plumb_bob", [-0.2, 0.05, 0.001, -0.002, 0.01]),
    ("plumb_bob", [-0.2, 0.05, 0.001, -0.002]),
    ("rational_polynomial", [0.3, -0.1, 0.001, 0.002, 0.01, 0.2, 0.05, 0.01]),
    ("equidistant", [0.02, -0.01, 0.001, -0.001]),
])
def test_camera_info_round_trip_through_cdr(factory, model, d):
    K = [[610.5, 0.0, 321.25], [0.0, 612.75, 243.5], [0.0, 0.0, 1.0]]
    R = [[0.99, -0.141067359796659, 0.0], [0.141067359796659, 0.99, 0.0], [0.0, 0.0, 1.0]]
    P = [[600.0, 0.0, 330.0, -36.0], [0.0, 600.0, 240.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    camera = CameraModel(640, 480, K, d, model, R=R, P=P, binning_x=2, binning_y=1,
                         roi=(8, 4, 600, 400, True), frame_id="camera_optical")
    header = make_header(factory, 1_700_000_000_000_000_123, "camera_optical")
    msg = camera_info_from_model(camera, header=header, factory=factory)
    wire = cdr_roundtrip(msg, "sensor_msgs/msg/CameraInfo")
    assert stamp_to_ns(wire.header.stamp) == 1_700_000_000_000_000_123
    assert list(wire.k) == [610.5, 0.0, 321.25, 0.0, 612.75, 243.5, 0.0, 0.0, 1.0]
    assert (wire.roi.x_offset, wire.roi.y_offset, wire.roi.width, wire.roi.height) == (8, 4, 600, 400)
    for decoded in (camera_model_from_info(msg), camera_model_from_info(wire)):
        assert (decoded.width, decoded.height, decoded.distortion_model, decoded.frame_id) == (640, 480, model, "camera_optical")
        assert np.array_equal(decoded.K, K) and np.array_equal(decoded.R, R) and np.array_equal(decoded.P, P)
        assert np.array_equal(decoded.D, d) and decoded.D.shape == (len(d),)
        assert (decoded.binning_x, decoded.binning_y, decoded.roi) == (2, 1, (8, 4, 600, 400, True))


def test_camera_info_default_header_carries_the_model_frame(factory):
    msg = camera_info_from_model(_camera(frame_id="cam"), factory=factory)
    assert msg.header.frame_id == "cam" and stamp_to_ns(msg.header.stamp) == 0
    assert list(msg.p) == [500.0, 0, 320, 0, 0, 400, 240, 0, 0, 0, 1, 0]  # P defaults to [K | 0]


# --- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(distortion_model="kannala_brandt", D=[0.1] * 4), r"'kannala_brandt' is not supported; supported: '', 'plumb_bob'"),
    (dict(distortion_model="plumb_bob", D=[0.1] * 8), r"'plumb_bob' takes 0 or 4 or 5 coefficients, got 8"),
    (dict(distortion_model="rational_polynomial", D=[0.1] * 5), r"takes 0 or 8 coefficients, got 5"),
    (dict(distortion_model="equidistant", D=[0.1] * 5), r"takes 0 or 4 coefficients, got 5"),
    (dict(distortion_model="", D=[0.1, 0, 0, 0, 0]), r"empty distortion model needs all-zero"),
    (dict(distortion_model="plumb_bob", D=[np.nan, 0, 0, 0, 0]), r"D has non-finite"),
    (dict(K=np.zeros(9)), r"fx=0.0, fy=0.0; both must be positive"),
    (dict(K=np.eye(4)), r"K has 16 values; a 3x3 matrix needs 9"),
    (dict(K=[[500, 0, np.inf], [0, 500, 240], [0, 0, 1]]), r"K has non-finite"),
    (dict(P=np.eye(3)), r"P has 9 values; a 3x4 matrix needs 12"),
    (dict(R=np.ones(4)), r"R has 4 values"),
    (dict(width=0), r"size 0x480 is invalid"),
    (dict(binning_x=-1), r"binning -1x0 is invalid"),
    (dict(roi=(600, 0, 100, 100, False)), r"roi \(600, 0, 100, 100\) .* does not fit in the 640x480 image"),
    (dict(roi=(0, 0, 1, 1, False), binning_x=2), r"leaves no pixels"),
    (dict(roi=(0, 0, 1)), r"\(x_offset, y_offset, width, height, do_rectify\) expected"),
])
def test_invalid_calibration_raises(kwargs, match):
    args = dict(width=640, height=480, K=K640) | kwargs
    with pytest.raises(ConversionError, match=match):
        CameraModel(**args)


def test_invalid_inputs_raise():
    camera = _camera()
    with pytest.raises(ConversionError, match=r"shape \(4, 2\) cannot be projected; \(\.\.\., 3\)"):
        camera.project(np.zeros((4, 2)))
    with pytest.raises(ConversionError, match=r"shape \(4, 3\) cannot be unprojected; \(\.\.\., 2\)"):
        camera.unproject(np.zeros((4, 3)))
    with pytest.raises(ConversionError, match=r"depth of shape \(3,\) does not match pixels of shape \(4, 2\)"):
        camera.unproject(np.zeros((4, 2)), depth=np.ones(3))
    with pytest.raises(ConversionError, match=r"shape \(480, 600\) does not fit the camera; an image of 640x480"):
        camera.undistort_image(np.zeros((480, 600), np.uint8))
    with pytest.raises(ConversionError, match=r"R .* is not a rotation matrix"):
        _camera(R=np.zeros((3, 3))).undistort_image(np.zeros((480, 640), np.uint8))
    with pytest.raises(ConversionError, match=r"P has focal lengths 0.0, 0.0; rectification needs positive"):
        _camera(P=np.zeros((3, 4))).undistort_maps()
    with pytest.raises(ConversionError, match=r"resized size 0x10 is invalid"):
        camera.resized(0, 10)
    with pytest.raises(ConversionError, match=r"'fisheye' is not supported"):
        distort_normalized(np.zeros(1), np.zeros(1), "fisheye", [0.1] * 4)


def test_camera_model_from_a_message_that_is_not_camera_info(factory):
    with pytest.raises(ConversionError, match=r"is not a CameraInfo .*; a message with header, width, height"):
        camera_model_from_info(make_header(factory, 0, "x"))
    msg = camera_info_from_model(_camera(), factory=factory)
    msg.distortion_model = "pinhole"
    with pytest.raises(ConversionError, match=r"'pinhole' is not supported; supported: '', 'plumb_bob', "
                                              r"'rational_polynomial', 'equidistant'"):
        camera_model_from_info(msg)


def test_camera_info_beyond_max_pixels_is_refused(factory):
    msg = camera_info_from_model(_camera(), factory=factory)
    pixels = int(msg.width) * int(msg.height)
    assert camera_model_from_info(msg, max_pixels=pixels).width == msg.width
    msg.width, msg.height = 4_000_000_000, 4_000_000_000  # uint32 on the wire; undistortion maps would be exabytes
    with pytest.raises(ConversionError, match=r"CameraInfo image of 4000000000x4000000000 = .* pixels exceeds the limit"):
        camera_model_from_info(msg)


CALIBRATION_YAML = """image_width: 640
image_height: 480
camera_name: front
camera_matrix: {rows: 3, cols: 3, data: [500.0, 0.0, 320.5, 0.0, 501.0, 240.5, 0.0, 0.0, 1.0]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0.001, -0.002, 0.0]}
rectification_matrix: {rows: 3, cols: 3, data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]}
projection_matrix: {rows: 3, cols: 4, data: [500.0, 0.0, 320.5, 0.0, 0.0, 501.0, 240.5, 0.0, 0.0, 0.0, 1.0, 0.0]}
"""


def test_camera_calibration_yaml_known_answer(tmp_path):
    path = tmp_path / "front.yaml"
    path.write_text(CALIBRATION_YAML)
    camera = camera_model_from_yaml(path, "front_optical")
    assert (camera.width, camera.height, camera.frame_id, camera.distortion_model) == (640, 480, "front_optical", "plumb_bob")
    assert camera.K.tolist() == [[500.0, 0.0, 320.5], [0.0, 501.0, 240.5], [0.0, 0.0, 1.0]]
    assert camera.D.tolist() == [-0.1, 0.01, 0.001, -0.002, 0.0]


@pytest.mark.parametrize(("replace", "match"), [
    (("image_width: 640", "image_width: '640'"), r"image size '640' x 480 is not two integers"),
    (("image_width: 640", "image_width: 640000"), r"image of 640000x480 = .* exceeds the limit"),
    (("camera_matrix: {rows: 3, cols: 3, data:", "camera_matrix: {rows: 3, cols: 3, values:"),
     r"camera_matrix is .*, not \{rows, cols, data\}"),
    (("distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0.001, -0.002, 0.0]}",
      "distortion_coefficients: [-0.1, 0.01]"), r"distortion_coefficients is \[-0.1, 0.01\], not"),
    (("distortion_model: plumb_bob", "distortion_model: [plumb_bob]"), r"distortion_model \['plumb_bob'\] is not a string"),
    (("data: [500.0, 0.0, 320.5, 0.0, 501.0", "data: [abc, 0.0, 320.5, 0.0, 501.0"), r"a matrix is not numbers"),
    (("data: [500.0, 0.0, 320.5, 0.0, 501.0", "data: [1" + "0" * 400 + ", 0.0, 320.5, 0.0, 501.0"),
     r"a matrix is not numbers"),
    (("image_width: 640\n", "- 640\n"), r"cannot read camera calibration|holds a list"),
])
def test_malformed_camera_calibration_yaml_is_a_conversion_error(tmp_path, replace, match):
    path = tmp_path / "front.yaml"
    path.write_text(CALIBRATION_YAML.replace(*replace))
    with pytest.raises(ConversionError, match=match):
        camera_model_from_yaml(path, "front_optical")


def test_camera_calibration_that_is_not_text_is_a_conversion_error(tmp_path):
    path = tmp_path / "front.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ConversionError, match="cannot read camera calibration"):
        camera_model_from_yaml(path, "front_optical")
