"""The synthetic multi-modal world: procedural scenes rendered consistently as RGB, thermal,
events, depth, LiDAR and ground truth, written as rosbag2 and served as a training dataset."""
from .events import EventSensorConfig, EventSimulator, log_intensity, suggest_substeps
from .lidar import LidarScan
from .rig import CameraSpec, LidarSpec, RigSpec, Trajectory
from .scenarios import SCENARIOS, Scenario, get_scenario
from .scene import KINDS, Scene, generate_scene
from .world import Frame, World

__all__ = [
    "KINDS", "SCENARIOS", "CameraSpec", "EventSensorConfig", "EventSimulator", "Frame", "LidarScan", "LidarSpec",
    "RigSpec", "Scenario", "Scene", "Trajectory", "World", "generate_scene", "get_scenario",
    "log_intensity", "suggest_substeps",
]
