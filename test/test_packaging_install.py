"""The pip path the README documents, for real: a fresh virtual environment, the package installed with the
documented extras, and `seg-perception replay` on a small bag — every import of the command satisfied by
the declared dependencies (matplotlib was once missing: replay died while plotting and wrote no report)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str | Path, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "AMENT_"))})
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-4000:])
    return done


def test_the_documented_pip_install_replays_a_bag(tmp_path):
    from seg_perception.sim import World
    from seg_perception.sim.bag import write_bag

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    pip = venv / "bin" / "pip"
    # As the README says: the CPU build of torch first (an unpinned torch would fetch a CUDA build), then the extras.
    _run(pip, "install", "-q", "torch==2.13.0")
    _run(pip, "install", "-q", f"{ROOT}[torch,onnx]")
    bag = tmp_path / "drive"
    write_bag(bag, World(1, "day"), 2, lidar=False, events=False)
    out = tmp_path / "out"
    _run(venv / "bin" / "seg-perception", "replay", bag, "--out", out, "--model", "student_rgb", "--no-map")
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 2 and (out / "report.md").is_file() and (out / "class_iou.png").is_file()
