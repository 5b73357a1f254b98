"""Contact sheets of the synthetic world: every modality of a frame side by side, for looking at it."""
from __future__ import annotations

from collections import deque
from pathlib import Path

import cv2
import numpy as np

from seg_perception.labels import LabelSet, load_label_set

from .lidar import LidarScan
from .scenarios import SCENARIOS
from .world import Frame, World

DEPTH_RANGE_M = (1.0, 200.0)  # log-scaled depth and LiDAR range colour maps span this
EVENT_GAIN = 85  # colour units per event: a pixel is saturated by three events of one polarity


def _rgb_colormap(values: np.ndarray, colormap: int) -> np.ndarray:
    """uint8 values (H, W) → RGB through an OpenCV colour map (which returns BGR)."""
    return cv2.cvtColor(cv2.applyColorMap(values, colormap), cv2.COLOR_BGR2RGB)


def _log_unit(metres: np.ndarray) -> np.ndarray:
    """Distances → [0, 1] on a log scale over DEPTH_RANGE_M (0 near, 1 far)."""
    lo, hi = np.log(DEPTH_RANGE_M[0]), np.log(DEPTH_RANGE_M[1])
    return np.clip((np.log(np.maximum(metres, 1e-6)) - lo) / (hi - lo), 0.0, 1.0)


def thermal_tile(thermal: np.ndarray) -> tuple[np.ndarray, str]:
    """Radiometric counts (kelvin × 100) → false colour, stretched between the 1st and 99th percentile."""
    kelvin = thermal.astype(np.float32) / 100.0
    lo, hi = np.percentile(kelvin, [1, 99])
    unit = np.clip((kelvin - lo) / max(hi - lo, 0.1), 0, 1)
    return _rgb_colormap((unit * 255).astype(np.uint8), cv2.COLORMAP_INFERNO), f"thermal {lo:.0f}-{hi:.0f} K"


