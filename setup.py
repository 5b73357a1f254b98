"""pip install of seg_perception: the ROS-free core, the `seg-perception` command, optional engines.

ROS 2 users build the same package with colcon (CMakeLists.txt); this file is for pip users and
development. The package's .msg definitions and config files ship as package data, so that the
ROS-free paths (rosbags) know the package's own message types without a ROS installation.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_FOLDERS = ("msg", "config", "data")


class BuildWithData(build_py):
    """Copy the top-level msg/, config/ and data/ into the built package (seg_perception/data/), where
    seg_perception.resources finds them."""

    def run(self) -> None:
        super().run()
        for folder in (f for f in DATA_FOLDERS if (ROOT / f).is_dir()):
            target = Path(self.build_lib) / "seg_perception" / "data" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / folder, target)


setup(
    name="seg_perception",
    version="0.1.0",
    description="ROS 2 semantic perception: hard-region segmenters, LiDAR labelling, semantic voxel maps, bag replay evaluation",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["seg_perception", "seg_perception.*"]),
    package_data={"seg_perception": ["io/interfaces/**/*.msg", "weights/*.safetensors"]},
    cmdclass={"build_py": BuildWithData},
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "rosbags>=0.10",
        "mcap>=1.1",
        "zstandard>=0.22",  # MCAP chunk codecs (the mcap library's too), read partially by io.mcap_index
        "lz4>=4.0",
        "pyyaml>=6",
        "numba>=0.60",
        "tqdm>=4.60",
        "matplotlib>=3.7",  # replay's and evaluate's report plots
    ],
    extras_require={
        "torch": ["torch>=2.2", "safetensors>=0.4"],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        # onnxruntime quantises the INT8 Q/DQ models TensorRT builds from.
        "tensorrt": ["tensorrt>=10", "onnx>=1.15", "onnxruntime>=1.17"],
        "mapping": ["open3d>=0.18"],
        "cluster": ["distributed>=2024.1"],  # seg-perception replay --cluster
        "dev": ["pytest>=8", "hypothesis>=6.100", "mcap-ros2-support>=0.5"],
    },
    entry_points={"console_scripts": ["seg-perception=seg_perception.cli:main",
                                        "voxel_mapping_node=seg_perception.ros.voxel_mapping_node:main",
                                        "segmentation_node=seg_perception.ros.segmentation_node:main",
                                        "perception_node=seg_perception.ros.perception_node:main"]},
)
