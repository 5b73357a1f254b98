"""3-D semantic mapping: LiDAR points labelled through the camera (with occlusion), fused over time
into a bounded semantic voxel map (dynamic classes kept apart), queried, exported, and turned into a
traversability costmap for navigation.

Needs numpy and numba; torch for the GPU backend and open3d for PLY/PCD, each imported when used.
"""
from .costmap import (
    DEFAULT_COSTS,
    CostGrid,
    class_costs,
    costmap_to_msg,
    msg_to_costmap,
    traversability_costmap,
    traversability_mask,
)
from .dynamic import DynamicLayer
from .errors import MappingError
from .export import (
    load_map,
    load_voxels,
    save_map,
    save_voxels,
    voxel_colors,
    voxels_to_cloud,
    voxels_to_msg,
    write_point_cloud,
)
from .markers import decimate, voxels_to_markers
from .projection import BEHIND, INVALID, LABELLED, OCCLUDED, OUTSIDE, PointLabels, deskew, label_points
from .voxel_map import SemanticVoxelMap
from .voxels import VoxelArrays

__all__ = [
    "DEFAULT_COSTS", "CostGrid", "DynamicLayer", "class_costs", "costmap_to_msg", "msg_to_costmap",
    "traversability_costmap", "traversability_mask", "decimate", "voxels_to_markers",
    "BEHIND", "INVALID", "LABELLED", "OCCLUDED", "OUTSIDE", "MappingError", "PointLabels", "SemanticVoxelMap",
    "VoxelArrays", "deskew", "label_points", "load_map", "load_voxels", "save_map", "save_voxels", "voxel_colors",
    "voxels_to_cloud", "voxels_to_msg", "write_point_cloud",
]
