"""Replay report: scores against scikit-learn and hand computations, exact merging, lossless JSON,
latency percentiles against numpy, written files and PNGs, and the terminal summary table."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from seg_perception.evaluation import EvaluationError
from seg_perception.evaluation.latency import LatencyStats
from seg_perception.evaluation.plots import (ERROR_COLORS, WorstFrame, plot_class_iou, plot_confusion, plot_latency,
                                             plot_worst_frames)
from seg_perception.evaluation.report import EvaluationReport, FrameRecord, summary_table
from seg_perception.labels import LabelClass, LabelSet, load_label_set

TOY = LabelSet("toy", (LabelClass(0, "road", (128, 64, 128)), LabelClass(1, "grass", (0, 200, 0)),
                       LabelClass(2, "tree", (0, 90, 0)), LabelClass(3, "person", (220, 20, 60))), ignore_id=255)


def _frames(seed: int, count: int, shape=(24, 32)):
    """Random (prediction, target) pairs over classes 0-2 (class 3 never occurs) with ignore pixels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        target = np.repeat(rng.integers(0, 3, (shape[0], shape[1] // 4)), 4, axis=1).astype(np.uint8)
        prediction = np.where(rng.random(shape) < 0.7, target, rng.integers(0, 3, shape)).astype(np.uint8)
        target[rng.random(shape) < 0.1] = 255
        out.append((prediction, target))
    return out


def _reference_band(target: np.ndarray, width: int, ignore: int) -> np.ndarray:
    """Brute force: pixels within Chebyshev distance `width` of a pixel whose label differs from a 4-neighbour's."""
    height, cols = target.shape
    edge = np.zeros(target.shape, bool)
    for y in range(height):
        for x in range(cols):
            for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                if 0 <= y + dy < height and 0 <= x + dx < cols and target[y + dy, x + dx] != target[y, x]:
                    edge[y, x] = True
    band = np.zeros(target.shape, bool)
    for y, x in zip(*np.nonzero(edge), strict=True):
        band[max(0, y - width):y + width + 1, max(0, x - width):x + width + 1] = True
    return band & (target != ignore)


def _report_of(frames, groups, *, workers_timing=None, limit=4) -> EvaluationReport:
    report = EvaluationReport(TOY, boundary_width_px=2, worst_limit=limit)
    for i, ((prediction, target), group) in enumerate(zip(frames, groups, strict=True)):
        report.count_frame({"inference": 1.0 + i, "total": 2.5 + 0.5 * i} if workers_timing is None
                           else workers_timing[i])
        report.score_frame(prediction, target, groups=[group, f"bag_{group}"], bag=f"{group}.mcap",
                           stamp_ns=1_000 * i, index=i)
    return report


def test_scores_through_the_report_match_scikit_learn_and_a_brute_force_boundary_band():
    frames = _frames(0, 3)
    report = EvaluationReport(TOY, boundary_width_px=2)
    for prediction, target in frames:
        report.score_frame(prediction, target, groups="day")
    target = np.stack([t for _, t in frames])
    prediction = np.stack([p for p, _ in frames])
    keep = target != 255
    expected = sk_confusion_matrix(target[keep], prediction[keep], labels=[0, 1, 2, 3])
    np.testing.assert_array_equal(report.confusion.matrix, expected)
    np.testing.assert_array_equal(report.groups["day"].matrix, expected)
    band = np.stack([_reference_band(t, 2, 255) for t in target])
    np.testing.assert_array_equal(report.boundary.matrix,
                                  sk_confusion_matrix(target[band], prediction[band], labels=[0, 1, 2, 3]))
    # IoU_c = TP / (TP + FP + FN), independently from the sklearn matrix.
    tp = np.diag(expected)
    union = expected.sum(0) + expected.sum(1) - tp
    data = report.to_dict()
    for c in range(3):
        assert data["scores"]["classes"][c]["iou"] == pytest.approx(tp[c] / union[c])
    assert data["scores"]["classes"][3]["iou"] is None
    assert data["scores"]["miou"] == pytest.approx(np.mean(tp[:3] / union[:3]))
    assert report.frames_scored == 3


def test_hand_computed_frame_with_absent_class_and_ignore_label(tmp_path):
    # Ground truth / prediction, 255 ignored; class 3 (person) occurs in neither.
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    prediction = np.array([[0, 1, 1, 1], [2, 0, 3, 0]], np.uint8)
    report = EvaluationReport(TOY, boundary_width_px=0, worst_limit=2)
    record = report.score_frame(prediction, target, bag="a.mcap", stamp_ns=7, index=4)
    # road: TP 1, FP 1 (a tree pixel), FN 1 → 1/3; grass: TP 2, FP 1 → 2/3; tree: TP 1, FN 1 → 1/2.
    # The prediction 3 at an ignored pixel is not scored, so person stays absent (NaN).
    iou = report.confusion.iou()
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3])
    miou = (1 / 3 + 2 / 3 + 1 / 2) / 3
    assert record == FrameRecord(4, "a.mcap", 7, pytest.approx(miou))
    assert report.confusion.pixel_accuracy() == pytest.approx(4 / 6)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    person = data["scores"]["classes"][3]
    assert person["name"] == "person" and person["iou"] is None and person["accuracy"] is None
    assert data["scores"]["miou"] == pytest.approx(miou)
    markdown = report.markdown()
    row = next(line for line in markdown.splitlines() if line.startswith("| 3 | person |"))
    assert row.split("|")[3].strip() == "—" and row.split("|")[4].strip() == "—"
    assert "| 0 | road | 33.33 | 50.00 |" in markdown
    assert "| mIoU | 50.00 % |" in markdown


@pytest.mark.parametrize("split", [(5,), (2, 3), (1, 1, 3), (0, 2, 3)])
def test_merge_equals_the_report_of_the_concatenated_data(split):
    frames = _frames(1, 5)
    groups = ["day", "day", "night", "day", "night"]
    timings = [{"preprocess": 0.25 * i, "inference": 3.0 + i, "total": 4.0 + 1.5 * i} for i in range(5)]
    whole = _report_of(frames, groups, workers_timing=timings, limit=3)
    whole.count_dropped(4)
    whole.count_skipped("unknown encoding", 3)
    whole.count_skipped("missing camera_info")
    whole.add_voxel_counts("voxel_accuracy", 30, 40)
    parts, start = [], 0
    for k, size in enumerate(split):
        part = EvaluationReport(TOY, boundary_width_px=2, worst_limit=3)
        for i in range(start, start + size):
            part.count_frame(timings[i])
            part.score_frame(*frames[i], groups=[groups[i], f"bag_{groups[i]}"], bag=f"{groups[i]}.mcap",
                             stamp_ns=1_000 * i, index=i)
        start += size
        # Workers send their reports back as JSON.
        parts.append(EvaluationReport.from_dict(json.loads(json.dumps(part.to_dict()))))
    parts[0].count_dropped(4)
    parts[-1].count_skipped("unknown encoding", 2)
    parts[0].count_skipped("unknown encoding")
    parts[-1].count_skipped("missing camera_info")
    parts[0].add_voxel_counts("voxel_accuracy", 10, 15)
    parts[-1].add_voxel_counts("voxel_accuracy", 20, 25)
    before = [p.to_dict() for p in parts]
    merged = EvaluationReport.merge(parts)
    assert [p.to_dict() for p in parts] == before  # inputs untouched
    assert merged.confusion.matrix.dtype == np.int64
    np.testing.assert_array_equal(merged.confusion.matrix, whole.confusion.matrix)
    np.testing.assert_array_equal(merged.boundary.matrix, whole.boundary.matrix)
    assert set(merged.groups) == {"day", "night", "bag_day", "bag_night"}
    for name in merged.groups:
        np.testing.assert_array_equal(merged.groups[name].matrix, whole.groups[name].matrix)
    assert merged.latency == whole.latency
    assert merged.voxel_accuracy() == {"voxel_accuracy": 0.75}
    assert merged.to_dict() == whole.to_dict()
    assert len(merged.worst_frames) == 3
    ranked = sorted((r.miou, r.index) for r in merged.worst_frames)
    assert [r.index for r in merged.worst_frames] == [i for _, i in ranked]


def test_worst_frames_keep_the_lowest_miou_and_report_entry():
    perfect = np.zeros((4, 4), np.uint8)
    half = np.array([[0, 0, 1, 1]] * 4, np.uint8)
    report = EvaluationReport(TOY, worst_limit=2)
    assert report.score_frame(perfect, perfect, index=0) is not None          # 1.0
    assert report.score_frame(half, np.zeros_like(half), index=1) is not None  # 1/2 over {0, 1} → 0.25
    assert report.score_frame(perfect, perfect, index=2) is None              # ties 1.0 but ranks after index 0
    assert report.score_frame(np.ones_like(half), np.zeros_like(half), index=3).miou == 0.0
    assert report.score_frame(perfect, np.full_like(perfect, 255), index=4) is None  # nothing scored
    assert [r.index for r in report.worst_frames] == [3, 1]
    assert report.frames_scored == 5


def test_json_round_trip_is_exact_including_huge_counts_and_float_samples():
    report = _report_of(_frames(2, 3), ["day", "night", "day"])
    big = np.zeros((4, 4), np.int64)
    big[1, 2] = 2 ** 53 + 1  # not representable as a float64
    report.confusion.add(big)
    rng = np.random.default_rng(5)
    for _ in range(20):
        report.latency.add({"fusion": float(rng.random()) / 3, "total": float(rng.gamma(3.0, 7.0))})
    report.count_skipped("truncated", 2)
    report.add_voxel_counts("fused_point_accuracy", 5, 9)
    report.worst_frames[0].overlay = "overlays/frame_0.png"
    text = json.dumps(report.to_dict(), allow_nan=False)
    back = EvaluationReport.from_dict(json.loads(text))
    assert back.confusion.matrix[1, 2] >= 2 ** 53 + 1
    np.testing.assert_array_equal(back.confusion.matrix, report.confusion.matrix)
    np.testing.assert_array_equal(back.boundary.matrix, report.boundary.matrix)
    assert back.latency == report.latency
    assert all(np.array_equal(back.latency.samples(s), report.latency.samples(s)) for s in report.latency.stages)
    assert back.worst_frames == report.worst_frames
    assert back.to_dict() == report.to_dict()
    assert json.dumps(back.to_dict(), allow_nan=False) == text


def test_from_dict_refuses_foreign_or_inexact_data():
    data = EvaluationReport(TOY).to_dict()
    with pytest.raises(EvaluationError, match="not an evaluation report"):
        EvaluationReport.from_dict({**data, "version": 99})
    rows = [[1.0, 0, 0, 0]] + data["confusion_matrix"][1:]
    with pytest.raises(EvaluationError, match="integer counts"):
        EvaluationReport.from_dict({**data, "confusion_matrix": rows})
    with pytest.raises(EvaluationError, match="malformed"):
        EvaluationReport.from_dict({k: v for k, v in data.items() if k != "groups"})
    with pytest.raises(EvaluationError, match=r"\(4, 4\)"):
        EvaluationReport.from_dict({**data, "confusion_matrix": [[0, 0], [0, 0]]})


def test_merge_refuses_other_label_sets_and_nothing():
    with pytest.raises(EvaluationError, match="at least one"):
        EvaluationReport.merge([])
    with pytest.raises(EvaluationError, match="cannot merge"):
        EvaluationReport.merge([EvaluationReport(TOY), EvaluationReport(load_label_set("sim_offroad"))])
    with pytest.raises(EvaluationError, match="cannot merge"):
        EvaluationReport.merge([EvaluationReport(TOY), EvaluationReport(TOY, boundary_width_px=5)])


def test_counts_are_validated():
    report = EvaluationReport(TOY)
    with pytest.raises(EvaluationError, match="dropped frames"):
        report.count_dropped(-1)
    with pytest.raises(EvaluationError, match="exceeds"):
        report.add_voxel_counts("voxel_accuracy", 5, 4)
    with pytest.raises(EvaluationError, match="class id 7"):
        report.score_frame(np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.uint8))
    assert report.frames_scored == 0 and report.confusion.matrix.sum() == 0


