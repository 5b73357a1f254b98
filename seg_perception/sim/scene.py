"""Procedural 3D scenes: terrain with drivable paths, vegetation, rocks, buildings, fences, poles,
vehicles and people, placed along a smooth path that the ego vehicle drives."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from .raycast import BOX, CYLINDER, ELLIPSOID, PRIMITIVE_DTYPE

# Class ids of config/labels/sim_offroad.yaml.
SKY, ROAD, TRAIL, GRASS, MUD_WATER, TRUNK, FOLIAGE, BUSH, ROCK, BUILDING, FENCE, POLE, VEHICLE, PERSON = range(14)
KINDS = ("offroad", "semiurban")


@dataclass(frozen=True)
class Material:
    """Appearance of a surface in every modality."""

    name: str
    albedo: tuple[float, float, float]  # linear RGB reflectance, 0..1
    texture: float          # contrast of the procedural texture, 0..1
    texture_scale: float    # texture cycles per metre
    temperature: float      # surface temperature relative to the air, kelvin, without sun
    sun_heating: float      # extra kelvin in full sun
    emissivity: float       # LWIR emissivity, 0..1
    reflectivity: float     # LiDAR reflectivity, 0..1


MATERIALS: tuple[Material, ...] = (
    Material("sky", (0.0, 0.0, 0.0), 0.0, 1.0, -40.0, 0.0, 1.0, 0.0),
    Material("asphalt", (0.09, 0.09, 0.10), 0.25, 3.0, 1.0, 16.0, 0.95, 0.12),
    Material("dirt", (0.34, 0.25, 0.16), 0.45, 2.0, 0.5, 11.0, 0.93, 0.30),
    Material("grass", (0.13, 0.28, 0.07), 0.55, 4.0, -1.5, 4.0, 0.98, 0.45),
    Material("water", (0.05, 0.07, 0.09), 0.15, 1.0, -3.0, 2.0, 0.96, 0.02),
    Material("bark", (0.20, 0.13, 0.08), 0.50, 6.0, -0.5, 5.0, 0.95, 0.35),
    Material("leaves", (0.06, 0.20, 0.05), 0.65, 3.0, -2.0, 3.0, 0.98, 0.50),
    Material("shrub", (0.20, 0.30, 0.06), 0.60, 5.0, -1.5, 4.0, 0.97, 0.45),
    Material("stone", (0.32, 0.31, 0.29), 0.40, 2.5, 0.5, 9.0, 0.92, 0.40),
    Material("brick", (0.40, 0.17, 0.12), 0.30, 1.5, 2.0, 8.0, 0.93, 0.35),
    Material("wood", (0.55, 0.45, 0.28), 0.35, 3.0, 0.0, 7.0, 0.92, 0.40),
    Material("metal_pole", (0.45, 0.45, 0.42), 0.10, 1.0, 0.0, 10.0, 0.30, 0.60),
    Material("car_paint", (0.10, 0.12, 0.45), 0.05, 1.0, 0.0, 12.0, 0.85, 0.70),
    Material("car_engine", (0.08, 0.08, 0.09), 0.05, 1.0, 35.0, 12.0, 0.90, 0.50),
    Material("clothing", (0.30, 0.12, 0.10), 0.30, 4.0, 14.0, 3.0, 0.97, 0.25),
    Material("skin", (0.55, 0.38, 0.30), 0.05, 1.0, 21.0, 1.0, 0.98, 0.30),
    Material("car_paint_red", (0.45, 0.05, 0.04), 0.05, 1.0, 0.0, 12.0, 0.85, 0.70),
    Material("car_paint_white", (0.65, 0.65, 0.62), 0.05, 1.0, 0.0, 12.0, 0.85, 0.80),
    Material("clothing_blue", (0.08, 0.12, 0.35), 0.30, 4.0, 14.0, 3.0, 0.97, 0.25),
    Material("concrete", (0.42, 0.41, 0.38), 0.25, 1.0, 1.0, 9.0, 0.93, 0.45),
)
MATERIAL_ID = {m.name: i for i, m in enumerate(MATERIALS)}
GROUND_MATERIAL = {ROAD: MATERIAL_ID["asphalt"], TRAIL: MATERIAL_ID["dirt"], GRASS: MATERIAL_ID["grass"],
                   MUD_WATER: MATERIAL_ID["water"]}


@dataclass
class Terrain:
    """Ground height and ground class as functions of (x, y).

    The height is a sum of gentle sinusoids, tabulated on a grid and interpolated bilinearly (one
    surface for every sensor). The class comes from distance fields to the path and to puddles,
    also interpolated, so edges are smooth at any range, with a noisy edge like a real verge.
    """

    waves: np.ndarray        # (K, 4): amplitude m, kx, ky rad/m, phase
    grid_origin: np.ndarray  # (2,) map coordinates of grid cell (0, 0), metres
    grid_resolution: float   # metres per cell
    path_distance: np.ndarray  # (Gy, Gx) float32 distance to the path centreline, metres
    puddle_sdf: np.ndarray     # (Gy, Gx) float32 signed distance to puddles (negative inside), metres
    path_class: int            # ROAD or TRAIL
    path_half_width: float     # metres
    edge_noise: np.ndarray     # (256, 256) float32 in [-1, 1], tiled every 16 m

    def __post_init__(self) -> None:
        rows, cols = self.path_distance.shape
        x = self.grid_origin[0] + np.arange(cols) * self.grid_resolution
        y = self.grid_origin[1] + np.arange(rows) * self.grid_resolution
        grid = np.zeros((rows, cols), np.float64)
        for a, kx, ky, phase in self.waves:  # sin(u + v) = sin u cos v + cos u sin v: two outer products
            grid += a * (np.outer(np.cos(ky * y + phase), np.sin(kx * x)) + np.outer(np.sin(ky * y + phase), np.cos(kx * x)))
        slope_y, slope_x = np.gradient(grid, self.grid_resolution)
        # Height and slopes in one 3-channel grid: one lookup per Newton step of the ray caster.
        self.surface = np.dstack([grid, slope_x, slope_y]).astype(np.float32)
        # Bounds how fast a ray can approach the ground (terrain ray marching); with a margin for
        # bilinear interpolation between cells.
        self.max_slope = float(np.hypot(slope_x, slope_y).max() * 1.1 + 0.01)
        self.max_height = float(grid.max() + 0.01)

    def _cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ((np.asarray(x) - self.grid_origin[0]) / self.grid_resolution,
                (np.asarray(y) - self.grid_origin[1]) / self.grid_resolution)

    def surface_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(..., 3): ground height (metres), dz/dx, dz/dy; the same interpolation the ray caster uses."""
        gx, gy = (np.ravel(c).astype(np.float64) for c in self._cells(x, y))
        out = np.empty((gx.size, 3), np.float64)
        _surface_samples(self.surface, gx, gy, out)
        return out.reshape(np.shape(x) + (3,))

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground height, metres."""
        return self.surface_at(x, y)[..., 0]

    def gradient(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dz/dx, dz/dy) of the ground."""
        surface = self.surface_at(x, y)
        return surface[..., 1], surface[..., 2]

    def path_distance_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance to the path centreline, metres (1000 beyond the grid)."""
        gx, gy = (np.ravel(c).astype(np.float64) for c in self._cells(x, y))
        out = np.empty(gx.size, np.float64)
        _grid_samples(self.path_distance, gx, gy, 1e3, out)
        return out.reshape(np.shape(x))

    def ground_fields(self) -> tuple:
        """What `ground_class_at` needs, for compiled code."""
        return (self.path_distance, self.puddle_sdf, self.edge_noise, float(self.grid_origin[0]),
                float(self.grid_origin[1]), float(self.grid_resolution), float(self.path_half_width),
                int(self.path_class))

    def ground_class(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground class id at (x, y): the path, puddles, or grass."""
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        out = np.empty(x.shape, np.uint8)
        _ground_classes(x.ravel(), y.ravel(), self.ground_fields(), out.reshape(-1))
        return out


