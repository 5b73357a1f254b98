"""The `seg-perception` command."""
from __future__ import annotations

import argparse
import sys

from seg_perception import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seg-perception",
        description="Semantic perception for ROS 2 robots: segment, label LiDAR, fuse voxel maps, replay and score bags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