def test_latency_percentiles_match_numpy_and_known_values():
    stats = LatencyStats()
    for value in range(1, 101):
        stats.add({"inference": float(value), "total": 2.0 * value})
    summary = stats.summary()
    # Linear interpolation on 1 … 100: position q/100 · 99 → value 1 + 0.99 q.
    assert summary["inference"] == {"p50": 50.5, "p90": pytest.approx(90.1), "p99": pytest.approx(99.01),
                                    "mean": 50.5, "max": 100.0, "count": 100}
    rng = np.random.default_rng(0)
    samples = rng.lognormal(3.0, 0.4, 257)
    random = LatencyStats({"total": samples.tolist()})
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    assert random.summary()["total"] == {"p50": p50, "p90": p90, "p99": p99, "mean": samples.mean(),
                                         "max": samples.max(), "count": 257}


def test_frames_per_second_is_end_to_end_throughput_not_inverse_latency():
    """8 frames of 100 ms latency each, done side by side in 0.4 s of wall time: 20 frames/s, not 10."""
    report = EvaluationReport(TOY)
    for _ in range(8):
        report.count_frame({"total": 100.0})
    assert math.isnan(report.frames_per_second())  # no wall time measured
    report.wall_s = 0.4
    assert report.frames_per_second() == pytest.approx(20.0)
    data = report.to_dict()
    assert data["latency"]["frames_per_second"] == pytest.approx(20.0) and data["latency"]["wall_s"] == 0.4
    assert EvaluationReport.from_dict(json.loads(json.dumps(data))).wall_s == 0.4
    other = EvaluationReport(TOY)
    other.count_frame({"total": 50.0})
    other.wall_s = 0.1
    assert EvaluationReport.merge([report, other]).frames_per_second() == pytest.approx(9 / 0.5)
    markdown = report.markdown()
    assert "| frames/s | 20.0 end to end (8 frames in 0.4 s) |" in markdown
    assert "Throughput (frames/s): 20.0 end to end" in markdown
    assert summary_table(report).splitlines()[-1].startswith("frames/s 20.0 end to end · latency p50 100.0 ms")
    with pytest.raises(EvaluationError, match="wall_s must be a finite number of seconds >= 0, got -1.0"):
        EvaluationReport.from_dict({**data, "latency": {**data["latency"], "wall_s": -1.0}})


