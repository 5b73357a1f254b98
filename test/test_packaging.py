"""Packaging: package.xml declares what the code imports; setup.py ships the message definitions."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]

# Top-level import name -> the package.xml key (rosdep key) that provides it.
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "numba": "python3-numba",
    "tqdm": "python3-tqdm",
    "rosbags": "python3-rosbags-pip",
    "mcap": "python3-mcap-pip",
    "zstandard": "python3-zstandard",
    "lz4": "python3-lz4",
    "rclpy": "rclpy",
    "ament_index_python": "ament_index_python",
    "builtin_interfaces": "builtin_interfaces",
    "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs",
    "geometry_msgs": "geometry_msgs",
    "nav_msgs": "nav_msgs",
    "std_srvs": "std_srvs",
    "diagnostic_msgs": "diagnostic_msgs",
    "visualization_msgs": "visualization_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "rcl_interfaces": "rcl_interfaces",
    "tf2_msgs": "tf2_msgs",
    "tf2_ros": "tf2_ros",
    "message_filters": "message_filters",
    "cv_bridge": "cv_bridge",
    "launch": "launch",
    "launch_ros": "launch_ros",
}
# Optional engines and tools, installed with pip extras, not through rosdep.
PIP_EXTRAS = {"torch", "onnx", "onnxruntime", "tensorrt", "open3d", "safetensors", "matplotlib", "rich", "distributed"}


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "seg_perception").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"seg_perception", "__future__"}


def test_package_xml_parses_and_lists_every_imported_dependency():
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.name == "seg_perception"
    assert package.package_format == 3
    assert package.get_build_type() == "ament_cmake"
    declared = {d.name for d in package.build_depends + package.exec_depends + package.buildtool_depends}
    imported = _imported_top_level_modules()
    unmapped = imported - set(ROSDEP_KEYS) - PIP_EXTRAS
    assert not unmapped, f"map these imports to package.xml keys in ROSDEP_KEYS: {sorted(unmapped)}"
    missing = {ROSDEP_KEYS[name] for name in imported if name in ROSDEP_KEYS} - declared
    assert not missing, f"package.xml lacks dependencies the code imports: {sorted(missing)}"


def test_package_xml_names_the_ros_user_dependencies():
    package = parse_package(str(ROOT / "package.xml"))
    run = {d.name for d in package.exec_depends}
    for key in ("rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "diagnostic_msgs", "visualization_msgs",
                "std_srvs", "tf2_ros", "message_filters", "cv_bridge", "launch", "launch_ros",
                "rosidl_default_runtime", "python3-numpy", "python3-opencv"):
        assert key in run, key
    assert {d.name for d in package.test_depends} >= {"python3-pytest", "ament_cmake_pytest"}
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}


def test_wheel_ships_message_definitions_and_console_command(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("seg_perception-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "seg-perception = seg_perception.cli:main" in archive.read(entry_points).decode()
    for msg in (ROOT / "msg").glob("*.msg"):
        assert f"seg_perception/data/msg/{msg.name}" in names
    for config in (ROOT / "config").rglob("*.yaml"):
        assert f"seg_perception/data/{config.relative_to(ROOT)}" in names
    assert "seg_perception/io/interfaces/event_camera_msgs/msg/EventPacket.msg" in names
    assert not any(n.startswith("seg_perception/msg/") for n in names), "a seg_perception/msg folder would clash with rosidl"


@pytest.mark.parametrize("module", ["seg_perception", "seg_perception.io"])
def test_import_needs_no_ros_or_heavy_engines(module):
    code = (
        "import sys; import " + module + "; "
        "heavy = {'rclpy', 'torch', 'tensorrt', 'open3d', 'onnxruntime'} & set(sys.modules); "
        "sys.exit(sorted(heavy) or 0)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
