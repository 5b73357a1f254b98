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
from .scene import GROUND_MATERIAL, MATERIALS, Scene, Terrain, bilinear3, bilinear_channel, ground_class_at, tiled_bilinear
from .scenarios import Scenario
from .shadows import ShadowMap

MAX_TERRAIN_RANGE = 1000.0  # beyond this haze hides the ground; far terrain is approximate anyway
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
def _clearance(surface, x0, y0, resolution, ox, oy, oz, dx, dy, dz, t):
    """f(t): height of the ray above the ground at distance t."""
    return oz + t * dz - bilinear_channel(surface, (ox + t * dx - x0) / resolution, (oy + t * dy - y0) / resolution, 0)


@njit(cache=True, inline="always")
def _newton(surface, x0, y0, resolution, ox, oy, oz, dx, dy, dz, t, lo, hi, approach):
    """Refine a ground crossing from t; [lo, hi] brackets it when hi is finite. Returns (t, f)."""
    f = np.inf
    for _ in range(16):
        h, sx, sy = bilinear3(surface, (ox + t * dx - x0) / resolution, (oy + t * dy - y0) / resolution)
        f = oz + t * dz - h
        if abs(f) < 0.001:
            break
        if f > 0:
            lo = t
        else:
            hi = t
        slope = dz - (sx * dx + sy * dy)
        t_next = t - f / slope if slope < -1e-6 else np.inf
        if math.isfinite(hi):  # bracketed: Newton if it stays inside, else bisect
            t = t_next if lo < t_next < hi else 0.5 * (lo + hi)
        else:  # still above ground: Newton, at most 2 m ahead, or a conservative step
            t = t_next if t < t_next <= t + 2.0 else t + f / approach
    return t, f


@njit(cache=True)
def _terrain_march(origins, directions, surface, x0, y0, resolution, max_slope, max_height, max_range, ground,
                   material_of, t_out, normal_out, cls_out, material_out, instance_out):
    """First crossing of each ray with the height field; writes hits closer than t_out (rays that
    already hit an object stop searching beyond it).

    Newton iterations from the crossing of the local ground plane find most hits in a few steps;
    the result is accepted when samples along the ray before it are all above the ground.
    Otherwise a conservative march finds the first crossing: with f(t) = o_z + t d_z - h(o_xy + t d_xy)
    and |grad h| <= S, a step of f / (S |d_xy| - d_z) cannot pass through the ground.
    """
    rows, cols = directions.shape[0], directions.shape[1]
    for r in range(rows):
        previous = np.inf  # the neighbouring ray's hit: a close first guess for Newton
        for c in range(cols):
            dx, dy, dz = directions[r, c, 0], directions[r, c, 1], directions[r, c, 2]
            ox, oy, oz = origins[r, c, 0], origins[r, c, 1], origins[r, c, 2]
            approach = max_slope * math.sqrt(dx * dx + dy * dy) - dz
            if approach <= 1e-6 or (dz >= 0.0 and oz >= max_height):
                continue  # rising faster than the ground can, or above all of it: never hits
            limit = min(max_range, (max_height - oz) / dz + 1.0) if dz > 0.0 else max_range
            limit = min(limit, t_out[r, c])
            f0 = _clearance(surface, x0, y0, resolution, ox, oy, oz, dx, dy, dz, 0.0)
            t, f = np.inf, np.inf
            if dz < -1e-3:
                guess = previous if previous < max_range else min(f0 / -dz, max_range)
                t, f = _newton(surface, x0, y0, resolution, ox, oy, oz, dx, dy, dz, guess, 0.0, np.inf, approach)
                if abs(f) < 0.02 and 0.0 < t < max_range and t >= t_out[r, c]:
                    previous = t
                    continue  # behind the object this ray already hit
                if abs(f) < 0.02 and 0.0 < t < max_range:
                    for k in range(1, 5):
                        if _clearance(surface, x0, y0, resolution, ox, oy, oz, dx, dy, dz, t * k / 5.0) < 0.0:
                            f = np.inf  # passed through a bump first: march instead
                            break
                else:
                    f = np.inf
            if not abs(f) < 0.02:
                t, t_before, f = 0.0, 0.0, f0
                while f >= 0.01 and t <= limit:
                    # Grazing rays creep towards the ground: a floor of 1 % of the range keeps them
                    # moving (a bump thinner than that could be skipped; a crossing is bisected below).
                    t_before, t = t, t + max(f / approach, 0.01 * t + 0.01)
                    f = _clearance(surface, x0, y0, resolution, ox, oy, oz, dx, dy, dz, t)
                if t > limit:
                    continue
                lo, hi = (t_before, t) if f < 0 else (t, np.inf)
                t, f = _newton(surface, x0, y0, resolution, ox, oy, oz, dx, dy, dz, t, lo, hi, approach)
            previous = t if abs(f) < 0.02 and 0.0 < t < max_range else np.inf
            if abs(f) < 0.02 and 0.0 < t < max_range and t < t_out[r, c]:
                _, sx, sy = bilinear3(surface, (ox + t * dx - x0) / resolution, (oy + t * dy - y0) / resolution)
                t_out[r, c] = t
                norm = math.sqrt(sx * sx + sy * sy + 1.0)
                normal_out[r, c, 0] = -sx / norm
                normal_out[r, c, 1] = -sy / norm
                normal_out[r, c, 2] = 1.0 / norm
                cls = ground_class_at(ground, ox + t * dx, oy + t * dy)
                cls_out[r, c] = cls
                material_out[r, c] = material_of[cls]
                instance_out[r, c] = 0