def test_latency_merge_and_dict_round_trip_are_exact():
    rng = np.random.default_rng(3)
    timings = [{"preprocess": float(rng.random()), "inference": float(rng.random() * 20),
                "total": float(rng.random() * 30)} for _ in range(50)]
    timings[7] = {"labelling": 0.125, "total": 9.0}  # a stage some frames lack
    whole, first, second = LatencyStats(), LatencyStats(), LatencyStats()
    for i, timing in enumerate(timings):
        whole.add(timing)
        (first if i < 20 else second).add(timing)
    merged = LatencyStats.from_dict(json.loads(json.dumps(first.to_dict()))).merge(
        LatencyStats.from_dict(json.loads(json.dumps(second.to_dict()))))
    assert merged == whole
    assert merged.summary() == whole.summary()
    assert whole.stages == ("preprocess", "inference", "labelling", "total")
    assert whole.summary()["labelling"]["count"] == 1


@pytest.mark.parametrize("timing, message", [
    ({"total": -1.0}, "finite and >= 0"),
    ({"total": math.nan}, "finite and >= 0"),
    ({"total": "3 ms"}, "number of milliseconds"),
    ({3: 1.0}, "strings"),
])
def test_latency_rejects_bad_samples_and_records_nothing(timing, message):
    stats = LatencyStats()
    with pytest.raises(EvaluationError, match=message):
        stats.add({"inference": 1.0, **timing})
    assert stats.stages == ()


