"""Event-camera simulator (ESIM / v2e style) driven by log-intensity renders.

Pixel model. Each pixel keeps a reference log intensity `ref` (the level of its last crossing) and
fires when its log intensity `L` leaves the band `ref - C_off < L < ref + C_on`:

- Between two renders, `L` of every pixel is linear in time (ESIM). Every crossing of
  `ref + k C_on` (ON) or `ref - k C_off` (OFF) is an event, stamped at the crossing's linearly
  interpolated time (to the nearest ns inside (t0, t1]), and moves `ref` by one threshold. A pixel can
  therefore fire several times per interval; since `L` is monotone inside an interval, all of them
  have the same polarity.
- Contrast thresholds differ from pixel to pixel (fixed-pattern mismatch): `C ~ N(mean, sigma)`
  drawn once per simulator from its seed, clipped below at `MIN_THRESHOLD`.
- Refractory period: a crossing less than `refractory_ns` after the pixel's previous *emitted*
  event is dropped, but `ref` still moves through it. This is what a real pixel does: during the
  refractory period its differencing amplifier is held in reset and keeps following the input, so
  the change that happens while it is blind is lost rather than released as a burst afterwards.
  The filter is exact (greedy in time order per pixel, on the integer timestamps) and vectorised:
  each round keeps, for every pixel at once, the next crossing at least `refractory_ns` after the
  one kept before, so the rounds number at most the most events one pixel emits in one interval.
- Leak (v2e): `ref` drifts down by `leak_rate_hz * C_on` per second, so a static pixel emits ON
  events at `leak_rate_hz`. The drift is linear in time, so `L - ref` stays linear inside an
  interval and the crossing times stay exact. With leak on, `reset` starts each pixel at a random
  phase of its leak cycle, as v2e does, so that static pixels do not all fire at once.
- Shot noise: per pixel a Poisson process of `noise_rate_hz`, random polarity, uniform times. Noise
  events bypass the pixel model: they neither move `ref` nor obey or restart the refractory period.

Events use `seg_perception.io.events.EVENT_DTYPE` (x, y, p with 1 = ON / 0 = OFF, t in ns).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seg_perception.io.events import EVENT_DTYPE

MIN_THRESHOLD = 0.01  # log units; mismatch draws below this would make a pixel fire on render noise
_NEVER = np.iinfo(np.int64).min // 4  # "no event yet": far in the past, yet `_NEVER + refractory` cannot overflow


@dataclass(frozen=True, slots=True)
class EventSensorConfig:
    """Parameters of the simulated event sensor.

    Attributes:
        threshold_on: mean ON contrast threshold, in log-intensity units.
        threshold_off: mean OFF contrast threshold, in log-intensity units (positive).
        threshold_sigma: per-pixel standard deviation of both thresholds (fixed mismatch map).
        refractory_ns: minimum time between two emitted events of one pixel; 0 disables it.
        noise_rate_hz: shot-noise events per pixel per second (both polarities together).
        leak_rate_hz: ON events per second that a static pixel emits through reference leak.
        log_eps: offset in `log(I + log_eps)`, for linear intensity `I` in [0, 1].
        max_px_per_substep: most image motion, in pixels, that one render interval should hold
            (`suggest_substeps`); linear interpolation in time is faithful only for small steps.
        min_substeps: fewest renders per frame interval that `suggest_substeps` returns.
        max_substeps: most renders per frame interval that `suggest_substeps` returns.
    """

    threshold_on: float = 0.2
    threshold_off: float = 0.2
    threshold_sigma: float = 0.03
    refractory_ns: int = 1_000_000
    noise_rate_hz: float = 0.1
    leak_rate_hz: float = 0.0
    log_eps: float = 1e-3
    max_px_per_substep: float = 1.0
    min_substeps: int = 1
    max_substeps: int = 16

    def __post_init__(self) -> None:
        problems = []
        if not (self.threshold_on >= MIN_THRESHOLD and self.threshold_off >= MIN_THRESHOLD):
            problems.append(f"thresholds must be >= {MIN_THRESHOLD}, got on={self.threshold_on}, "
                            f"off={self.threshold_off}")
        if not self.threshold_sigma >= 0:
            problems.append(f"threshold_sigma must be >= 0, got {self.threshold_sigma}")
        if not self.refractory_ns >= 0:
            problems.append(f"refractory_ns must be >= 0, got {self.refractory_ns}")
        if not (self.noise_rate_hz >= 0 and self.leak_rate_hz >= 0):
            problems.append(f"noise_rate_hz and leak_rate_hz must be >= 0, got {self.noise_rate_hz}, "
                            f"{self.leak_rate_hz}")
        if not self.log_eps > 0:
            problems.append(f"log_eps must be > 0, got {self.log_eps}")
        if not self.max_px_per_substep > 0:
            problems.append(f"max_px_per_substep must be > 0, got {self.max_px_per_substep}")
        if not 1 <= self.min_substeps <= self.max_substeps:
            problems.append(f"substep bounds must satisfy 1 <= min_substeps <= max_substeps, got "
                            f"{self.min_substeps}, {self.max_substeps}")
        if problems:
            raise ValueError("invalid EventSensorConfig: " + "; ".join(problems))


def log_intensity(intensity: np.ndarray, config: EventSensorConfig | None = None) -> np.ndarray:
    """Linear intensity → the log intensity that `EventSimulator` consumes.

    Args:
        intensity: linear (not gamma-encoded) intensity in [0, 1], any shape.
        config: supplies `log_eps`; default `EventSensorConfig()`.

    Returns:
        float32 array `log(intensity + log_eps)` of the same shape.
    """
    eps = (config or EventSensorConfig()).log_eps
    return np.log(np.asarray(intensity, dtype=np.float32) + np.float32(eps))


def suggest_substeps(max_flow_px: float, config: EventSensorConfig | None = None) -> int:
    """How many renders a frame interval needs so that fast motion is not rendered as blocky steps.

    Args:
        max_flow_px: largest image motion over the frame interval, in pixels.
        config: supplies `max_px_per_substep`, `min_substeps`, `max_substeps`; default
            `EventSensorConfig()`.

    Returns:
        `ceil(max_flow_px / max_px_per_substep)` clamped to [min_substeps, max_substeps].

    Raises:
        ValueError: `max_flow_px` is negative or not finite.
    """
    config = config or EventSensorConfig()
    if not (math.isfinite(max_flow_px) and max_flow_px >= 0):
        raise ValueError(f"max_flow_px must be a finite number >= 0, got {max_flow_px}")
    wanted = math.ceil(max_flow_px / config.max_px_per_substep)
    return min(max(wanted, config.min_substeps), config.max_substeps)


class EventSimulator:
    """Turns a stream of log-intensity renders into events; keeps per-pixel state across calls.

    Usage: `reset(first_log_frame, t0)`, then `step(log_frames, times)` for each batch of renders
    at increasing times. Splitting a sequence of renders over several `step` calls gives the same
    pixel events as one call (shot noise is random either way).
    """

    def __init__(self, width: int, height: int, config: EventSensorConfig | None = None, seed: int = 0) -> None:
        """Build a sensor and draw its threshold mismatch map.

        Args:
            width: sensor columns.
            height: sensor rows.
            config: sensor parameters; default `EventSensorConfig()`.
            seed: seeds the mismatch map, the leak phases and the shot noise.

        Raises:
            ValueError: width or height is not positive.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"sensor size must be positive, got width={width}, height={height}")
        self.width, self.height = int(width), int(height)
        self.config = config or EventSensorConfig()
        # Separate streams, so the mismatch map depends on the seed alone and not on how much noise was drawn.
        map_seed, self._run_seed = np.random.SeedSequence(seed).spawn(2)
        draw = np.random.default_rng(map_seed)
        n, c = self.width * self.height, self.config
        self._c_on = np.maximum(draw.normal(c.threshold_on, c.threshold_sigma, n), MIN_THRESHOLD)
        self._c_off = np.maximum(draw.normal(c.threshold_off, c.threshold_sigma, n), MIN_THRESHOLD)
        self._leak_per_ns = self._c_on * (c.leak_rate_hz * 1e-9) if c.leak_rate_hz > 0 else None
        self._rng = np.random.default_rng(self._run_seed)
        self._log: np.ndarray | None = None  # float32 log intensity at the last render
        self._ref = np.empty(0)  # float64 reference level per pixel
        self._last_event = np.empty(0, dtype=np.int64)
        self._t = 0

    @property
    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (ON, OFF) contrast thresholds, each (height, width) float64 (copies)."""
        shape = (self.height, self.width)
        return self._c_on.reshape(shape).copy(), self._c_off.reshape(shape).copy()

    @property
    def t_ns(self) -> int:
        """Time of the last render seen (ns); the next `step` must start after it."""
        return self._t

    def reset(self, log_frame: np.ndarray, t_ns: int) -> None:
        """Start (or restart) the sensor at `t_ns` with every pixel's reference at `log_frame`.

        Also restarts the noise stream, so a reset simulator replays the same events for the same renders.

        Args:
            log_frame: (height, width) log intensity.
            t_ns: its time in ns.

        Raises:
            ValueError: `log_frame` has the wrong shape.
        """
        frame = np.asarray(log_frame, dtype=np.float32)
        if frame.shape != (self.height, self.width):
            raise ValueError(f"log_frame must have shape (height, width) = {(self.height, self.width)}, "
                             f"got {frame.shape}")
        self._rng = np.random.default_rng(self._run_seed)
        self._log = frame.ravel().copy()
        self._ref = self._log.astype(np.float64)
        if self._leak_per_ns is not None:
            # L - ref uniform in [0, C_on): a uniform phase of the leak cycle.
            self._ref -= self._rng.random(self._ref.size) * self._c_on
        self._last_event = np.full(self._ref.size, _NEVER, dtype=np.int64)
        self._t = int(t_ns)

    def step(self, log_frames: np.ndarray, times_ns: np.ndarray) -> np.ndarray:
        """Events from the last render seen to the last of `log_frames`.

        Args:
            log_frames: (S, height, width) log intensity renders.
            times_ns: (S,) int64 render times, strictly increasing and after `t_ns`.

        Returns:
            EVENT_DTYPE array sorted by `t` (ties in pixel order, noise after pixel events), all
            with `t_ns`-before-call < t <= times_ns[-1].

        Raises:
            ValueError: called before `reset`, shapes disagree, or times do not increase.
        """
        if self._log is None:
            raise ValueError("EventSimulator.step called before reset(log_frame, t_ns)")
        frames = np.asarray(log_frames, dtype=np.float32)
        times = np.asarray(times_ns, dtype=np.int64).reshape(-1)
        if frames.shape != (times.size, self.height, self.width):
            raise ValueError(f"log_frames must have shape (S, height, width) = (S, {self.height}, {self.width}) with "
                             f"S = len(times_ns) = {times.size}, got {frames.shape}")
        if times.size and np.any(np.diff(np.concatenate(([self._t], times))) <= 0):
            raise ValueError(f"times_ns must increase strictly and start after the last render at {self._t} ns, "
                             f"got {times.tolist()}")
        chunks = [self._interval(frames[i].ravel(), int(times[i])) for i in range(times.size)]
        return np.concatenate(chunks, dtype=EVENT_DTYPE) if chunks else np.empty(0, dtype=EVENT_DTYPE)

    def _interval(self, new_log: np.ndarray, t1: int) -> np.ndarray:
        """Events of one render interval (self._t, t1], sorted by time; advances the state to t1."""
        t0, dt = self._t, t1 - self._t
        ref = self._ref
        d0 = self._log - ref
        if self._leak_per_ns is not None:
            ref -= self._leak_per_ns * dt
        d1 = new_log - ref
        pixels = np.flatnonzero((d1 >= self._c_on) | (d1 <= -self._c_off))
        # Work in the firing direction: e = sign * (L - ref) grows from e0 to e1 across the interval,
        # and the k-th crossing is where it reaches k * C.
        on = d1[pixels] > 0
        sign = np.where(on, 1.0, -1.0)
        c = np.where(on, self._c_on[pixels], self._c_off[pixels])
        e0, e1 = sign * d0[pixels], sign * d1[pixels]
        counts = np.floor(e1 / c).astype(np.int64)
        ref[pixels] += sign * counts * c
        self._log, self._t = new_log.copy(), t1

        group = np.repeat(np.arange(pixels.size), counts)
        starts = np.cumsum(counts) - counts
        k = np.arange(group.size) - starts[group] + 1
        # e1 - e0 > 0 in exact arithmetic (the band invariant puts e0 below C); the floor only guards rounding.
        frac = (k * c[group] - e0[group]) / np.maximum(e1 - e0, 1e-12)[group]
        # Rounded into (t0, t1], so that consecutive intervals and step calls never share a timestamp.
        t = t0 + np.clip(np.rint(frac * dt), 1, dt).astype(np.int64)
        if self.config.refractory_ns > 0 and group.size:
            kept = self._refractory(pixels, group, t, t0, dt)
            group, t = group[kept], t[kept]
        pix = pixels[group]
        pol = on[group].astype(np.uint8)

        n_noise = self._rng.poisson(self.config.noise_rate_hz * dt * 1e-9 * new_log.size)
        if n_noise:
            pix = np.concatenate((pix, self._rng.integers(0, new_log.size, n_noise)))
            pol = np.concatenate((pol, self._rng.integers(0, 2, n_noise).astype(np.uint8)))
            t = np.concatenate((t, t0 + 1 + self._rng.integers(0, dt, n_noise)))
        order = np.argsort(t, kind="stable")
        out = np.empty(order.size, dtype=EVENT_DTYPE)
        y, x = np.divmod(pix[order], self.width)
        out["x"], out["y"], out["p"], out["t"] = x, y, pol[order], t[order]
        return out

    def _refractory(self, pixels: np.ndarray, group: np.ndarray, t: np.ndarray, t0: int, dt: int) -> np.ndarray:
        """Mask of the crossings that survive the refractory period; updates the last-event times.

        Crossings come grouped by pixel, in time order inside a group, so `group * span + (t - t0)`
        is a sorted key and one searchsorted finds, for every crossing at once, the first later
        crossing of the same pixel at least `refractory_ns` after it.
        """
        refractory = self.config.refractory_ns
        span = dt + 1
        key = group * span + (t - t0)
        n = key.size
        after = np.searchsorted(key, key + refractory)
        after[(after >= n) | (group[np.minimum(after, n - 1)] != group)] = -1
        # Each pixel's first survivor: its first crossing at least `refractory_ns` after its last event.
        groups = np.arange(pixels.size)
        first = np.searchsorted(key, groups * span + np.clip(self._last_event[pixels] + refractory - t0, 0, span))
        first = first[(first < n) & (group[np.minimum(first, n - 1)] == groups)]
        kept = np.zeros(n, dtype=bool)
        while first.size:
            kept[first] = True
            first = after[first]
            first = first[first >= 0]
        idx = np.flatnonzero(kept)
        if idx.size:
            g = group[idx]
            is_last = np.append(g[1:] != g[:-1], True)
            self._last_event[pixels[g[is_last]]] = t[idx[is_last]]
        return kept