def terrain_hits(grid: RayGrid, terrain: Terrain, hits: Hits | None = None) -> Hits:
    """First hits of the grid's rays with the ground, with ground classes.

    `hits` (e.g. of the objects, cast first so that the search stops at them) is updated in place
    where the ground is closer; a new set when None.
    """
    hits = hits if hits is not None else Hits.empty(grid.shape)
    origins = np.broadcast_to(grid.origins, grid.directions.shape)
    _terrain_march(origins, grid.directions, terrain.surface, float(terrain.grid_origin[0]),
                   float(terrain.grid_origin[1]), float(terrain.grid_resolution), terrain.max_slope,
                   terrain.max_height, MAX_TERRAIN_RANGE, terrain.ground_fields(), _GROUND_LUT, hits.t, hits.normal,
                   hits.cls, hits.material, hits.instance)
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
    hits = cast(grid, scene.primitives, time_s, camera_rects(model, T_map_cam, max_range))
    terrain_hits(grid, scene.terrain, hits)
    depth = (hits.t * rays[..., 2]).astype(np.float32)
    return CameraView(hits, directions, origin, depth)


@dataclass
class Lighting:
    """Everything that lights the scene at one instant."""

    scenario: Scenario
    shadows: ShadowMap
    headlight_position: np.ndarray   # (3,) map frame
    headlight_direction: np.ndarray  # (3,) unit, map frame


# Per-pixel shading is compiled (numba): written with numpy it was ~25 array temporaries per pixel
# and dominated the frame time.
_TINT_HASH = 2654435761  # Knuth's multiplicative hash, for a stable per-instance brightness variation


