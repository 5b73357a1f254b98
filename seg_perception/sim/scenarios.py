"""Lighting and weather scenarios: they change how the world looks, never its geometry or labels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scenario:
    name: str
    sun_elevation_deg: float
    sun_azimuth_deg: float
    sun_irradiance: float            # relative units; 1.0 = clear midday
    sun_color: tuple[float, float, float]
    sky_ambient: float               # hemispherical sky light, same units
    sky_zenith: tuple[float, float, float]   # linear RGB radiance of the sky straight up
    sky_horizon: tuple[float, float, float]  # and at the horizon
    air_temperature_k: float
    sky_temperature_k: float         # apparent LWIR temperature of the sky
    visibility_m: float              # optical visibility (fog: tens of metres)
    fog_color: tuple[float, float, float]
    headlights: float                # headlight intensity, same units at 10 m on axis (0: off)
    max_gain: float                  # auto-exposure gain limit; at night the image stays dark and noisy
    read_noise: float                # sensor read noise, fraction of full scale
    thermal_heating: float           # how much of each material's sun heating applies (day 1, night residual)

    def sun_direction(self) -> np.ndarray:
        """Unit vector towards the sun in the map frame (x east, y north, z up)."""
        el, az = np.radians(self.sun_elevation_deg), np.radians(self.sun_azimuth_deg)
        return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


SCENARIOS: dict[str, Scenario] = {
    "day": Scenario("day", 52.0, 35.0, 1.0, (1.0, 0.97, 0.92), 0.35, (0.22, 0.38, 0.75), (0.62, 0.72, 0.85),
                    296.0, 255.0, 4000.0, (0.75, 0.78, 0.82), 0.0, 4.0, 0.004, 1.0),
    "dusk": Scenario("dusk", 7.0, 250.0, 0.45, (1.0, 0.62, 0.35), 0.12, (0.12, 0.14, 0.32), (0.85, 0.48, 0.30),
                     291.0, 262.0, 3000.0, (0.55, 0.45, 0.45), 0.3, 12.0, 0.006, 0.55),
    "night": Scenario("night", -20.0, 120.0, 0.0, (0.0, 0.0, 0.0), 0.0015, (0.003, 0.004, 0.008),
                      (0.006, 0.006, 0.010), 286.0, 250.0, 2500.0, (0.01, 0.01, 0.012), 1.0, 24.0, 0.012, 0.25),
    "fog": Scenario("fog", 35.0, 80.0, 0.25, (0.95, 0.95, 0.95), 0.45, (0.65, 0.66, 0.68), (0.72, 0.73, 0.74),
                    283.0, 279.0, 45.0, (0.70, 0.71, 0.72), 0.0, 6.0, 0.005, 0.3),
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"scenario {name!r} is not supported; supported: {', '.join(SCENARIOS)}") from None
