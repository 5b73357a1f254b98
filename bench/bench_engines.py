"""Engine benchmark (issue #5): every CPU backend for a model at chosen input sizes and K, each in a
fresh process; prints the `seg-perception bench` JSON plus a summary of the issue's targets:
the pre- plus post-processing share of end-to-end latency, and the fastest CPU backend's speed-up
over eager PyTorch fp32.

    python bench/bench_engines.py                       # RGB student, 640x360, default K
    python bench/bench_engines.py --sizes 640x360 320x180 --k default 0 --out docs/engines.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys

from seg_perception.cli import main

BACKENDS = ["torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8"]


def summary(report: dict) -> list[dict]:
    """Per (size, K): p50 totals per backend, the fastest backend's speed-up over torch fp32, and the
    largest pre+post share."""
    groups: dict[tuple, list[dict]] = {}
    for result in report["results"]:
        if "skipped" not in result:
            groups.setdefault((result["width"], result["height"], result["k"]), []).append(result)
    rows = []
    for (width, height, k), results in groups.items():
        p50 = {f"{r['backend']}:{r['precision']}": r["latency_ms"]["total"]["p50"] for r in results}
        fastest = min(p50, key=p50.get)
        rows.append({"size": f"{width}x{height}", "k": k, "p50_total_ms": p50, "fastest": fastest,
                     "speedup_vs_torch_fp32": round(p50["torch:fp32"] / p50[fastest], 2) if "torch:fp32" in p50 else None,
                     "max_pre_post_share": max(r["pre_post_share"] for r in results)})
    return rows


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="student_rgb")
    parser.add_argument("--sizes", nargs="+", default=["640x360"])
    parser.add_argument("--k", nargs="+", default=["default"])
    parser.add_argument("--iterations", default="100")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(["bench", "--model", args.model, "--backends", *BACKENDS, "--sizes", *args.sizes,
                       "--k", *args.k, "--iterations", args.iterations])
    report = json.loads(buffer.getvalue())
    report["summary"] = summary(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
