"""The synthetic world, frame by frame: every modality rendered from one scene and one trajectory."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from seg_perception.io.camera import CameraModel
from seg_perception.io.events import EVENT_DTYPE

from .events import EventSensorConfig, EventSimulator, log_intensity
from .lidar import LidarScan, scan
from .render import Lighting, expose, luminance, optical_rays, radiance, shade, thermal_counts, view
from .rig import RigSpec, Trajectory
from .scenarios import SCENARIOS, get_scenario
from .scene import KINDS, generate_scene
from .shadows import ShadowMap

EPOCH_NS = 1_700_000_000 * 1_000_000_000  # stamps start here (2023-11-14), as a recorded drive would
HEADLIGHT = np.array([2.0, 0.0, 0.8, 1.0])  # headlight position in base_link (homogeneous)


@dataclass
class Frame:
    """Everything the rig senses at one camera frame. Images share the camera's pose and time."""

    index: int
    stamp_ns: int
    pose: np.ndarray      # T_map_base (4, 4) at stamp_ns
    rgb: np.ndarray       # (H, W, 3) uint8
    thermal: np.ndarray   # (h, w) uint16 radiometric counts, kelvin × 100
    depth: np.ndarray     # (H, W) float32 optical-frame z, metres; +inf where nothing was hit
    labels: np.ndarray    # (H, W) uint8 class ids (ground truth)
    events: np.ndarray    # EVENT_DTYPE at the event camera's resolution, t in (previous stamp, stamp]
    lidar: LidarScan | None = None


@dataclass
class SensorModels:
    camera: CameraModel
    thermal: CameraModel
    event: CameraModel
    rays: dict[str, np.ndarray] = field(default_factory=dict)


class World:
    """A scene, a drive through it and a sensor rig.

    Geometry, trajectory, labels and LiDAR noise depend on `seed` only; the scenario changes
    appearance (RGB, thermal, events) and nothing else.

    Args:
        seed: scene and drive.
        scenario: "day", "dusk", "night" or "fog".
        kind: "offroad" or "semiurban"; by default alternates with the seed.
        start_s: seconds into the drive of frame 0.
        event_substeps: renders of the event camera per frame interval (its log intensity is
            linear in time between them).
    """

    def __init__(self, seed: int, scenario: str = "day", kind: str | None = None, rig: RigSpec | None = None,
                 event_config: EventSensorConfig | None = None, start_s: float = 0.0, event_substeps: int = 3) -> None:
        self.seed = seed
        self.scenario = get_scenario(scenario)
        self.scene = generate_scene(seed, kind or KINDS[seed % len(KINDS)])
        self.rig = rig or RigSpec()
        self.trajectory = Trajectory(self.scene)
        self.start_s = start_s
        self.event_config = event_config or EventSensorConfig()
        self.event_substeps = max(1, int(event_substeps))
        camera = self.rig.camera
        self.models = SensorModels(camera.model("camera_optical_frame"),
                                   camera.model("thermal_optical_frame", self.rig.thermal_scale),
                                   camera.model("event_optical_frame", self.rig.event_scale))
        self.models.rays = {"camera": optical_rays(self.models.camera), "event": optical_rays(self.models.event)}
        sun = self.scenario.sun_direction()
        self.shadows = ShadowMap(self.scene.primitives, sun) if self.scenario.sun_irradiance > 0 and sun[2] > 0 else None
        fixed = np.random.default_rng([seed, 7])
        width, height = self.models.camera.image_size
        # Thermal non-uniformity: column and row offsets fixed per sensor, in counts (0.01 K).
        self.thermal_pattern = (fixed.normal(0, 15, (1, width)) + fixed.normal(0, 5, (height, 1))).astype(np.float32)
        self.T_base_camera = camera.extrinsic()
        self.T_base_lidar = self.rig.lidar.extrinsic()

    @property
    def frame_period_s(self) -> float:
        return 1.0 / self.rig.frame_rate_hz

    def time_of(self, index: int) -> float:
        return self.start_s + index * self.frame_period_s

    def stamp_of(self, time_s: float) -> int:
        """Drive time (seconds) → sensor stamp (ns)."""
        return EPOCH_NS + round(time_s * 1e9)

    def time_at(self, stamp_ns):
        """Sensor stamp(s) (ns) → drive time (seconds); the inverse of `stamp_of`."""
        return (np.asarray(stamp_ns, np.int64) - EPOCH_NS) * 1e-9

    def _lighting(self, pose: np.ndarray) -> Lighting:
        return Lighting(self.scenario, self.shadows, (pose @ HEADLIGHT)[:3], pose[:3, 0])

    def render_camera(self, time_s: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """rgb8, thermal counts, depth and labels at `time_s`."""
        pose = self.trajectory.pose(time_s)
        cam = view(self.scene, self.models.camera, self.models.rays["camera"], pose @ self.T_base_camera, time_s)
        linear, kelvin = shade(self.scene, cam, self._lighting(pose))
        rgb = expose(linear, self.scenario, rng)
        counts = thermal_counts(kelvin, self.thermal_pattern, rng)
        width, height = self.models.thermal.image_size
        thermal = cv2.resize(counts, (width, height), interpolation=cv2.INTER_AREA)
        return rgb, thermal, cam.depth, cam.labels

    def event_log_intensity(self, time_s: float) -> np.ndarray:
        """The event camera's log intensity at `time_s` (its own resolution, no sensor noise)."""
        pose = self.trajectory.pose(time_s)
        cam = view(self.scene, self.models.event, self.models.rays["event"], pose @ self.T_base_camera, time_s)
        return log_intensity(luminance(radiance(self.scene, cam, self._lighting(pose))), self.event_config)

    def lidar_scan(self, time_s: float, rng: np.random.Generator) -> LidarScan:
        """The sweep that faces forward at `time_s` (it starts half a rotation earlier)."""
        start = time_s - 0.5 / self.rig.lidar.rate_hz
        return scan(self.scene, self.rig.lidar, self.trajectory, self.T_base_lidar, start, self.stamp_of(start), rng)

    def frames(self, count: int, *, lidar: bool = True, events: bool = True) -> Iterator[Frame]:
        """Frames 0 … count-1; events of frame k cover the interval since frame k-1 (frame 0: a pre-roll)."""
        simulator = None
        if events:
            width, height = self.models.event.image_size
            simulator = EventSimulator(width, height, self.event_config, seed=self.seed)
            before = self.time_of(-1)
            simulator.reset(self.event_log_intensity(before), self.stamp_of(before))
        scenario_index = list(SCENARIOS).index(self.scenario.name)
        for index in range(count):
            time_s = self.time_of(index)
            rng = np.random.default_rng([self.seed, scenario_index, index])
            rgb, thermal, depth, labels = self.render_camera(time_s, rng)
            frame_events = np.zeros(0, EVENT_DTYPE)
            if simulator is not None:
                times = self.time_of(index - 1) + self.frame_period_s * np.arange(1, self.event_substeps + 1) / self.event_substeps
                logs = np.stack([self.event_log_intensity(t) for t in times])
                frame_events = simulator.step(logs, np.array([self.stamp_of(t) for t in times], np.int64))
            scan_ = self.lidar_scan(time_s, np.random.default_rng([self.seed, 101, index])) if lidar else None
            yield Frame(index, self.stamp_of(time_s), self.trajectory.pose(time_s), rgb, thermal, depth, labels,
                        frame_events, scan_)
