"""Conversion benchmark: message → array decoding cost relative to a plain copy, and evt3 throughput.

Prints JSON. Targets (issue #2): Image and PointCloud2 decoding <= 1.5x a numpy copy of the same
bytes; evt3 decoding >= 20 M events/s on one core.

    python bench/bench_conversions.py [--repeat 15]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import timeit

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from seg_perception.io import (  # noqa: E402
    EVENT_DTYPE,
    array_to_cloud,
    array_to_image,
    as_bytes,
    cloud_to_array,
    cloud_to_columns,
    cloud_to_xyz,
    default_typestore,
    events_to_packet,
    image_to_array,
    packet_to_events,
)

cv2.setNumThreads(1)


def best_seconds(fn, repeat: int, number: int = 10) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def through_cdr(msg, typename: str):
    """As a subscriber or bag reader receives it: deserialised from real CDR bytes."""
    store = default_typestore()
    return store.deserialize_cdr(bytes(store.serialize_cdr(msg, typename)), typename)


def bench_image(repeat: int) -> dict:
    rng = np.random.default_rng(0)
    msg = through_cdr(array_to_image(rng.integers(0, 255, (1080, 1920, 3), np.uint8), "rgb8"), "sensor_msgs/msg/Image")
    copy = best_seconds(lambda: as_bytes(msg.data).copy(), repeat)
    view = best_seconds(lambda: image_to_array(msg), repeat)
    owned = best_seconds(lambda: image_to_array(msg, copy=True), repeat)
    return {"case": "Image 1920x1080 rgb8", "numpy_copy_ms": copy * 1e3,
            "image_to_array_ms": view * 1e3, "ratio": view / copy,
            "image_to_array_copy_ms": owned * 1e3, "ratio_copy": owned / copy}


def bench_cloud(repeat: int) -> dict:
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "t", "ring"],
                      "formats": ["<f4"] * 4 + ["<u4", "<u2"], "offsets": [0, 4, 8, 16, 20, 24], "itemsize": 32})
    rng = np.random.default_rng(0)
    points = np.zeros((128, 2048), dtype)
    for name in ("x", "y", "z", "intensity"):
        points[name] = rng.normal(size=points.shape)
    points["t"] = rng.integers(0, 100_000_000, points.shape)
    points["ring"] = np.arange(128)[:, None]
    msg = through_cdr(array_to_cloud(points, frame_id="lidar"), "sensor_msgs/msg/PointCloud2")
    copy = best_seconds(lambda: as_bytes(msg.data).copy(), repeat)
    out = {"case": "PointCloud2 128x2048 x,y,z,intensity,t,ring point_step 32", "numpy_copy_ms": copy * 1e3}
    for name, fn in (("cloud_to_array", lambda: cloud_to_array(msg)),
                     ("cloud_to_columns", lambda: cloud_to_columns(msg)),
                     ("cloud_to_xyz", lambda: cloud_to_xyz(msg))):
        seconds = best_seconds(fn, repeat)
        out[f"{name}_ms"] = seconds * 1e3
        out[f"{name}_ratio"] = seconds / copy
    return out


def bench_evt3(repeat: int) -> dict:
    """A dense Prophesee-like stream: bursts of neighbouring events sharing row, time and polarity."""
    rng = np.random.default_rng(0)
    bursts, width, height = 500_000, 1280, 720
    us = np.sort(rng.integers(0, 20_000_000, bursts))
    size = rng.integers(1, 12, bursts)
    index = np.repeat(np.arange(bursts), size)
    step = np.cumsum(rng.integers(1, 4, index.size))
    start = np.cumsum(size) - size
    events = np.empty(index.size, EVENT_DTYPE)
    events["x"] = rng.integers(0, width - 40, bursts)[index] + step - step[start][index]
    events["y"] = rng.integers(0, height, bursts)[index]
    events["p"] = rng.integers(0, 2, bursts)[index]
    events["t"] = us[index] * 1000
    msg = through_cdr(events_to_packet(events, width, height), "event_camera_msgs/msg/EventPacket")
    assert len(packet_to_events(msg)) == len(events)
    seconds = best_seconds(lambda: packet_to_events(msg), repeat, number=1)
    return {"case": f"evt3 {len(events)} events, {len(msg.events) // 2} words", "decode_ms": seconds * 1e3,
            "events_per_s": len(events) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    result = {
        "benchmark": "conversions",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1},
        "image": bench_image(args.repeat),
        "pointcloud": bench_cloud(args.repeat),
        "evt3": bench_evt3(args.repeat),
        "targets": {"image_ratio_max": 1.5, "pointcloud_ratio_max": 1.5, "evt3_events_per_s_min": 20e6},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