@njit(cache=True)
def _shade(t, material, instance, normal, directions, origin, tile, albedo_table, texture_table, scale_table,
           temperature_table, heating_table, emissivity_table, sun, sun_irradiance, sun_color, sky_ambient,
           sky_zenith, sky_horizon, fog_color, visibility, headlight_position, headlight_direction, headlights,
           shadow_depth, shadow_lo, shadow_basis, shadow_resolution, shadow_bias, air_k, sky_k, thermal_heating,
           rgb_out, kelvin_out, want_thermal):
    rows, cols = t.shape
    sun_up = sun_irradiance > 0.0 and sun[2] > 0.0
    sky_mean = (sky_zenith[0] + sky_zenith[1] + sky_zenith[2] + sky_horizon[0] + sky_horizon[1] + sky_horizon[2]) / 6.0
    fog_level = sky_ambient + 0.3 * sun_irradiance + 0.002
    for r in range(rows):
        for c in range(cols):
            dx, dy, dz = directions[r, c, 0], directions[r, c, 1], directions[r, c, 2]
            elevation = min(max(dz, 0.0), 1.0)
            distance = t[r, c]
            if not math.isfinite(distance):  # sky
                glow = 0.0
                if sun[2] > -0.1:
                    glow = max(dx * sun[0] + dy * sun[1] + dz * sun[2], 0.0) ** 64 * 2.0
                for k in range(3):
                    rgb_out[r, c, k] = sky_horizon[k] * (1 - elevation) + sky_zenith[k] * elevation + glow * sun_color[k]
                if want_thermal:
                    kelvin_out[r, c] = sky_k + (air_k - sky_k) * (1 - elevation) ** 4
                continue
            m = material[r, c]
            nx, ny, nz = normal[r, c, 0], normal[r, c, 1], normal[r, c, 2]
            px, py, pz = origin[0] + dx * distance, origin[1] + dy * distance, origin[2] + dz * distance
            scale = scale_table[m] * 16.0  # texture cells per metre; the tile spans 16 cells per period
            if abs(nz) > 0.7:
                texture = tiled_bilinear(tile, px * scale, py * scale)
            else:
                texture = tiled_bilinear(tile, (0.7 * px + 0.7 * py) * scale, pz * scale)
            tint = 1.0
            if instance[r, c] > 0:
                tint = 0.8 + 0.4 * (((instance[r, c] * _TINT_HASH) & 0xFFFFFFFF) % 1000) / 1000.0
            lit = 1.0
            if sun_up and shadow_depth.shape[0] > 1:
                a = px * shadow_basis[0, 0] + py * shadow_basis[0, 1] + pz * shadow_basis[0, 2]
                b = px * shadow_basis[1, 0] + py * shadow_basis[1, 1] + pz * shadow_basis[1, 2]
                depth = px * shadow_basis[2, 0] + py * shadow_basis[2, 1] + pz * shadow_basis[2, 2]
                i = int(round((b - shadow_lo[1]) / shadow_resolution))
                j = int(round((a - shadow_lo[0]) / shadow_resolution))
                if 0 <= i < shadow_depth.shape[0] and 0 <= j < shadow_depth.shape[1]:
                    if shadow_depth[i, j] > depth + shadow_bias:
                        lit = 0.0
            lambert = max(nx * sun[0] + ny * sun[1] + nz * sun[2], 0.0) * lit if sun_up else 0.0
            ambient = sky_ambient * (0.6 + 0.4 * nz) * 0.5 / max(sky_mean, 1e-6)
            lamp = 0.0
            if headlights > 0.0:
                lx, ly, lz = headlight_position[0] - px, headlight_position[1] - py, headlight_position[2] - pz
                lamp_distance = math.sqrt(lx * lx + ly * ly + lz * lz)
                inv = 1.0 / max(lamp_distance, 1e-3)
                lx, ly, lz = lx * inv, ly * inv, lz * inv
                on_axis = -(lx * headlight_direction[0] + ly * headlight_direction[1] + lz * headlight_direction[2])
                cone = min(max((on_axis - 0.8) / 0.2, 0.0), 1.0) ** 1.5
                facing = max(nx * lx + ny * ly + nz * lz, 0.0)
                lamp = headlights * 100.0 * cone * facing / max(lamp_distance, 1.0) ** 2
            transmittance = math.exp(-distance * 3.0 / visibility)
            lamp_color = (1.0, 0.97, 0.9)
            for k in range(3):
                albedo = albedo_table[m, k] * (1.0 + texture_table[m] * 0.6 * texture) * tint
                sky_k_color = 0.5 * (sky_zenith[k] + sky_horizon[k])
                irradiance = sun_irradiance * lambert * sun_color[k] + ambient * sky_k_color + lamp * lamp_color[k]
                rgb_out[r, c, k] = albedo * irradiance * transmittance + fog_color[k] * fog_level * (1 - transmittance)
            if want_thermal:
                exposure = lambert if sun_up else 0.6  # at night: heat stored during the day
                surface = (air_k + temperature_table[m] + heating_table[m] * thermal_heating * exposure
                           + 0.6 * texture_table[m] * texture + (tint - 1.0) * 3.0)
                sky = sky_k + (air_k - sky_k) * (1 - elevation) ** 4
                e = emissivity_table[m]
                apparent = (e * surface ** 4 + (1 - e) * sky ** 4) ** 0.25
                thermal_transmittance = math.exp(-distance * 3.0 / (visibility * 8.0))
                kelvin_out[r, c] = apparent * thermal_transmittance + air_k * (1 - thermal_transmittance)


