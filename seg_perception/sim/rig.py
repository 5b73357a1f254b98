"""The ego vehicle: its trajectory through a scene, its sensors' intrinsics and extrinsics, its TF tree.

Frames follow REP 103/105: map → odom → base_link (x forward, y left, z up) → sensor frames;
camera optical frames have z forward, x right, y down.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seg_perception.io.camera import CameraModel

from .scene import Scene

# base_link → camera optical: x_opt = -y_base, y_opt = -z_base, z_opt = x_base.
BASE_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def _rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _transform(rotation: np.ndarray, translation) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = translation
    return T


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera with mild radial distortion, mounted on the roof looking ahead."""

    width: int = 640
    height: int = 360
    horizontal_fov_deg: float = 90.0
    distortion: tuple[float, ...] = (-0.04, 0.008, 0.0, 0.0, 0.0)  # plumb_bob k1, k2, p1, p2, k3
    position: tuple[float, float, float] = (1.2, 0.0, 1.7)  # metres in base_link
    pitch_deg: float = 6.0  # downward tilt

    def model(self, frame_id: str, scale: float = 1.0) -> CameraModel:
        """The camera model, optionally for a co-boresighted sensor of `scale` times the resolution."""
        width, height = round(self.width * scale), round(self.height * scale)
        f = width / 2 / np.tan(np.radians(self.horizontal_fov_deg) / 2)
        K = [[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]]
        return CameraModel(width, height, K, D=self.distortion, distortion_model="plumb_bob", frame_id=frame_id)

    def extrinsic(self) -> np.ndarray:
        """T_base_optical (4x4): maps optical-frame points to base_link."""
        return _transform(_rotation_y(np.radians(self.pitch_deg)) @ BASE_TO_OPTICAL.T, self.position)


@dataclass(frozen=True)
class LidarSpec:
    """A rotating multi-beam LiDAR (Ouster/Velodyne-like)."""

    beams: int = 64
    vertical_fov_deg: tuple[float, float] = (-22.5, 22.5)
    columns: int = 1024
    rate_hz: float = 10.0
    max_range: float = 120.0
    min_range: float = 0.8
    range_noise: float = 0.02   # metres, 1 sigma
    dropout: float = 0.01       # fraction of returns lost regardless of surface
    position: tuple[float, float, float] = (0.4, 0.0, 2.0)  # metres in base_link, axes aligned with base_link

    def elevations(self) -> np.ndarray:
        """Beam elevations, radians, ring 0 the highest."""
        return np.radians(np.linspace(self.vertical_fov_deg[1], self.vertical_fov_deg[0], self.beams))

    def azimuths(self) -> np.ndarray:
        """Column azimuths, radians: the scan starts facing backwards and faces forwards at mid-scan."""
        return np.pi - 2 * np.pi * np.arange(self.columns) / self.columns

    def extrinsic(self) -> np.ndarray:
        return _transform(np.eye(3), self.position)


@dataclass(frozen=True)
class RigSpec:
    """All sensors. Thermal and event cameras are co-boresighted with the RGB camera (as in RGB-T
    and DAVIS-style rigs) at a fraction of its resolution, so their images align with it."""

    camera: CameraSpec = field(default_factory=CameraSpec)
    thermal_scale: float = 0.5
    event_scale: float = 0.5
    lidar: LidarSpec = field(default_factory=LidarSpec)
    frame_rate_hz: float = 10.0

    def frames(self) -> dict[str, np.ndarray]:
        """Static extrinsics: child frame → T_base_child."""
        optical = self.camera.extrinsic()
        return {"camera_optical_frame": optical, "thermal_optical_frame": optical,
                "event_optical_frame": optical, "lidar": self.lidar.extrinsic()}


class Trajectory:
    """The ego vehicle driving along the scene's path at constant speed, hugging the terrain."""

    def __init__(self, scene: Scene, start_fraction: float = 0.15) -> None:
        self.scene = scene
        self.arc = np.arange(len(scene.path)) * 0.5
        self.s0 = start_fraction * self.arc[-1]

    @property
    def duration_s(self) -> float:
        """Seconds until the vehicle reaches the end of the path (less a margin to see ahead)."""
        return (self.arc[-1] * 0.9 - self.s0) / self.scene.speed

    def poses(self, times_s) -> np.ndarray:
        """T_map_base (N, 4, 4) at `times_s` (seconds since the drive started)."""
        s = self.s0 + self.scene.speed * np.atleast_1d(np.asarray(times_s, np.float64))
        path, heading = self.scene.path, np.unwrap(self.scene.path_heading)
        x = np.interp(s, self.arc, path[:, 0])
        y = np.interp(s, self.arc, path[:, 1])
        yaw = np.interp(s, self.arc, heading)
        x += np.sin(yaw) * self.scene.lane_offset  # drive right of the centreline
        y -= np.cos(yaw) * self.scene.lane_offset
        terrain = self.scene.terrain
        z = terrain.height(x, y)
        gx, gy = terrain.gradient(x, y)
        pitch = -np.arctan(gx * np.cos(yaw) + gy * np.sin(yaw))
        roll = np.arctan(-gx * np.sin(yaw) + gy * np.cos(yaw))
        cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
        T = np.zeros((len(s), 4, 4))
        T[:, 0, 0], T[:, 0, 1], T[:, 0, 2] = cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr
        T[:, 1, 0], T[:, 1, 1], T[:, 1, 2] = sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr
        T[:, 2, 0], T[:, 2, 1], T[:, 2, 2] = -sp, cp * sr, cp * cr
        T[:, 0, 3], T[:, 1, 3], T[:, 2, 3] = x, y, z
        T[:, 3, 3] = 1.0
        return T

    def pose(self, time_s: float) -> np.ndarray:
        return self.poses([time_s])[0]

    def velocity(self, time_s: float, dt: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
        """Linear (m/s) and angular (rad/s) velocity in base_link, by central differences."""
        before, after = self.poses([time_s - dt, time_s + dt])
        relative = np.linalg.inv(before) @ after
        linear = relative[:3, 3] / (2 * dt)
        R = relative[:3, :3]
        angular = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2 / (2 * dt)
        return linear, angular
