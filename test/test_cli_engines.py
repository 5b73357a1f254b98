"""`seg-perception export` and `bench` end to end, and their argument errors."""
from __future__ import annotations

import json

import onnx
import pytest

from seg_perception.cli import main
from seg_perception.engines import read_onnx_metadata


def test_export_writes_a_checked_model_and_reports_parity(tmp_path, capsys):
    out = tmp_path / "student.onnx"
    assert main(["export", "--model", "student_rgb", "--out", str(out), "--size", "160x96", "--k", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["spec"] == {"width": 160, "height": 96, "k": 50, "precision": "fp32"}
    assert report["parity"]["label_agreement"] >= 0.999
    onnx.checker.check_model(str(out))
    assert read_onnx_metadata(out)["spec"]["k"] == 50


def test_bench_prints_per_stage_percentiles(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--backends", "onnxruntime:fp32", "torch:fp32", "tensorrt:fp16", "--sizes", "160x96",
                 "--iterations", "3", "--warmup", "1", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    ran = [r for r in report["results"] if "skipped" not in r]
    assert [r["backend"] for r in ran] == ["onnxruntime", "torch"]
    for result in ran:
        assert (result["width"], result["height"]) == (160, 96)
        for stage in ("preprocess", "inference", "postprocess", "total"):
            stats = result["latency_ms"][stage]
            assert 0 <= stats["p50"] <= stats["p90"] <= stats["p99"]
        assert result["throughput_fps"] > 0 and result["peak_rss_mb"] > 0
    assert report["results"][2]["skipped"] == "tensorrt does not run on cpu; it runs on cuda"


def test_size_argument_is_checked(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--out", "x.onnx", "--size", "640by360"])
    assert exit_info.value.code == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_build_engine_without_tensorrt_is_a_clear_error(tmp_path, capsys):
    from seg_perception.engines.backends import TensorRTBackend

    if TensorRTBackend.unavailable("cuda") is None:
        pytest.skip("TensorRT and a GPU are present: the build itself is tested in test_engines_segmenter")
    assert main(["build-engine", "--model", "student_rgb", "--out", str(tmp_path / "m.plan")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no backend can run fp32 here (asked for backend=tensorrt, device=cuda): tensorrt/cuda:")
    assert not (tmp_path / "m.plan").exists()
