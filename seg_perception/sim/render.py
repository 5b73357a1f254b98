"""Cameras of the synthetic world: ray generation, terrain and object hits, RGB / thermal / luminance shading.

One geometry pass per camera pose gives labels, depth, normals and materials; RGB, thermal and the
event camera's luminance are shaded from it, so every modality and every ground truth agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from seg_perception.io.camera import CameraModel

from .raycast import Hits, RayGrid, Rects, cast
from .scene import GROUND_MATERIAL, MATERIALS, Scene, Terrain, sample_grid
from .scenarios import Scenario
from .shadows import ShadowMap

MAX_TERRAIN_RANGE = 2000.0
ALBEDO = np.array([m.albedo for m in MATERIALS], np.float32)
TEXTURE = np.array([m.texture for m in MATERIALS], np.float32)
TEXTURE_SCALE = np.array([m.texture_scale for m in MATERIALS], np.float32)
TEMPERATURE = np.array([m.temperature for m in MATERIALS], np.float32)
SUN_HEATING = np.array([m.sun_heating for m in MATERIALS], np.float32)
EMISSIVITY = np.array([m.emissivity for m in MATERIALS], np.float32)


def optical_rays(model: CameraModel) -> np.ndarray:
    """Unit ray directions (H, W, 3) through every pixel centre, in the camera's optical frame (distortion included)."""
    width, height = model.image_size
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = model.unproject(np.stack([u.ravel(), v.ravel()], 1), unit=True)
    return rays.reshape(height, width, 3).astype(np.float32)


@njit(cache=True, inline="always")
def _bilinear(surface, gx, gy, channel):
    rows, cols = surface.shape[0], surface.shape[1]
    gx = min(max(gx, 0.0), cols - 1.000001)
    gy = min(max(gy, 0.0), rows - 1.000001)
    i, j = int(gy), int(gx)
    fy, fx = gy - i, gx - j
    return ((surface[i, j, channel] * (1 - fx) + surface[i, j + 1, channel] * fx) * (1 - fy)
            + (surface[i + 1, j, channel] * (1 - fx) + surface[i + 1, j + 1, channel] * fx) * fy)


@njit(cache=True)
def _terrain_newton(origins, directions, surface, x0, y0, resolution, iterations, max_range, t_out, normal_out):
    """Newton iterations on f(t) = o_z + t d_z - h(o_xy + t d_xy) per ray; writes hits closer than t_out."""
    rows, cols = directions.shape[0], directions.shape[1]
    for r in range(rows):
        for c in range(cols):
            dx, dy, dz = directions[r, c, 0], directions[r, c, 1], directions[r, c, 2]
            if dz >= 0.03:  # gentle terrain never rises into rays pointing clearly upwards
                continue
            ox, oy, oz = origins[r, c, 0], origins[r, c, 1], origins[r, c, 2]
            h0 = _bilinear(surface, (ox - x0) / resolution, (oy - y0) / resolution, 0)
            t = (oz - h0) / max(-dz, 1e-3) if dz < -1e-3 else max_range
            t = min(max(t, 0.0), max_range)
            for _ in range(iterations + 1):
                gx, gy = (ox + t * dx - x0) / resolution, (oy + t * dy - y0) / resolution
                h = _bilinear(surface, gx, gy, 0)
                sx, sy = _bilinear(surface, gx, gy, 1), _bilinear(surface, gx, gy, 2)
                f = oz + t * dz - h
                slope = min(dz - (sx * dx + sy * dy), -1e-4)
                t_next = min(max(t - f / slope, 0.0), max_range)
                if abs(f) < 0.002 or _ == iterations:
                    break
                t = t_next
            if abs(f) < 0.02 and 0.0 < t < max_range and t < t_out[r, c]:
                t_out[r, c] = t
                norm = math.sqrt(sx * sx + sy * sy + 1.0)
                normal_out[r, c, 0] = -sx / norm
                normal_out[r, c, 1] = -sy / norm
                normal_out[r, c, 2] = 1.0 / norm