def depth_tile(depth: np.ndarray) -> tuple[np.ndarray, str]:
    """Depth → colour on a log scale (near bright), black where nothing was hit."""
    hit = np.isfinite(depth)
    image = _rgb_colormap(((1.0 - _log_unit(np.where(hit, depth, 1.0))) * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
    image[~hit] = 0
    return image, f"depth log {DEPTH_RANGE_M[0]:.0f}-{DEPTH_RANGE_M[1]:.0f} m"


def events_tile(events: np.ndarray, width: int, height: int) -> tuple[np.ndarray, str]:
    """Events accumulated per pixel: ON red, OFF blue, on black."""
    pixel = events["y"].astype(np.int64) * width + events["x"]
    on = np.bincount(pixel[events["p"] == 1], minlength=width * height).reshape(height, width)
    off = np.bincount(pixel[events["p"] == 0], minlength=width * height).reshape(height, width)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.minimum(on * EVENT_GAIN, 255)
    image[..., 2] = np.minimum(off * EVENT_GAIN, 255)
    return image, f"events {events.size} (ON red, OFF blue)"


def lidar_in_camera(scan: LidarScan, frame: Frame, world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LiDAR returns as the RGB camera saw them at the frame time: each point is deskewed with the
    vehicle pose at its own firing time, then moved into the camera at the frame stamp.

    Returns:
        (pixels (N, 2), range (N,) metres, labels (N,)) of the returns that land inside the image.
    """
    valid = scan.valid
    fire_s = world.time_at(scan.start_ns + scan.time_offset_ns[valid].astype(np.int64))
    T_map_lidar = world.trajectory.poses(fire_s) @ world.rig.frames()["lidar"]
    points = scan.points[valid].astype(np.float64)
    in_map = np.einsum("nij,nj->ni", T_map_lidar[:, :3, :3], points) + T_map_lidar[:, :3, 3]
    T_map_camera = frame.pose @ world.rig.frames()[world.models.camera.frame_id]
    in_camera = (in_map - T_map_camera[:3, 3]) @ T_map_camera[:3, :3]
    pixels, seen = world.models.camera.project(in_camera)
    width, height = world.models.camera.image_size
    seen &= (pixels[:, 0] > -0.5) & (pixels[:, 0] < width - 0.5) & (pixels[:, 1] > -0.5) & (pixels[:, 1] < height - 0.5)
    return pixels[seen], np.linalg.norm(points[seen], axis=1), scan.labels[valid][seen]


def lidar_tile(frame: Frame, world: World, label_set: LabelSet, color_by: str = "range") -> tuple[np.ndarray, str]:
    """LiDAR returns projected into the camera over a dimmed RGB image, coloured by range or label."""
    width, height = world.models.camera.image_size
    image = (frame.rgb.astype(np.float32) * 0.3).astype(np.uint8)
    if frame.lidar is None:
        return image, "no LiDAR"
    pixels, ranges, labels = lidar_in_camera(frame.lidar, frame, world)
    if color_by == "label":
        colors = label_set.colorize(labels)
    else:
        colors = _rgb_colormap(((1.0 - _log_unit(ranges)) * 255).astype(np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0]
    order = np.argsort(-ranges)  # near points drawn last, on top
    u = np.rint(pixels[order, 0]).astype(np.int64)
    v = np.rint(pixels[order, 1]).astype(np.int64)
    for du in (0, 1):  # 2x2 dots stay visible after the tile is shrunk
        for dv in (0, 1):
            image[np.minimum(v + dv, height - 1), np.minimum(u + du, width - 1)] = colors[order]
    return image, f"LiDAR {len(ranges)} pts by {color_by}"


def _captioned(image: np.ndarray, caption: str, size: tuple[int, int]) -> np.ndarray:
    tile = cv2.resize(image, size, interpolation=cv2.INTER_AREA if image.shape[1] > size[0] else cv2.INTER_NEAREST)
    scale = max(size[0] / 800, 0.35)
    (text_w, text_h), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    tile[: text_h + base + 6, : text_w + 8] //= 3  # a dark band keeps the caption legible on any image
    cv2.putText(tile, caption, (4, text_h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def frame_tiles(frame: Frame, world: World, label_set: LabelSet, size: tuple[int, int] | None = None,
                lidar_color: str = "range") -> list[np.ndarray]:
    """The six captioned tiles of a frame (RGB, thermal, depth, labels, events, LiDAR), each `size` (w, h).

    Args:
        size: tile size; default the RGB camera's resolution.
        lidar_color: "range" or "label".
    """
    size = size or world.models.camera.image_size
    event_w, event_h = world.models.event.image_size
    tiles = [
        (frame.rgb, f"{world.scenario.name} RGB  #{frame.index}"),
        thermal_tile(frame.thermal),
        depth_tile(frame.depth),
        (label_set.colorize(frame.labels), f"labels ({label_set.name})"),
        events_tile(frame.events, event_w, event_h),
        lidar_tile(frame, world, label_set, lidar_color),
    ]
    return [_captioned(np.ascontiguousarray(image), caption, size) for image, caption in tiles]


def contact_sheet(frame: Frame, world: World, label_set: LabelSet, columns: int = 3) -> np.ndarray:
    """All modalities of one frame on one RGB image, at the camera's resolution per tile.

    Args:
        frame: a frame of `world` (with events and LiDAR for their tiles to show anything).
        world: the world that rendered it (camera models, extrinsics, trajectory).
        label_set: colours for the label tile.
        columns: tiles per row.

    Returns:
        (rows × H, columns × W, 3) uint8 RGB.
    """
    tiles = frame_tiles(frame, world, label_set)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])


def scenario_sheet(seed: int, frame_index: int, path: str | Path, kind: str | None = None,
                   tile_size: tuple[int, int] = (320, 180), label_set: str = "sim_offroad") -> np.ndarray:
    """Write a PNG with one row of six tiles per scenario (day, dusk, night, fog) of the same frame.

    Args:
        seed: world seed.
        frame_index: which frame (earlier frames are rendered too: events need their history).
        path: PNG file to write.
        kind: scene kind; default as `World` chooses from the seed.
        tile_size: (width, height) of each tile.
        label_set: label set name for the label tile.

    Returns:
        The sheet as (4 × h, 6 × w, 3) uint8 RGB.

    Raises:
        ValueError: negative frame_index.
        OSError: the PNG could not be written.
    """
    if frame_index < 0:
        raise ValueError(f"frame_index must be >= 0, got {frame_index}")
    labels = load_label_set(label_set)
    rows = []
    for scenario in SCENARIOS:
        world = World(seed, scenario, kind)
        frame = deque(world.frames(frame_index + 1), maxlen=1)[0]
        rows.append(np.hstack(frame_tiles(frame, world, labels, tile_size)))
    sheet = np.vstack(rows)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write contact sheet to {str(path)!r}")
    return sheet