def test_write_creates_json_markdown_and_valid_pngs(tmp_path):
    report = _report_of(_frames(4, 4), ["day", "night", "day", "night"])
    report.count_dropped(2)
    report.count_skipped("wrong message type", 3)
    report.add_voxel_counts("voxel_accuracy", 81, 100)
    report.wall_s = 2.0
    (tmp_path / "out" / "overlays").mkdir(parents=True)
    frames = _frames(4, 4)
    for record in report.worst_frames[:2]:  # the others have no files: left out of the grid
        prediction, target = frames[record.index]
        record.image, record.truth, record.prediction = (f"overlays/{record.index}-{n}.png" for n in ("i", "t", "p"))
        cv2.imwrite(str(tmp_path / "out" / record.image), np.full((*target.shape, 3), 90, np.uint8))
        cv2.imwrite(str(tmp_path / "out" / record.truth), target)
        cv2.imwrite(str(tmp_path / "out" / record.prediction), prediction)
    paths = report.write(tmp_path / "out")
    assert set(paths) == {"json", "markdown", "confusion", "class_iou", "latency", "worst_frames"}
    for key in ("confusion", "class_iou", "latency", "worst_frames"):
        image = cv2.imread(str(paths[key]))
        assert image is not None and image.shape[0] > 0 and image.shape[1] > 0, key
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert EvaluationReport.from_dict(data).to_dict() == report.to_dict()
    figures = data["figures"]
    grid = figures["worst_frames"]
    assert grid["file"] == "worst_frames.png"
    assert [row["caption"] for row in grid["rows"]] == \
        [f"{r.bag} #{r.index}\nmIoU {100 * r.miou:.1f} %" for r in report.worst_frames[:2]]
    for row, record in zip(grid["rows"], report.worst_frames, strict=False):
        prediction, target = frames[record.index]
        assert row["panels"] == ["image", "ground truth", "prediction", "errors"]
        assert row["wrong_pixels"] == int(((prediction != target) & (target != 255)).sum())
        assert row["ignored_pixels"] == int((target == 255).sum())
    # Classes 0-2 occur in the frames, person (3) never: the legend has the three, in their colours.
    assert grid["legend"] == [{"id": c.id, "name": c.name, "color": list(c.color)} for c in TOY.classes[:3]]
    assert figures["class_iou"]["title"] == f"per-class IoU (mIoU {100 * report.confusion.miou():.1f} %)"
    assert figures["latency"]["title"].endswith("; 2.0 frames/s end to end")
    markdown = paths["markdown"].read_text(encoding="utf-8")
    for text in ("mIoU", "pixel accuracy", "boundary mIoU (2 px)", "| day |", "| night |", "| inference |",
                 "| total |", "Frames dropped: 2", "| wrong message type | 3 |",
                 "| voxel_accuracy | 81.00 | 81 | 100 |", "frames/s", "![Confusion matrix](confusion.png)", "![Worst frames](worst_frames.png)"):
        assert text in markdown, text