def terrain_hits(grid: RayGrid, terrain: Terrain, iterations: int = 8) -> Hits:
    """First hits of the grid's rays with the ground (Newton iterations on the height field), with ground classes."""
    hits = Hits.empty(grid.shape)
    origins = np.broadcast_to(grid.origins, grid.directions.shape)
    _terrain_newton(origins, grid.directions, terrain.surface, float(terrain.grid_origin[0]),
                    float(terrain.grid_origin[1]), float(terrain.grid_resolution), iterations, MAX_TERRAIN_RANGE,
                    hits.t, hits.normal)
    hit = np.isfinite(hits.t)
    points = origins[hit] + grid.directions[hit] * hits.t[hit, None]
    cls = terrain.ground_class(points[:, 0], points[:, 1])
    hits.cls[hit] = cls
    hits.material[hit] = _GROUND_LUT[cls]
    return hits


_GROUND_LUT = np.zeros(256, np.uint8)
for _cls, _material in GROUND_MATERIAL.items():
    _GROUND_LUT[_cls] = _material


_EDGES = np.array([(i, i ^ bit) for i in range(8) for bit in (1, 2, 4) if i < i ^ bit])  # the 12 box edges


def _corners(centers: np.ndarray, primitives: np.ndarray) -> np.ndarray:
    """The 8 corners (N, 8, 3) of each primitive's oriented bounding box, map frame."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float32)
    local = signs[None] * primitives["size"][:, None, :]
    c, s = np.cos(primitives["yaw"])[:, None], np.sin(primitives["yaw"])[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return centers[:, None, :] + np.stack([x, y, local[..., 2]], -1)


def camera_rects(model: CameraModel, T_map_cam: np.ndarray, max_range: float):
    """Culling for a camera grid: the pixel rectangle each primitive can cover.

    Primitives whose bounding sphere is outside the view frustum (its four side planes, the
    camera plane and `max_range`) are skipped. The rest get the bounding rectangle of their
    oriented box's projected corners (through the lens model), padded because distortion bows
    edges; a primitive reaching behind the camera plane is tested against the whole image.
    """
    width, height = model.image_size
    K = model.effective_K
    R, origin = T_map_cam[:3, :3], T_map_cam[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    margin = 0.1  # normalised units: the frustum widened for distortion
    x_left, x_right = -cx / fx - margin, (width - cx) / fx + margin
    y_top, y_bottom = -cy / fy - margin, (height - cy) / fy + margin
    planes = np.array([[1.0, 0.0, -x_left], [-1.0, 0.0, x_right], [0.0, 1.0, -y_top], [0.0, -1.0, y_bottom]])
    planes /= np.linalg.norm(planes, axis=1, keepdims=True)

    def rects(centers: np.ndarray, primitives: np.ndarray) -> Rects:
        local = (centers - origin) @ R  # map → optical
        r = primitives["radius"].astype(np.float64) * 1.02 + 0.05
        z = local[:, 2]
        inside = np.flatnonzero((z > -r) & (z - r < max_range) & np.all(local @ planes.T > -r[:, None], axis=1))
        corners = (_corners(centers[inside], primitives[inside]) - origin) @ R
        pixels, valid = model.project(corners.reshape(-1, 3))
        pixels = pixels.reshape(-1, 8, 2)
        valid = valid.reshape(-1, 8)
        lo = np.where(valid[..., None], pixels, np.inf).min(1)
        hi = np.where(valid[..., None], pixels, -np.inf).max(1)
        # Boxes reaching behind the camera: clip their edges at a near plane; the clipped points
        # project far out and extend the rectangle towards the image border on their side.
        clipped = ~valid.all(1)
        if clipped.any():
            near = 0.05
            a, b = corners[clipped][:, _EDGES[:, 0]], corners[clipped][:, _EDGES[:, 1]]
            crossing = (a[..., 2] - near) * (b[..., 2] - near) < 0
            fraction = np.where(crossing, (near - a[..., 2]) / np.where(crossing, b[..., 2] - a[..., 2], 1.0), 0.0)
            point = a + (b - a) * fraction[..., None]
            u = np.clip(fx * point[..., 0] / near + cx, -1e6, 1e6)
            v = np.clip(fy * point[..., 1] / near + cy, -1e6, 1e6)
            uv = np.stack([u, v], -1)
            lo[clipped] = np.minimum(lo[clipped], np.where(crossing[..., None], uv, np.inf).min(1))
            hi[clipped] = np.maximum(hi[clipped], np.where(crossing[..., None], uv, -np.inf).max(1))
        seen = np.isfinite(lo).all(1)
        pad = 3.0 + 0.05 * np.where(seen[:, None], np.minimum(hi - lo, 4 * max(width, height)), 0.0)
        return Rects.build(inside[seen], np.floor(lo[seen, 1] - pad[seen, 1]), np.ceil(hi[seen, 1] + pad[seen, 1]) + 1,
                           np.floor(lo[seen, 0] - pad[seen, 0]), np.ceil(hi[seen, 0] + pad[seen, 0]) + 1, (height, width))

    return rects


@dataclass
class CameraView:
    """Geometry of one camera image: what every pixel sees."""

    hits: Hits
    directions: np.ndarray  # (H, W, 3) unit rays, map frame
    origin: np.ndarray      # (3,) camera centre, map frame
    depth: np.ndarray       # (H, W) float32 optical-frame z, metres; +inf where nothing was hit

    @property
    def labels(self) -> np.ndarray:
        return self.hits.cls

    def points(self) -> np.ndarray:
        return self.origin + self.directions * np.where(np.isfinite(self.hits.t), self.hits.t, 0)[..., None]


def view(scene: Scene, model: CameraModel, rays: np.ndarray, T_map_cam: np.ndarray, time_s: float,
         max_range: float = 400.0) -> CameraView:
    """Cast a camera's rays at pose T_map_cam (optical frame → map) and time `time_s`."""
    R = T_map_cam[:3, :3].astype(np.float32)
    directions = rays @ R.T
    origin = T_map_cam[:3, 3].astype(np.float32)
    grid = RayGrid(origin, directions)
    hits = terrain_hits(grid, scene.terrain)
    cast(grid, scene.primitives, time_s, camera_rects(model, T_map_cam, max_range), hits)
    depth = (hits.t * rays[..., 2]).astype(np.float32)
    return CameraView(hits, directions, origin, depth)


