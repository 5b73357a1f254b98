"""Pinhole camera models from sensor_msgs/CameraInfo: projection with lens distortion, unprojection, rectification."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import ConversionError
from .limits import DEFAULT_MAX_PIXELS, check_pixels
from .messages import MessageFactory, RosbagsFactory, make_header

CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ROI_TYPE = "sensor_msgs/msg/RegionOfInterest"

# distortion_model -> accepted lengths of D. ROS calibrations write plumb_bob with 5 coefficients
# (k1 k2 p1 p2 k3), rational_polynomial with 8 (k1 k2 p1 p2 k3 k4 k5 k6) and equidistant with 4
# (k1 k2 k3 k4, OpenCV's fisheye model). plumb_bob with 4 (k3 = 0) is what OpenCV also accepts and
# some drivers publish. An empty D means "no distortion" for every model, as in image_geometry.
DISTORTION_COEFFICIENTS: dict[str, tuple[int, ...]] = {
    "": (0,),
    "plumb_bob": (0, 4, 5),
    "rational_polynomial": (0, 8),
    "equidistant": (0, 4),
}

# Points with a normalised radius beyond the first turning point of the radial distortion map are
# marked invalid: past it the polynomial folds back and would put points from far outside the field
# of view into the image. The turning point is searched over viewing angles up to this limit.
_MAX_VIEW_ANGLE = math.pi / 2 - 1e-3
_RADIUS_SEARCH_STEPS = 20_000

# cv2.undistortPoints iterates only 5 times by default, which leaves pixel-sized errors near the
# border of strongly distorted images; iterate to convergence instead.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


def distort_normalized(x: Any, y: Any, distortion_model: str, d: Any, *, xp: Any = np) -> tuple[Any, Any]:
    """Apply a ROS distortion model to normalised image coordinates (x = X/Z, y = Y/Z).

    The single implementation of the distortion polynomials: elementwise array arithmetic only, so
    the same code runs on numpy arrays and on torch tensors (pass `xp=torch`).

    Args:
        x, y: normalised coordinates, arrays of one shape.
        distortion_model: "", "plumb_bob", "rational_polynomial" or "equidistant".
        d: the distortion coefficients as in CameraInfo.d (empty: no distortion).
        xp: the array namespace providing sqrt, arctan and where (numpy or torch).

    Returns:
        The distorted normalised coordinates (xd, yd); multiply by fx, fy and add cx, cy for pixels.

    Raises:
        ConversionError: unknown distortion model, or a coefficient count that does not fit it.
    """
    coeffs = _check_coefficients(distortion_model, d)
    if not coeffs:
        return x, y
    if distortion_model == "equidistant":
        k1, k2, k3, k4 = coeffs
        r = xp.sqrt(x * x + y * y)
        theta = xp.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        # theta_d / r -> 1 on the optical axis; avoid the 0/0 there.
        on_axis = r < 1e-12
        scale = xp.where(on_axis, 1.0, theta_d / xp.where(on_axis, 1.0, r))
        return x * scale, y * scale
    k1, k2, p1, p2, k3, k4, k5, k6 = (coeffs + (0.0,) * 8)[:8]
    r2 = x * x + y * y
    radial = (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xy2 = 2.0 * x * y
    xd = x * radial + p1 * xy2 + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + p2 * xy2
    return xd, yd


def _check_coefficients(distortion_model: str, d: Any) -> tuple[float, ...]:
    if distortion_model not in DISTORTION_COEFFICIENTS:
        raise ConversionError(
            f"distortion model {distortion_model!r} is not supported; supported: "
            + ", ".join(repr(name) for name in DISTORTION_COEFFICIENTS)
        )
    coeffs = tuple(float(c) for c in np.asarray(d, dtype=np.float64).reshape(-1))
    if len(coeffs) not in DISTORTION_COEFFICIENTS[distortion_model]:
        if distortion_model == "" and not any(coeffs):
            return ()
        allowed = " or ".join(str(n) for n in DISTORTION_COEFFICIENTS[distortion_model])
        raise ConversionError(
            f"distortion model {distortion_model!r} takes {allowed} coefficients, got {len(coeffs)}"
            + (" (an empty distortion model needs all-zero coefficients)" if distortion_model == "" else "")
        )
    return coeffs


def _as_matrix(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    array = np.array(value, dtype=np.float64, copy=True)
    if array.size != shape[0] * shape[1]:
        raise ConversionError(
            f"camera {name} has {array.size} values; a {shape[0]}x{shape[1]} matrix needs {shape[0] * shape[1]}"
        )
    array = array.reshape(shape)
    if not np.isfinite(array).all():
        raise ConversionError(f"camera {name} has non-finite values; all entries must be finite")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A calibrated camera as described by sensor_msgs/CameraInfo.

    `K`, `P`, `width` and `height` are the full-resolution calibration, as in the message. Images
    from a camera with binning or a region of interest are smaller; like image_geometry's
    PinholeCameraModel, `effective_K` / `effective_P` describe those images: the principal point
    moves by the ROI offset (given in full-resolution pixels), then column terms are divided by
    binning_x and row terms by binning_y (binning 0 and 1 both mean none; an all-zero ROI means
    the full image). `project`, `unproject`, `undistort_image` and `resized` work on the images
    the camera publishes, i.e. with the effective matrices and `image_size`.

    The matrices accept any array-like (nested or flat, as in the message) and are stored as
    read-only float64 arrays; construction validates the calibration.

    Pixel coordinates follow OpenCV and ROS: the centre of the top-left pixel is (0, 0). The skew
    term K[0][1] is ignored, as OpenCV's projection and undistortion do.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = ""
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: np.ndarray | None = None
    binning_x: int = 0
    binning_y: int = 0
    roi: tuple[int, int, int, int, bool] = (0, 0, 0, 0, False)
    frame_id: str = ""
    effective_K: np.ndarray = field(init=False, repr=False)
    effective_P: np.ndarray = field(init=False, repr=False)
    image_size: tuple[int, int] = field(init=False, repr=False)
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        """Validate and freeze the calibration; `P` defaults to [K | 0].

        Raises:
            ConversionError: non-positive image size or focal length, wrongly sized or non-finite
                matrices, unknown distortion model or unfitting D, negative binning, an ROI
                outside the image.
        """
        set_ = object.__setattr__
        width, height = int(self.width), int(self.height)
        if width <= 0 or height <= 0:
            raise ConversionError(f"camera image size {width}x{height} is invalid; width and height must be positive")
        K = _as_matrix("K", self.K, (3, 3))
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise ConversionError(
                f"camera K has focal lengths fx={K[0, 0]}, fy={K[1, 1]}; "
                "both must be positive (is the camera calibrated?)"
            )
        _check_coefficients(self.distortion_model, self.D)
        D = np.array(self.D, dtype=np.float64).reshape(-1)
        if not np.isfinite(D).all():
            raise ConversionError("camera D has non-finite values; all coefficients must be finite")
        D.setflags(write=False)
        P = _as_matrix("P", np.hstack([K, np.zeros((3, 1))]) if self.P is None else self.P, (3, 4))
        binning_x, binning_y = int(self.binning_x), int(self.binning_y)
        if binning_x < 0 or binning_y < 0:
            raise ConversionError(
                f"camera binning {binning_x}x{binning_y} is invalid; binning must be >= 0 (0 and 1 mean none)"
            )
        if len(self.roi) != 5:
            raise ConversionError(
                f"camera roi {self.roi!r} is invalid; (x_offset, y_offset, width, height, do_rectify) expected"
            )
        x_off, y_off, roi_w, roi_h = (int(v) for v in self.roi[:4])
        roi = (x_off, y_off, roi_w, roi_h, bool(self.roi[4]))
        if roi_w == 0 or roi_h == 0:
            roi_w, roi_h = width, height
        if min(x_off, y_off) < 0 or x_off + roi_w > width or y_off + roi_h > height:
            raise ConversionError(
                f"camera roi {roi[:4]} (x_offset, y_offset, width, height) does not fit in the {width}x{height} image"
            )
        bx, by = max(binning_x, 1), max(binning_y, 1)
        if roi_w // bx == 0 or roi_h // by == 0:
            raise ConversionError(f"camera binning {bx}x{by} leaves no pixels of the {roi_w}x{roi_h} region")
        # image_geometry: shift the principal point by the ROI offset, then scale by binning.
        scale = np.array([[1.0 / bx], [1.0 / by], [1.0]])
        shift = np.array([[1.0, 0.0, -x_off], [0.0, 1.0, -y_off], [0.0, 0.0, 1.0]])
        effective_K = scale * (shift @ K)
        effective_P = scale * (shift @ P)
        for array in (effective_K, effective_P):
            array.setflags(write=False)
        for name, value in (
            ("width", width), ("height", height), ("K", K), ("D", D), ("R", _as_matrix("R", self.R, (3, 3))),
            ("P", P), ("binning_x", binning_x), ("binning_y", binning_y), ("roi", roi),
            ("frame_id", str(self.frame_id)), ("effective_K", effective_K), ("effective_P", effective_P),
            ("image_size", (roi_w // bx, roi_h // by)),
        ):
            set_(self, name, value)

    @property
    def max_normalized_radius(self) -> float:
        """The normalised radius sqrt(x² + y²) up to which the radial distortion is one-to-one.

        `project` marks points beyond it invalid; inf where the distortion never folds back within
        the searched viewing angles (up to 90° minus 1 mrad).
        """
        if "max_radius" not in self._cache:
            self._cache["max_radius"] = self._fold_radius()
        return self._cache["max_radius"]

    def _fold_radius(self) -> float:
        if not self.D.size:
            return math.inf
        radius = np.tan(np.linspace(0.0, _MAX_VIEW_ANGLE, _RADIUS_SEARCH_STEPS))
        coeffs = self.D.copy()
        if self.distortion_model != "equidistant":
            coeffs[2:4] = 0.0  # the radial part only: the tangential terms do not fold
        distorted, _ = distort_normalized(radius, np.zeros_like(radius), self.distortion_model, coeffs)
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(distorted[1:]) & (np.diff(distorted) > 0))
        if not bad.any():
            return math.inf
        return float(radius[int(np.argmax(bad))])

    def project(self, points: Any, *, min_depth: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """Project points in the camera optical frame (z forward, x right, y down) to pixels.

        Applies the lens distortion, so pixels are in the raw (unrectified) image this model
        describes. Vectorised; float32 input is computed and returned in float32, anything else in
        float64.

        Args:
            points: (..., 3) array of x, y, z in metres.
            min_depth: points with z <= min_depth are invalid (behind or on the camera plane).

        Returns:
            (pixels, valid): (..., 2) u, v (NaN where invalid) and a (...) bool mask, false for
            non-finite points, points with z <= min_depth and points beyond
            `max_normalized_radius`. Points outside the image bounds stay valid; compare with
            `image_size` to cull them.

        Raises:
            ConversionError: the last axis is not 3.
        """
        points = np.asarray(points)
        if points.ndim == 0 or points.shape[-1] != 3:
            raise ConversionError(f"points of shape {points.shape} cannot be projected; (..., 3) x, y, z expected")
        dtype = np.float32 if points.dtype == np.float32 else np.float64
        points = points.astype(dtype, copy=False)
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        # Per-component isfinite: a reduction over the last axis costs more than the distortion model.
        valid = np.isfinite(x) & np.isfinite(y) & np.isfinite(z) & (z > min_depth)
        safe_z = np.where(valid, z, dtype(1.0))
        xn = np.where(valid, x / safe_z, dtype(0.0))
        yn = np.where(valid, y / safe_z, dtype(0.0))
        valid &= xn * xn + yn * yn <= self.max_normalized_radius**2
        xd, yd = distort_normalized(xn, yn, self.distortion_model, self.D)
        # Python floats combine with float32 arrays without promoting them to float64.
        fx, fy, cx, cy = (float(v) for v in self.effective_K[[0, 1, 0, 1], [0, 1, 2, 2]])
        pixels = np.stack([fx * xd + cx, fy * yd + cy], axis=-1)
        valid &= np.isfinite(pixels[..., 0]) & np.isfinite(pixels[..., 1])
        pixels[~valid] = np.nan
        return pixels, valid

    def unproject(self, pixels: Any, depth: Any | None = None, *, unit: bool = False) -> np.ndarray:
        """Turn raw-image pixels into viewing rays, or into points given their depth.

        Undistortion is OpenCV's (cv2.undistortPoints, or cv2.fisheye.undistortPoints for
        equidistant) iterated to convergence.

        Args:
            pixels: (..., 2) array of u, v in the image this model describes.
            depth: optional (...) array (or scalar): the z coordinate (depth-image convention,
                REP 118) when `unit` is false, the range along the ray when `unit` is true.
            unit: return unit-length rays instead of rays with z = 1.

        Returns:
            (..., 3) float64 rays (z = 1, or unit length), or points when `depth` is given; NaN for
            non-finite pixels.

        Raises:
            ConversionError: the last axis is not 2, or depth does not broadcast to the pixels.
        """
        pixels = np.asarray(pixels, dtype=np.float64)
        if pixels.ndim == 0 or pixels.shape[-1] != 2:
            raise ConversionError(f"pixels of shape {pixels.shape} cannot be unprojected; (..., 2) u, v expected")
        flat = pixels.reshape(-1, 2)
        normalised = np.full_like(flat, np.nan)
        finite = np.isfinite(flat).all(axis=1)
        K = self.effective_K
        if not self.D.size:
            normalised[finite] = (flat[finite] - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]]
        elif finite.any():
            src = np.ascontiguousarray(flat[finite]).reshape(-1, 1, 2)
            undistort = cv2.fisheye.undistortPoints if self.distortion_model == "equidistant" else cv2.undistortPoints
            normalised[finite] = undistort(src, K, self.D, R=None, P=None, criteria=_UNDISTORT_CRITERIA).reshape(-1, 2)
        z = np.where(finite, 1.0, np.nan)[:, None]
        rays = np.concatenate([normalised, z], axis=1).reshape(pixels.shape[:-1] + (3,))
        if unit:
            rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        if depth is None:
            return rays
        depth = np.asarray(depth, dtype=np.float64)
        try:
            return rays * depth[..., None]
        except ValueError:
            raise ConversionError(
                f"depth of shape {depth.shape} does not match pixels of shape {pixels.shape}; "
                "(...) or a scalar expected"
            ) from None

    def undistort_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap maps from the rectified image (described by R and effective_P) to the raw image.

        Built once per model with cv2.initUndistortRectifyMap (cv2.fisheye's for equidistant) in
        the fixed-point CV_16SC2 format, which remaps fastest.

        Raises:
            ConversionError: R is not a rotation or P has no positive focal lengths.
        """
        if "maps" not in self._cache:
            R = self.R
            if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) <= 0:
                raise ConversionError(f"camera R {R.tolist()} is not a rotation matrix; rectification needs one")
            P = self.effective_P
            if not (P[0, 0] > 0 and P[1, 1] > 0):
                raise ConversionError(
                    f"camera P has focal lengths {P[0, 0]}, {P[1, 1]}; rectification needs positive ones"
                )
            init = (
                cv2.fisheye.initUndistortRectifyMap
                if self.distortion_model == "equidistant" and self.D.size
                else cv2.initUndistortRectifyMap
            )
            self._cache["maps"] = init(self.effective_K, self.D, R, P[:, :3], self.image_size, cv2.CV_16SC2)
        return self._cache["maps"]

    def undistort_image(self, image: np.ndarray, *, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """The rectified image (as image_geometry's rectifyImage): undistorted and rotated by R into P.

        For a monocular camera with R = I and P = [K | 0] this is plain undistortion.

        Args:
            image: HxW or HxWxC array of `image_size`.
            interpolation: a cv2.INTER_* flag; INTER_NEAREST for label or depth images.

        Returns:
            A new array of the same shape and dtype.

        Raises:
            ConversionError: the image size differs from `image_size`; see `undistort_maps`.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.shape[1::-1] != self.image_size:
            raise ConversionError(
                f"image of shape {image.shape} does not fit the camera; an image of "
                f"{self.image_size[0]}x{self.image_size[1]} (width x height) expected"
            )
        map1, map2 = self.undistort_maps()
        return cv2.remap(image, map1, map2, interpolation)

    def resized(self, width: int, height: int) -> CameraModel:
        """The model of this camera's images resized to width x height (e.g. a network's input).

        Scales about pixel centres, as cv2.resize does: u' = (u + 0.5) * width / image_width - 0.5.
        The result describes the resized image directly: no binning, no ROI, the same D and R.

        Raises:
            ConversionError: a non-positive size.
        """
        if width <= 0 or height <= 0:
            raise ConversionError(f"resized size {width}x{height} is invalid; width and height must be positive")
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return CameraModel(
            width=int(width),
            height=int(height),
            K=scale @ self.effective_K,
            D=self.D,
            distortion_model=self.distortion_model,
            R=self.R,
            P=scale @ self.effective_P,
            frame_id=self.frame_id,
        )


def camera_model_from_info(msg: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> CameraModel:
    """sensor_msgs/CameraInfo (either message world) → CameraModel.

    Args:
        msg: a CameraInfo-like message; fields are read by name.
        max_pixels: the largest width * height accepted (undistortion maps are allocated at that
            size; default `DEFAULT_MAX_PIXELS`, 50 Mpx).

    Returns:
        The validated model; `frame_id` is the header's.

    Raises:
        ConversionError: a field is missing, the image is larger than `max_pixels`, or the
            calibration is invalid (see CameraModel).
    """
    try:
        check_pixels(int(msg.width), int(msg.height), max_pixels, "CameraInfo image")
        roi = msg.roi
        return CameraModel(
            width=int(msg.width),
            height=int(msg.height),
            K=np.asarray(msg.k, dtype=np.float64),
            D=np.asarray(msg.d, dtype=np.float64),
            distortion_model=str(msg.distortion_model),
            R=np.asarray(msg.r, dtype=np.float64),
            P=np.asarray(msg.p, dtype=np.float64),
            binning_x=int(msg.binning_x),
            binning_y=int(msg.binning_y),
            roi=(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height), bool(roi.do_rectify)),
            frame_id=str(msg.header.frame_id),
        )
    except AttributeError as exc:
        raise ConversionError(
            f"{type(msg).__name__} is not a CameraInfo ({exc}); a message with header, width, height, "
            "distortion_model, d, k, r, p, binning_x, binning_y and roi expected"
        ) from None


def camera_info_from_model(
    model: CameraModel, *, header: Any | None = None, factory: MessageFactory | None = None
) -> Any:
    """CameraModel → sensor_msgs/CameraInfo, the inverse of `camera_model_from_info`.

    Args:
        model: the camera; its full-resolution K, P, binning and ROI are written as they are.
        header: std_msgs/Header of the factory's world; default: zero stamp, `model.frame_id`.
        factory: builds the message; default RosbagsFactory().

    Returns:
        A sensor_msgs/CameraInfo of the factory's world.
    """
    factory = factory if factory is not None else RosbagsFactory()
    x_off, y_off, roi_w, roi_h, do_rectify = model.roi
    return factory.make(
        CAMERA_INFO_TYPE,
        header=header if header is not None else make_header(factory, 0, model.frame_id),
        height=model.height,
        width=model.width,
        distortion_model=model.distortion_model,
        # copies: the model's arrays are read-only and a message's fields may be edited in place
        d=model.D.copy(),
        k=model.K.reshape(-1).copy(),
        r=model.R.reshape(-1).copy(),
        p=model.P.reshape(-1).copy(),
        binning_x=model.binning_x,
        binning_y=model.binning_y,
        roi=factory.make(ROI_TYPE, x_offset=x_off, y_offset=y_off, height=roi_h, width=roi_w, do_rectify=do_rectify),
    )


def camera_model_from_yaml(path: str | Path, frame_id: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> CameraModel:
    """A calibration file as ROS camera_calibration writes it (camera_info_manager's YAML: image_width,
    image_height, camera_matrix, distortion_model, distortion_coefficients, rectification_matrix,
    projection_matrix, each matrix as {rows, cols, data}) → CameraModel in `frame_id`.

    Raises:
        ConversionError: the file is unreadable, lacks a key, holds a value of the wrong type, an
            image larger than `max_pixels` or an invalid calibration.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConversionError(f"cannot read camera calibration {path}: {exc}") from None
    expected = ("expected the camera_calibration YAML keys image_width, image_height, camera_matrix, "
                "projection_matrix (+ distortion_model, distortion_coefficients, rectification_matrix)")
    if not isinstance(data, dict):
        raise ConversionError(f"camera calibration {path} holds a {type(data).__name__}; {expected}")

    def matrix(key: str, default: Any = None) -> Any:
        entry = data.get(key)
        if entry is None and default is not None:
            return default
        if not isinstance(entry, dict) or "data" not in entry:
            raise ConversionError(f"camera calibration {path}: {key} is {entry!r}, not {{rows, cols, data}}; {expected}")
        return entry["data"]

    width, height = data.get("image_width"), data.get("image_height")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (width, height)):
        raise ConversionError(f"camera calibration {path}: image size {width!r} x {height!r} is not two integers; "
                              f"{expected}")
    check_pixels(width, height, max_pixels, f"camera calibration {path} image")
    distortion_model = data.get("distortion_model") or ""
    if not isinstance(distortion_model, str):
        raise ConversionError(f"camera calibration {path}: distortion_model {distortion_model!r} is not a string")
    try:
        return CameraModel(width=width, height=height, K=matrix("camera_matrix"),
                           D=matrix("distortion_coefficients", []), distortion_model=distortion_model,
                           R=matrix("rectification_matrix", np.eye(3)), P=matrix("projection_matrix"), frame_id=frame_id)
    except ConversionError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # not numbers: a string, ragged rows, a 400-digit integer
        raise ConversionError(f"camera calibration {path}: a matrix is not numbers ({exc}); {expected}") from None
