"""The ROS-free perception pipeline shared by the nodes and replay: decode messages, synchronise
them into frame bundles (RGB is the anchor), segment, label the LiDAR sweep, fuse the voxel map;
schedulers for live (newest frame wins) and replay (every frame) operation.
"""
from .config import ConfigError, MappingConfig, PipelineConfig
from .decode import LidarSweep, MessageDecoder
from .perception import FrameResult, MappedSweep, Perception, map_sweep, sweep_middle_ns, transforms_needed_until
from .schedulers import LiveScheduler, ReplayScheduler, SchedulerClosed
from .sync import FrameBundle, SyncError, Synchronizer

__all__ = [
    "ConfigError", "FrameBundle", "FrameResult", "LidarSweep", "LiveScheduler", "MappedSweep", "MappingConfig",
    "MessageDecoder", "Perception", "PipelineConfig", "ReplayScheduler", "SchedulerClosed", "SyncError", "Synchronizer",
    "map_sweep", "sweep_middle_ns", "transforms_needed_until",
]