@dataclass
class Lighting:
    """Everything that lights the scene at one instant."""

    scenario: Scenario
    shadows: ShadowMap
    headlight_position: np.ndarray   # (3,) map frame
    headlight_direction: np.ndarray  # (3,) unit, map frame


def _texture(scene: Scene, points: np.ndarray, normal: np.ndarray, material: np.ndarray) -> np.ndarray:
    """Procedural texture in [-1, 1]: planar mapping on the ground, cylindrical-ish on walls."""
    scale = TEXTURE_SCALE[material] * 16.0  # texture cells per metre (the noise tile spans 16 cells)
    flat = np.abs(normal[..., 2]) > 0.7
    u = np.where(flat, points[..., 0], points[..., 0] * 0.7 + points[..., 1] * 0.7) * scale
    v = np.where(flat, points[..., 1], points[..., 2]) * scale
    return sample_grid(scene.terrain.edge_noise, u, v, wrap=True)


def _tint(instance: np.ndarray) -> np.ndarray:
    """A stable per-instance brightness variation in [0.8, 1.2]."""
    return 0.8 + 0.4 * ((instance.astype(np.uint32) * 2654435761) % 1000 / 1000.0).astype(np.float32)


def radiance(scene: Scene, cam: CameraView, lighting: Lighting) -> np.ndarray:
    """Linear RGB radiance (H, W, 3) seen by each pixel, before the camera's exposure and noise."""
    sc = lighting.scenario
    hits = cam.hits
    hit = np.isfinite(hits.t)
    points = cam.points()
    n = hits.normal
    material = hits.material
    albedo = ALBEDO[material] * (1.0 + TEXTURE[material, None] * 0.6 * _texture(scene, points, n, material)[..., None])
    albedo *= np.where(hits.instance > 0, _tint(hits.instance), 1.0)[..., None]
    sun = sc.sun_direction()
    irradiance = np.zeros(hits.t.shape + (3,), np.float32)
    if sc.sun_irradiance > 0 and sun[2] > 0:
        lambert = np.clip(n @ sun.astype(np.float32), 0, None)
        lit = lighting.shadows.lit(points) if lighting.shadows is not None else 1.0
        irradiance += (sc.sun_irradiance * lambert * lit)[..., None] * np.float32(sc.sun_color)
    sky = 0.5 * (np.float32(sc.sky_zenith) + np.float32(sc.sky_horizon))
    irradiance += (sc.sky_ambient * (0.6 + 0.4 * n[..., 2]))[..., None] * sky / max(sky.mean(), 1e-6) * 0.5
    if sc.headlights > 0:
        to_lamp = lighting.headlight_position - points
        distance = np.linalg.norm(to_lamp, axis=-1)
        to_lamp /= np.maximum(distance, 1e-3)[..., None]
        on_axis = np.clip(-(to_lamp @ lighting.headlight_direction.astype(np.float32)), 0, None)
        cone = np.clip((on_axis - 0.8) / 0.2, 0, 1) ** 1.5
        facing = np.clip(np.einsum("...k,...k->...", n, to_lamp), 0, None)
        irradiance += (sc.headlights * 100.0 * cone * facing / np.maximum(distance, 1.0) ** 2)[..., None] * np.float32((1.0, 0.97, 0.9))
    color = albedo * irradiance
    # Sky: a vertical gradient with a glow around the sun.
    elevation = np.clip(cam.directions[..., 2], 0, 1)[..., None]
    sky_color = np.float32(sc.sky_horizon) * (1 - elevation) + np.float32(sc.sky_zenith) * elevation
    if sun[2] > -0.1:
        glow = np.clip(cam.directions @ sun.astype(np.float32), 0, 1) ** 64
        sky_color = sky_color + glow[..., None] * np.float32(sc.sun_color) * 2.0
    color = np.where(hit[..., None], color, sky_color)
    # Haze and fog: extinction 3 / visibility (5 % contrast at the visibility distance).
    transmittance = np.exp(-np.where(hit, hits.t, np.inf) * (3.0 / sc.visibility_m))[..., None]
    fog = np.float32(sc.fog_color) * (sc.sky_ambient + 0.3 * sc.sun_irradiance + 0.002)
    return np.where(hit[..., None], color * transmittance + fog * (1 - transmittance), sky_color).astype(np.float32)