def test_write_without_latency_or_overlays_skips_those_plots(tmp_path):
    report = EvaluationReport(TOY)
    target = np.array([[0, 1], [2, 2]], np.uint8)
    report.score_frame(target, target)
    report.worst_frames[0].overlay = "missing.png"
    paths = report.write(tmp_path)
    assert set(paths) == {"json", "markdown", "confusion", "class_iou"}
    assert "No latency was recorded." in paths["markdown"].read_text(encoding="utf-8")


def test_summary_table_lists_groups_overall_and_speed():
    report = EvaluationReport(TOY)
    day_target = np.array([[0, 0, 1, 1]], np.uint8)
    report.score_frame(day_target, day_target, groups="day")                              # mIoU 1, acc 1
    report.score_frame(np.array([[0, 0, 0, 1]], np.uint8), day_target, groups="night")  # IoU 2/3, 1/2
    for total in (10.0, 20.0, 30.0, 40.0):
        report.count_frame({"total": total})
    report.count_dropped(1)
    table = summary_table(report)
    lines = table.splitlines()
    assert lines[0].split() == ["group", "mIoU", "%", "pixel", "acc", "%"]
    assert lines[1].split() == ["day", "100.0", "100.0"]
    assert lines[2].split() == ["night", "58.3", "75.0"]
    # Overall: road TP 4, FP 1 → 4/5; grass TP 3, FN 1 → 3/4; mean 77.5 %; accuracy 7/8.
    assert lines[3].split() == ["overall", "77.5", "87.5"]
    # numpy linear p50 of 10…40 = 25, p90 = 37; no wall time measured yet.
    assert lines[4] == "frames/s — · latency p50 25.0 ms · p90 37.0 ms · 4 frames, 1 dropped"
    report.wall_s = 0.1  # 4 frames in 0.1 s; latency is not inverted into frames/s
    assert summary_table(report).splitlines()[4].startswith("frames/s 40.0 end to end · latency p50 25.0 ms")
    assert len({len(line) for line in lines[:4]}) == 1  # fixed width
    assert len(lines) == 5  # no 3-D truth, no 3-D line
    report.add_voxel_counts("voxel_accuracy", 3, 4)
    report.add_voxel_counts("lidar_point_accuracy", 1, 3)
    assert summary_table(report).splitlines()[5] == "3-D: lidar point accuracy 33.3 % · voxel accuracy 75.0 %"


def test_group_mious_name_the_classes_a_group_lacks():
    """Group a has road and grass, group b road and tree: overall mIoU averages 3 classes, each group's 2."""
    report = EvaluationReport(TOY)
    report.score_frame(np.array([[0, 1]], np.uint8), np.array([[0, 1]], np.uint8), groups=["a", "scenario:x"])
    report.score_frame(np.array([[0, 0]], np.uint8), np.array([[0, 2]], np.uint8), groups="b")
    # a: road 1, grass 1 → 100 %; b: road TP 1 FP 1 → 1/2, tree 0 → 25 %; overall: road 2/3, grass 1, tree 0.
    markdown = report.markdown()
    assert "| scenario:x | 100.00 | 100.00 | 2 | 2 of 3 |" in markdown
    assert "| a | 100.00 | 100.00 | 2 | 2 of 3 |" in markdown and "| b | 25.00 | 50.00 | 2 | 2 of 3 |" in markdown
    assert markdown.index("| scenario:x |") < markdown.index("| a |")  # scenarios first, then the bags
    assert [line.split()[0] for line in summary_table(report).splitlines()[1:5]] == ["scenario:x", "a", "b", "overall"]
    assert f"| mIoU | {100 * (2 / 3 + 1 + 0) / 3:.2f} % |" in markdown
    assert "averages the IoU of the 3 classes present" in markdown
    assert "- a: tree\n" in markdown and "- b: grass\n" in markdown and "- scenario:x: tree\n" in markdown