@njit(cache=True, inline="always")
def _cell(rows, cols, gx, gy):
    gx = min(max(gx, 0.0), cols - 1.000001)
    gy = min(max(gy, 0.0), rows - 1.000001)
    i, j = int(gy), int(gx)
    return i, j, gy - i, gx - j


@njit(cache=True, inline="always")
def bilinear(grid, gx, gy, outside):
    """Bilinear lookup of a 2-D grid at fractional cell (gx, gy); `outside` beyond the grid."""
    rows, cols = grid.shape
    if not (0.0 <= gx <= cols - 1 and 0.0 <= gy <= rows - 1):
        return outside
    i, j, fy, fx = _cell(rows, cols, gx, gy)
    return (grid[i, j] * (1 - fx) + grid[i, j + 1] * fx) * (1 - fy) + (grid[i + 1, j] * (1 - fx) + grid[i + 1, j + 1] * fx) * fy


@njit(cache=True, inline="always")
def bilinear_channel(grid, gx, gy, channel):
    """Bilinear lookup of grid[..., channel] at fractional cell (gx, gy), clamped to the edge."""
    i, j, fy, fx = _cell(grid.shape[0], grid.shape[1], gx, gy)
    return ((grid[i, j, channel] * (1 - fx) + grid[i, j + 1, channel] * fx) * (1 - fy)
            + (grid[i + 1, j, channel] * (1 - fx) + grid[i + 1, j + 1, channel] * fx) * fy)


