"""Segmenter start-up: a fresh process to its first result on ONNX Runtime, against a bare ONNX Runtime
session on the same (cached) ONNX file. Prints JSON.

Each way runs in its own fresh Python process (imports are most of the cost), `--runs` times,
alternating, and the best run is kept; the export cache is filled first, so this is the warm start a
node sees on its second launch. The Segmenter run also reports where its time went. `--baseline`
adds the same Segmenter run from another source tree (e.g. `git archive` of an older commit),
interleaved with the others, so before and after are measured side by side.

    python bench/bench_startup.py [--model student_rgb] [--runs 5] [--baseline /tmp/old_tree]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

SEGMENTER = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from seg_perception.engines import Segmenter
imported = time.perf_counter()
segmenter = Segmenter(sys.argv[1], backend="onnxruntime", device="cpu", cache_dir=sys.argv[2], threads=1)
built = time.perf_counter()
segmenter.segment(np.zeros((360, 640, 3), np.uint8))
end = time.perf_counter()
print(json.dumps({"import_s": imported - start, "construct_s": built - imported, "first_frame_s": end - built,
                  "total_s": end - start, "onnx_imported": "onnx" in sys.modules, "torch_imported": "torch" in sys.modules}))
"""

BARE = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
import onnxruntime
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
session = onnxruntime.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in session.get_inputs()}
session.run(None, feeds)
end = time.perf_counter()
print(json.dumps({"total_s": end - start}))
"""


TREE = str(Path(__file__).resolve().parents[1])  # the source tree this bench belongs to


def run(code: str, *args: str, tree: str = TREE) -> dict:
    """`code` in a fresh process importing seg_perception from `tree` (run from a neutral folder: `-c` puts
    the working directory first on sys.path)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True,
                         cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="student_rgb")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="a source tree whose seg_perception runs as the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        run(SEGMENTER, args.model, cache)  # fills the export cache
        (onnx_file,) = (os.path.join(root, name) for root, _, names in os.walk(cache) for name in names
                        if name.endswith(".onnx"))
        segmenter, bare, baseline = [], [], []
        for _ in range(args.runs):
            segmenter.append(run(SEGMENTER, args.model, cache))
            bare.append(run(BARE, onnx_file))
            if args.baseline:
                baseline.append(run(SEGMENTER, args.model, cache, tree=args.baseline))
    best = min(segmenter, key=lambda r: r["total_s"])
    bare_s = min(r["total_s"] for r in bare)
    result = {
        "benchmark": "segmenter start-up, warm export cache, fresh process to first result",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1},
        "model": args.model, "runs": args.runs, "tree": TREE,
        "segmenter_onnxruntime": best, "bare_onnxruntime_session_s": bare_s,
        "ratio": best["total_s"] / bare_s,
        "after_import_s": best["construct_s"] + best["first_frame_s"],
    }
    if baseline:
        before = min(baseline, key=lambda r: r["total_s"])
        result["baseline"] = {"tree": args.baseline, **before,
                              "after_import_s": before["construct_s"] + before["first_frame_s"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