def test_summary_table_marks_undefined_values():
    table = summary_table(EvaluationReport(TOY))
    assert table.splitlines()[1].split() == ["overall", "—", "—"]
    assert table.splitlines()[2].startswith("frames/s — · latency p50 — ms")


def test_plots_handle_absent_classes_and_empty_rows(tmp_path):
    names = ["road", "grass", "person", "tree"]
    colors = [(128, 64, 128), (0, 200, 0), (220, 20, 60), (0, 90, 0)]
    # person has no ground truth but was predicted (IoU 0), tree occurs nowhere (NaN).
    drawn = plot_class_iou([0.5, 0.25, 0.0, math.nan], names, tmp_path / "iou.png", colors=colors,
                           gt_pixels=[10, 4, 0, 0], miou=0.25)
    assert cv2.imread(str(drawn.path)) is not None
    assert drawn.data["title"] == "per-class IoU (mIoU 25.0 %)"
    assert drawn.data["no_ground_truth"] == ["person"]
    assert [(c["name"], c["color"], c["iou"], c["mark"]) for c in drawn.data["classes"]] == [
        ("road", [128, 64, 128], 0.5, None), ("grass", [0, 200, 0], 0.25, None),
        ("person", [220, 20, 60], None, "no ground truth"), ("tree", [0, 90, 0], None, "absent")]
    assert plot_class_iou([0.5, math.nan], names[:2], tmp_path / "x.png").data["title"] == \
        "per-class IoU (mIoU 50.0 %)"
    drawn = plot_confusion(np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]]), names[:3], tmp_path / "confusion.png")
    assert cv2.imread(str(drawn.path)) is not None and drawn.data["row_normalised"][1] == [0.0, 0.0, 0.0]
    drawn = plot_latency(LatencyStats({"total": [5.0, 6.0, 9.0]}), tmp_path / "latency.png")
    assert cv2.imread(str(drawn.path)) is not None and "frames/s" not in drawn.data["title"]
    with pytest.raises(EvaluationError, match="names"):
        plot_class_iou([0.5], names, tmp_path / "x.png")
    with pytest.raises(EvaluationError, match="'total'"):
        plot_latency(LatencyStats({"inference": [1.0]}), tmp_path / "x.png")


def test_worst_frames_grid_rows_legend_and_errors(tmp_path):
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    prediction = np.array([[0, 1, 1, 1], [2, 0, 3, 0]], np.uint8)
    image = np.zeros((4, 8, 3), np.uint8)  # another size than the labels: resized to theirs
    drawn = plot_worst_frames([WorstFrame("a #1", image, truth, prediction),
                               WorstFrame("b #2", image[:2, :4], truth, truth)], TOY, tmp_path / "grid.png")
    assert cv2.imread(str(drawn.path)) is not None
    first, second = drawn.data["rows"]
    # Wrong: (0, 1) and (1, 1); the ignored pixels (and the prediction 3 on one of them) are not errors.
    assert (first["wrong_pixels"], first["ignored_pixels"], first["scored_pixels"]) == (2, 2, 6)
    assert second["wrong_pixels"] == 0 and second["caption"] == "b #2"
    assert [entry["name"] for entry in drawn.data["legend"]] == ["road", "grass", "tree", "person"]
    assert drawn.data["error_colors"] == {k: list(v) for k, v in ERROR_COLORS.items()}
    with pytest.raises(EvaluationError, match="at least one frame"):
        plot_worst_frames([], TOY, tmp_path / "x.png")
    with pytest.raises(EvaluationError, match=r"worst frame 0: truth \(2, 4\) and prediction \(2, 3\)"):
        plot_worst_frames([WorstFrame("x", image, truth, prediction[:, :3])], TOY, tmp_path / "x.png")
    with pytest.raises(EvaluationError, match=r"worst frame 0: the image must be \(H, W, 3\) uint8 RGB, got float64"):
        plot_worst_frames([WorstFrame("x", image.astype(float), truth, truth)], TOY, tmp_path / "x.png")