@njit(cache=True, inline="always")
def bilinear3(grid, gx, gy):
    """Bilinear lookup of the three channels of grid at fractional cell (gx, gy), clamped to the edge."""
    i, j, fy, fx = _cell(grid.shape[0], grid.shape[1], gx, gy)
    w00, w01, w10, w11 = (1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy
    a, b, c, d = grid[i, j], grid[i, j + 1], grid[i + 1, j], grid[i + 1, j + 1]
    return (a[0] * w00 + b[0] * w01 + c[0] * w10 + d[0] * w11, a[1] * w00 + b[1] * w01 + c[1] * w10 + d[1] * w11,
            a[2] * w00 + b[2] * w01 + c[2] * w10 + d[2] * w11)


@njit(cache=True, inline="always")
def tiled_bilinear(tile, u, v):
    """Bilinear lookup in a square tile of 2^k cells that repeats in both directions (u, v in cells)."""
    mask = tile.shape[0] - 1
    fu, fv = math.floor(u), math.floor(v)
    fx, fy = u - fu, v - fv
    j, i = int(fu) & mask, int(fv) & mask
    j1, i1 = (j + 1) & mask, (i + 1) & mask
    return (tile[i, j] * (1 - fx) + tile[i, j1] * fx) * (1 - fy) + (tile[i1, j] * (1 - fx) + tile[i1, j1] * fx) * fy


@njit(cache=True, inline="always")
def ground_class_at(fields, x, y):
    """The ground class at map (x, y) from `Terrain.ground_fields()`: path, puddle or grass."""
    path_distance, puddle_sdf, noise, x0, y0, resolution, half_width, path_class = fields
    cells_per_metre = noise.shape[0] / 16.0  # the tile repeats every 16 m
    wobble = tiled_bilinear(noise, x * cells_per_metre, y * cells_per_metre)
    gx, gy = (x - x0) / resolution, (y - y0) / resolution
    if bilinear(puddle_sdf, gx, gy, 1e3) + 0.25 * wobble < 0:
        return MUD_WATER
    if bilinear(path_distance, gx, gy, 1e3) < half_width + 0.35 * wobble:
        return path_class
    return GRASS


@njit(cache=True)
def _surface_samples(surface, gx, gy, out):
    for k in range(gx.size):
        out[k, 0], out[k, 1], out[k, 2] = bilinear3(surface, gx[k], gy[k])


@njit(cache=True)
def _grid_samples(grid, gx, gy, outside, out):
    for k in range(gx.size):
        out[k] = bilinear(grid, gx[k], gy[k], outside)


@njit(cache=True)
def _ground_classes(xs, ys, fields, out):
    for k in range(xs.size):
        out[k] = ground_class_at(fields, xs[k], ys[k])


@dataclass
class Scene:
    """A generated world: terrain, primitives and the path the ego vehicle follows."""

    seed: int
    kind: str
    terrain: Terrain
    primitives: np.ndarray   # PRIMITIVE_DTYPE
    path: np.ndarray         # (M, 2) centreline, metres, 0.5 m apart
    path_heading: np.ndarray  # (M,) radians
    lane_offset: float       # metres right of the centreline the ego vehicle drives
    speed: float             # ego speed, metres per second


def _value_noise(rng: np.random.Generator, size: int = 256, octaves: int = 4) -> np.ndarray:
    """Tileable fractal noise in [-1, 1]."""
    out = np.zeros((size, size), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = 4 * 2 ** octave
        lattice = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        tiled = np.tile(lattice, (3, 3))
        up = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)[size:2 * size, size:2 * size]
        out += amplitude * up
        total += amplitude
        amplitude *= 0.5
    return np.clip(out / total * 1.6, -1, 1)


def _path(rng: np.random.Generator, length: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth centreline: heading is a sum of slow sinusoids of arc length."""
    s = np.arange(0.0, length, 0.5)
    heading = rng.uniform(-np.pi, np.pi) + sum(
        rng.uniform(0.15, 0.5) * np.sin(s / rng.uniform(25, 90) + rng.uniform(0, 2 * np.pi)) for _ in range(3)
    )
    xy = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1) * 0.5, 0)
    return xy - xy[len(xy) // 8], heading


def _add(prims: list, kind: int, cls: int, material: str, center, size, yaw=0.0, instance=0,
         velocity=(0.0, 0.0, 0.0), travel=0.0) -> None:
    size = np.asarray(size, np.float32)
    prims.append((kind, cls, MATERIAL_ID[material], instance, center, size, yaw, velocity, travel,
                  float(np.linalg.norm(size)) if kind != CYLINDER else float(np.hypot(size[0], size[2]))))


def generate_scene(seed: int, kind: str = "offroad", length: float = 400.0) -> Scene:
    """A reproducible world for `seed`.

    Args:
        kind: "offroad" (dirt trail, dense vegetation, puddles, rocks) or "semiurban"
            (asphalt road, buildings, fences, poles, parked and moving vehicles).
        length: path length, metres.
    """
    if kind not in KINDS:
        raise ValueError(f"scene kind {kind!r} is not supported; supported: {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    path, heading = _path(rng, length)
    urban = kind == "semiurban"
    half_width = 3.5 if urban else 2.0
    resolution = 0.25
    lo = path.min(0) - 80.0
    hi = path.max(0) + 80.0
    shape = tuple(np.ceil((hi - lo) / resolution).astype(int)[::-1] + 1)
    canvas = np.full(shape, 255, np.uint8)
    pixels = np.round((path - lo) / resolution).astype(np.int32)
    cv2.polylines(canvas, [pixels.reshape(-1, 1, 2)], False, 0, 1)
    path_distance = cv2.distanceTransform(canvas, cv2.DIST_L2, 5).astype(np.float32) * resolution

    # Puddles on and beside the path (off-road), a few ponds (both).
    puddles = []
    for _ in range(int(length / (25 if not urban else 120))):
        i = rng.integers(0, len(path))
        normal = np.array([-np.sin(heading[i]), np.cos(heading[i])])
        offset = rng.normal(0, half_width * 0.7) if not urban else rng.choice([-1, 1]) * rng.uniform(9, 20)
        puddles.append((*(path[i] + normal * offset), rng.uniform(0.6, 2.2) if not urban else rng.uniform(2, 5)))
    inside = np.full(shape, 255, np.uint8)
    for px, py, r in puddles:
        c = np.round((np.array([px, py]) - lo) / resolution).astype(int)
        cv2.ellipse(inside, tuple(int(v) for v in c), (int(r / resolution), int(r * rng.uniform(0.5, 1.0) / resolution)),
                    float(rng.uniform(0, 180)), 0, 360, 0, -1)
    outside = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    within = cv2.distanceTransform(255 - inside, cv2.DIST_L2, 5)
    puddle_sdf = ((outside - within) * resolution).astype(np.float32)

    direction = rng.uniform(0, np.pi, 5)
    wavenumber = rng.uniform(2 * np.pi / 120, 2 * np.pi / 30, 5)
    waves = np.stack([rng.uniform(0.1, 0.6, 5) * (0.5 if urban else 1.0), wavenumber * np.cos(direction),
                      wavenumber * np.sin(direction), rng.uniform(0, 2 * np.pi, 5)], 1)
    terrain = Terrain(waves, lo, resolution, path_distance, puddle_sdf, ROAD if urban else TRAIL, half_width,
                      _value_noise(rng))
    primitives = _populate(rng, terrain, path, heading, urban)
    return Scene(seed, kind, terrain, primitives, path, heading, half_width / 2, rng.uniform(5.0, 8.0))


def _populate(rng, terrain: Terrain, path, heading, urban: bool) -> np.ndarray:
    prims: list = []
    instance = iter(range(1, 65535))
    lo = terrain.grid_origin
    hi = lo + np.array(terrain.path_distance.shape[::-1]) * terrain.grid_resolution

    def ground(x, y):
        return float(terrain.height(np.array([x]), np.array([y]))[0])

    def free_spot(min_distance, max_distance):
        for _ in range(50):
            i = rng.integers(0, len(path))
            side = rng.choice([-1.0, 1.0])
            d = rng.uniform(min_distance, max_distance)
            normal = np.array([-np.sin(heading[i]), np.cos(heading[i])])
            x, y = path[i] + side * d * normal + rng.normal(0, 2, 2)
            if terrain.path_distance_at(np.array([x]), np.array([y]))[0] >= min_distance:
                return x, y, heading[i]
        return None

    area = float(len(path) * 0.5 * 2 * 60)  # m² within 60 m of the path
    n_trees = int(area / (120 if not urban else 700))
    for _ in range(n_trees):
        spot = free_spot(5.0 if not urban else 10.0, 60.0)
        if spot is None:
            continue
        x, y, _ = spot
        z = ground(x, y)
        height = rng.uniform(4, 12)
        trunk_r = rng.uniform(0.12, 0.35)
        inst = next(instance)
        _add(prims, CYLINDER, TRUNK, "bark", (x, y, z + height * 0.35), (trunk_r, trunk_r, height * 0.35), instance=inst)
        crown = rng.uniform(1.5, 3.5)
        _add(prims, ELLIPSOID, FOLIAGE, "leaves", (x, y, z + height * 0.7 + crown * 0.3),
             (crown, crown * rng.uniform(0.8, 1.2), crown * rng.uniform(0.9, 1.6)), yaw=rng.uniform(0, np.pi), instance=inst)
    for _ in range(int(area / (90 if not urban else 400))):
        spot = free_spot(3.0, 50.0)
        if spot is None:
            continue
        x, y, _ = spot
        r = rng.uniform(0.4, 1.4)
        _add(prims, ELLIPSOID, BUSH, "shrub", (x, y, ground(x, y) + r * 0.4), (r, r * rng.uniform(0.7, 1.3), r * 0.7),
             yaw=rng.uniform(0, np.pi), instance=next(instance))
    for _ in range(int(area / (400 if not urban else 1500))):
        spot = free_spot(terrain.path_half_width + 0.8, 40.0)
        if spot is None:
            continue
        x, y, _ = spot
        r = rng.uniform(0.25, 1.2)
        _add(prims, ELLIPSOID, ROCK, "stone", (x, y, ground(x, y) + r * 0.2), (r, r * rng.uniform(0.6, 1.2), r * 0.6),
             yaw=rng.uniform(0, np.pi), instance=next(instance))

    step = 40 if urban else 120
    for i in range(20, len(path) - 20, step):
        normal = np.array([-np.sin(heading[i]), np.cos(heading[i])])
        tangent = np.array([np.cos(heading[i]), np.sin(heading[i])])
        side = rng.choice([-1.0, 1.0])
        if urban or rng.random() < 0.5:  # a building or wall set back from the path
            depth, width, height = rng.uniform(5, 12), rng.uniform(6, 16), rng.uniform(3, 9)
            c = path[i] + side * normal * (terrain.path_half_width + rng.uniform(7, 14) + depth / 2)
            _add(prims, BOX, BUILDING, rng.choice(["brick", "concrete"]), (*c, ground(*c) + height / 2 - 0.3),
                 (width / 2, depth / 2, height / 2), yaw=heading[i], instance=next(instance))
        if urban or rng.random() < 0.4:  # a fence along the path: posts and two rails
            inst = next(instance)
            start = path[i] + side * normal * (terrain.path_half_width + rng.uniform(2.0, 4.0))
            n_posts = rng.integers(5, 12)
            for k in range(n_posts):
                p = start + tangent * 2.0 * k
                _add(prims, CYLINDER, FENCE, "wood", (*p, ground(*p) + 0.6), (0.05, 0.05, 0.6), instance=inst)
            mid = start + tangent * (n_posts - 1)
            for h in (0.5, 1.0):
                _add(prims, BOX, FENCE, "wood", (*mid, ground(*mid) + h), ((n_posts - 1), 0.03, 0.05), yaw=heading[i], instance=inst)
        if urban or rng.random() < 0.3:  # a pole (lamp or sign post)
            j = min(i + step // 2, len(path) - 1)
            p = path[j] - side * np.array([-np.sin(heading[j]), np.cos(heading[j])]) * (terrain.path_half_width + 1.2)
            inst = next(instance)
            _add(prims, CYLINDER, POLE, "metal_pole", (*p, ground(*p) + 3.0), (0.08, 0.08, 3.0), instance=inst)
            _add(prims, BOX, POLE, "metal_pole", (*p, ground(*p) + 5.8), (0.35, 0.05, 0.25), yaw=heading[i], instance=inst)

    n_vehicles = int(len(path) * 0.5 / (60 if urban else 150))
    for _ in range(n_vehicles):
        i = rng.integers(0, len(path))
        tangent = np.array([np.cos(heading[i]), np.sin(heading[i])])
        normal = np.array([-tangent[1], tangent[0]])
        moving = rng.random() < 0.5
        offset = -terrain.path_half_width * 0.5 if moving else rng.choice([-1, 1]) * (terrain.path_half_width + 1.5)
        c = path[i] + normal * offset * -1 if moving else path[i] + normal * offset
        speed = rng.uniform(3, 8) if moving else 0.0
        velocity = (*(-tangent * speed), 0.0)
        paint = rng.choice(["car_paint", "car_paint_red", "car_paint_white"])
        inst = next(instance)
        z = ground(*c)
        travel = rng.uniform(20, 60) if moving else 0.0
        _add(prims, BOX, VEHICLE, paint, (*c, z + 0.75), (2.2, 0.9, 0.45), yaw=heading[i], instance=inst, velocity=velocity, travel=travel)
        _add(prims, BOX, VEHICLE, paint, (*(c - tangent * 0.3), z + 1.45), (1.2, 0.8, 0.3), yaw=heading[i], instance=inst, velocity=velocity, travel=travel)
        _add(prims, BOX, VEHICLE, "car_engine", (*(c + tangent * 1.6), z + 0.55), (0.65, 0.85, 0.3), yaw=heading[i], instance=inst, velocity=velocity, travel=travel)

    n_people = int(len(path) * 0.5 / (35 if urban else 70))
    for _ in range(n_people):
        i = rng.integers(0, len(path))
        tangent = np.array([np.cos(heading[i]), np.sin(heading[i])])
        normal = np.array([-tangent[1], tangent[0]])
        crossing = rng.random() < 0.4
        c = path[i] + normal * rng.choice([-1, 1]) * (terrain.path_half_width + rng.uniform(0.5, 4.0))
        direction = -np.sign(np.dot(c - path[i], normal)) * normal if crossing else tangent * rng.choice([-1, 1])
        speed = rng.uniform(0.8, 1.8) if rng.random() < 0.8 else 0.0
        velocity = (*(direction * speed), 0.0)
        travel = rng.uniform(4, 12) if speed else 0.0
        z = ground(*c)
        inst = next(instance)
        height = rng.uniform(1.55, 1.9)
        cloth = rng.choice(["clothing", "clothing_blue"])
        _add(prims, CYLINDER, PERSON, cloth, (*c, z + height * 0.27), (0.13, 0.13, height * 0.27), instance=inst, velocity=velocity, travel=travel)
        _add(prims, ELLIPSOID, PERSON, cloth, (*c, z + height * 0.67), (0.21, 0.15, height * 0.16), yaw=float(np.arctan2(direction[1], direction[0])), instance=inst, velocity=velocity, travel=travel)
        _add(prims, ELLIPSOID, PERSON, "skin", (*c, z + height * 0.92), (0.1, 0.1, 0.12), instance=inst, velocity=velocity, travel=travel)

    array = np.array(prims, dtype=PRIMITIVE_DTYPE)
    keep = np.all((array["center"][:, :2] > lo) & (array["center"][:, :2] < hi), axis=1)
    return array[keep]