def expose(linear: np.ndarray, scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    """Auto-exposure (gain-limited), shot and read noise, sRGB-like gamma → rgb8."""
    luminance = float(np.mean(linear @ np.float32((0.2126, 0.7152, 0.0722))))
    gain = float(np.clip(0.18 / max(luminance, 1e-6), 0.25, scenario.max_gain))
    signal = linear * gain
    sigma = np.sqrt(np.clip(signal, 0, None) * gain / 3000.0 + (scenario.read_noise * gain) ** 2)
    noisy = signal + rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    return (np.clip(noisy, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def luminance(linear: np.ndarray) -> np.ndarray:
    return linear @ np.float32((0.2126, 0.7152, 0.0722))


def temperature(scene: Scene, cam: CameraView, lighting: Lighting) -> np.ndarray:
    """Apparent LWIR temperature (H, W), kelvin: material temperature, sun heating, emissivity, atmosphere."""
    sc = lighting.scenario
    hits = cam.hits
    hit = np.isfinite(hits.t)
    material = hits.material
    points = cam.points()
    sun = sc.sun_direction()
    if sc.sun_irradiance > 0 and sun[2] > 0:
        lit = lighting.shadows.lit(points) if lighting.shadows is not None else 1.0
        exposure = np.clip(hits.normal @ sun.astype(np.float32), 0, None) * lit
    else:
        exposure = np.float32(0.6)  # heat stored during the day, released at night
    surface = (sc.air_temperature_k + TEMPERATURE[material] + SUN_HEATING[material] * sc.thermal_heating * exposure
               + 0.6 * TEXTURE[material] * _texture(scene, points, hits.normal, material)
               + np.where(hits.instance > 0, (_tint(hits.instance) - 1.0) * 3.0, 0.0))
    sky = sc.sky_temperature_k + (sc.air_temperature_k - sc.sky_temperature_k) * (1 - np.clip(cam.directions[..., 2], 0, 1)) ** 4
    e = EMISSIVITY[material]
    apparent = (e * surface ** 4 + (1 - e) * sky ** 4) ** 0.25
    transmittance = np.exp(-np.where(hit, hits.t, np.inf) * (3.0 / (sc.visibility_m * 8.0)))
    observed = apparent * transmittance + sc.air_temperature_k * (1 - transmittance)
    return np.where(hit, observed, sky).astype(np.float32)


def thermal_counts(kelvin: np.ndarray, fixed_pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radiometric 16-bit counts (TLinear convention: counts = kelvin × 100) with non-uniformity and noise."""
    noisy = kelvin * 100.0 + fixed_pattern + rng.standard_normal(kelvin.shape, dtype=np.float32) * 5.0
    return np.clip(noisy + 0.5, 0, 65535).astype(np.uint16)


