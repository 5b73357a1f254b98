"""Latency, throughput and memory of a Segmenter over a set of frames (per stage p50/p90/p99)."""
from __future__ import annotations

import resource
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

STAGES = ("preprocess", "inference", "postprocess", "total")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and mean of `values` (milliseconds), rounded to 0.01."""
    array = np.asarray(values, np.float64)
    stats = dict(zip(("p50", "p90", "p99"), np.percentile(array, [50, 90, 99]))) | {"mean": array.mean()}
    return {k: round(float(v), 2) for k, v in stats.items()}


def measure(segmenter: Any, frames: Sequence[dict[str, Any]], *, iterations: int = 50, warmup: int = 5) -> dict[str, Any]:
    """Run `segmenter` over `frames` (cycled) and report per-stage latency, throughput and peak memory.

    Warm-up runs (first-call allocations, lazy initialisation) are not counted. Peak memory is the
    process's resident high-water mark while segmenting (`setup_peak_rss_mb`: before, including
    building the engine; measure one configuration per process to attribute it), plus the CUDA
    caching allocator's peak where the segmenter runs on CUDA.
    """
    for i in range(warmup):
        segmenter.segment(**frames[i % len(frames)])
    setup_peak = peak_rss_mb()
    reset_peak_rss()
    timings = []
    start = time.perf_counter()
    for i in range(iterations):
        timings.append(segmenter.segment(**frames[i % len(frames)]).timing)
    elapsed = time.perf_counter() - start
    latency = {stage: percentiles([t[stage] for t in timings]) for stage in STAGES}
    overhead = (latency["preprocess"]["mean"] + latency["postprocess"]["mean"]) / latency["total"]["mean"]
    report = {"latency_ms": latency, "pre_post_share": round(overhead, 4),
              "throughput_fps": round(iterations / elapsed, 2), "iterations": iterations,
              "peak_rss_mb": peak_rss_mb(), "setup_peak_rss_mb": setup_peak}
    if segmenter.device == "cuda":
        import torch

        report["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return report


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark in MB (Linux VmHWM, which, unlike ru_maxrss,
    does not carry over the parent's peak into a spawned process)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reset_peak_rss() -> None:
    """Reset the high-water mark to the current resident size (Linux; elsewhere a no-op)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
