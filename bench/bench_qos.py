"""Delivery of large sensor messages over Fast DDS on this machine, per QoS profile. Prints JSON.

A publisher process sends 640x360 rgb8 images (0.7 MB) and 131 k-point clouds (2.1 MB) at 10 Hz; this
process subscribes with each profile a user would choose and counts what arrives. Needs the ROS
environment `make test` builds (source install/setup.bash).

    python bench/bench_qos.py [--messages 40]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PROFILES = {"best_effort depth 2": ("best_effort", 2), "best_effort depth 10": ("best_effort", 10),
            "reliable depth 2": ("reliable", 2), "reliable depth 10": ("reliable", 10)}
KINDS = {"image 640x360 rgb8": "image", "cloud 131k points": "cloud"}


def publish(kind: str, reliability: str, depth: int, count: int) -> None:
    """The publisher process: waits for the subscriber, then sends `count` messages at 10 Hz."""
    import numpy as np
    import rclpy

    from seg_perception.io import array_to_image, make_header, xyz_to_cloud
    from seg_perception.ros.common import sensor_qos
    from seg_perception.ros.messages import RclpyFactory
    from sensor_msgs.msg import Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node("qos_bench_publisher")
    factory = RclpyFactory()
    publisher = node.create_publisher(Image if kind == "image" else PointCloud2, "/qos_bench",
                                      sensor_qos(reliability, depth))
    deadline = time.monotonic() + 10
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    rng = np.random.default_rng(0)
    for i in range(count):
        header = make_header(factory, i + 1, "sensor")
        if kind == "image":
            msg = array_to_image(rng.integers(0, 256, (360, 640, 3), np.uint8), "rgb8", header=header, factory=factory)
        else:
            msg = xyz_to_cloud(rng.standard_normal((131_072, 4)).astype(np.float32)[:, :3], stamp_ns=i + 1,
                               frame_id="sensor", factory=factory)
        publisher.publish(msg)
        time.sleep(0.1)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def measure(kind: str, reliability: str, depth: int, count: int) -> int:
    import rclpy

    from seg_perception.ros.common import sensor_qos
    from sensor_msgs.msg import Image, PointCloud2

    received: set[int] = set()
    node = rclpy.create_node(f"qos_bench_{kind}_{reliability}_{depth}")
    node.create_subscription(Image if kind == "image" else PointCloud2, "/qos_bench",
                             lambda m: received.add(m.header.stamp.nanosec), sensor_qos(reliability, depth))
    child = subprocess.Popen([sys.executable, __file__, "--publish", kind, reliability, str(depth), str(count)],
                             env=dict(os.environ))
    deadline = time.monotonic() + count * 0.1 + 20
    while child.poll() is None and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for _ in range(20):
        rclpy.spin_once(node, timeout_sec=0.05)
    child.kill()
    node.destroy_node()
    return len(received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--publish", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        kind, reliability, depth, count = args.publish
        publish(kind, reliability, int(depth), int(count))
        return
    import rclpy

    rclpy.init()
    results = {name: {label: f"{measure(kind, reliability, depth, args.messages)}/{args.messages}"
                      for label, kind in KINDS.items()}
               for name, (reliability, depth) in PROFILES.items()}
    rclpy.shutdown()
    print(json.dumps({"transport": os.environ.get("RMW_IMPLEMENTATION", "default"), "rate_hz": 10,
                      "received": results}, indent=2))


if __name__ == "__main__":
    main()
