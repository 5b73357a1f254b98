"""The weights that ship with the package: trained on the synthetic world, and RGB models trained on CamVid's
real driving frames (label set camvid11); see docs/training.md."""
from __future__ import annotations

from pathlib import Path

from .config import ModelError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
SHIPPED = {
    "teacher": "teacher_rgb_thermal_events.safetensors",
    "student_rgb": "student_rgb.safetensors",
    "student_rgb_thermal_events": "student_rgb_thermal_events.safetensors",
    "student_rgb_thermal_events_no_kd": "student_rgb_thermal_events_no_kd.safetensors",
    "teacher_camvid": "teacher_camvid.safetensors",
    "student_camvid": "student_camvid.safetensors",
}


def shipped_weights(name: str) -> Path:
    """Path of a shipped checkpoint by name (see `SHIPPED`).

    Raises:
        ModelError: unknown name, or the file is missing from this installation.
    """
    if name not in SHIPPED:
        raise ModelError(f"no shipped weights {name!r}; shipped: {', '.join(SHIPPED)}")
    path = WEIGHTS_DIR / SHIPPED[name]
    if not path.exists():
        raise ModelError(f"shipped weights {name!r} are missing from this installation ({path})")
    return path