_NO_SHADOW = (np.zeros((1, 1), np.float32), np.zeros(2), np.eye(3), 1.0, 0.0)


def shade(scene: Scene, cam: CameraView, lighting: Lighting, thermal: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Linear RGB radiance (H, W, 3) before the camera's exposure and noise, and (if `thermal`) the
    apparent LWIR temperature (H, W) in kelvin: materials, sun and shadows, sky light, headlights,
    haze and fog, emissivity."""
    sc = lighting.scenario
    shadow = lighting.shadows
    shadow_args = _NO_SHADOW if shadow is None or shadow.depth is None else (
        shadow.depth, shadow.lo.astype(np.float64), shadow.basis, float(shadow.resolution), float(shadow.bias))
    rgb = np.empty(cam.hits.t.shape + (3,), np.float32)
    kelvin = np.empty(cam.hits.t.shape, np.float32) if thermal else np.empty((1, 1), np.float32)
    f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731
    _shade(cam.hits.t, cam.hits.material, cam.hits.instance.astype(np.int64), cam.hits.normal, cam.directions,
           f64(cam.origin), scene.terrain.edge_noise, ALBEDO, TEXTURE, TEXTURE_SCALE, TEMPERATURE, SUN_HEATING,
           EMISSIVITY, f64(sc.sun_direction()), float(sc.sun_irradiance), f64(sc.sun_color), float(sc.sky_ambient),
           f64(sc.sky_zenith), f64(sc.sky_horizon), f64(sc.fog_color), float(sc.visibility_m),
           f64(lighting.headlight_position), f64(lighting.headlight_direction), float(sc.headlights),
           *shadow_args, float(sc.air_temperature_k), float(sc.sky_temperature_k), float(sc.thermal_heating),
           rgb, kelvin, thermal)
    return rgb, (kelvin if thermal else None)


def radiance(scene: Scene, cam: CameraView, lighting: Lighting) -> np.ndarray:
    """Linear RGB radiance (H, W, 3) seen by each pixel, before the camera's exposure and noise."""
    return shade(scene, cam, lighting, thermal=False)[0]


_GAMMA = ((np.arange(4096) / 4095.0) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)  # sRGB-like encoding, 12-bit in


def expose(linear: np.ndarray, scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    """Auto-exposure, shot and read noise, sRGB-like gamma → rgb8.

    The gain brings the mean luminance to mid-grey but keeps the brightest 1 % of the image from
    clipping (highlight metering, so headlights do not blind the camera) and never exceeds the
    sensor's limit, which is what leaves night images dark and noisy.
    """
    metered = (linear[::4, ::4] @ np.float32((0.2126, 0.7152, 0.0722))).ravel()
    gain = min(0.18 / max(float(metered.mean()), 1e-6), 0.9 / max(float(np.percentile(metered, 99)), 1e-6))
    gain = float(np.clip(gain, 0.25, scenario.max_gain))
    signal = linear * gain
    sigma = np.sqrt(np.clip(signal, 0, None) * gain / 3000.0 + (scenario.read_noise * gain) ** 2)
    noisy = signal + rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    return _GAMMA[(np.clip(noisy, 0, 1) * (len(_GAMMA) - 1) + 0.5).astype(np.int32)]


def luminance(linear: np.ndarray) -> np.ndarray:
    return linear @ np.float32((0.2126, 0.7152, 0.0722))


def thermal_counts(kelvin: np.ndarray, fixed_pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radiometric 16-bit counts (TLinear convention: counts = kelvin × 100) with non-uniformity and noise."""
    noisy = kelvin * 100.0 + fixed_pattern + rng.standard_normal(kelvin.shape, dtype=np.float32) * 5.0
    return np.clip(noisy + 0.5, 0, 65535).astype(np.uint16)


