"""The scored replay report: confusion matrices overall, on boundaries and per group, latency, counts,
voxel-map accuracy and the worst frames; exact merging, lossless JSON, Markdown, plots and a terminal table.

Number formats: IoU and accuracies are printed in percent — two decimals in report.md, one in
`summary_table` and the plots — latency in ms and frames/s with one decimal; anything undefined (a
class absent from both prediction and ground truth, frames/s without a measured wall time) is
printed "—" and stored as null in report.json.

frames/s is one thing everywhere: end-to-end throughput, frames processed over the wall-clock time of
the replay (reading, inference, mapping, scoring, writing). Per-frame latency is reported as latency
(ms), never inverted into frames/s: frames segmented side by side each take longer than alone.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from seg_perception.labels import LabelSet, LabelSetError

from .latency import TOTAL, LatencyStats
from .metrics import ConfusionMatrix, EvaluationError, frame_confusion
from .plots import Plot, WorstFrame, plot_class_iou, plot_confusion, plot_latency, plot_worst_frames

FORMAT = "seg_perception.evaluation_report"
VERSION = 1
DASH = "—"
SCENARIO = "scenario:"  # prefix of the groups that are scenarios (e.g. "scenario:night"), beside the bags


@dataclass
class FrameRecord:
    """One scored frame, as ranked among the worst.

    Attributes:
        index: frame number within its bag.
        bag: bag name (or path) the frame came from.
        stamp_ns: the frame's header stamp in nanoseconds.
        miou: mIoU of this frame alone (over the classes in its ground truth or prediction).
        overlay: picture of the frame's overlay, absolute or relative to the report's output folder; None if
            none was saved.
        image, truth, prediction: the frame's camera image (JPEG), ground-truth and predicted class ids
            (PNG), paths as `overlay`, for the worst-frames grid; None if not saved.
    """

    index: int
    bag: str
    stamp_ns: int
    miou: float
    overlay: str | None = None
    image: str | None = None
    truth: str | None = None
    prediction: str | None = None

    def rank_key(self) -> tuple[float, str, int, int]:
        """Worst first; ties are broken by bag, stamp and index so that every merge order ranks alike."""
        return (self.miou, self.bag, self.stamp_ns, self.index)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "bag": self.bag, "stamp_ns": self.stamp_ns, "miou": self.miou,
                **{name: getattr(self, name) for name in _FRAME_FILES}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrameRecord:
        files = {name: None if data.get(name) is None else str(data[name]) for name in _FRAME_FILES}
        return cls(int(data["index"]), str(data["bag"]), int(data["stamp_ns"]), float(data["miou"]), **files)


_FRAME_FILES = ("overlay", "image", "truth", "prediction")


@dataclass(eq=False)
class EvaluationReport:
    """Everything a replay measured, mergeable across bags and worker processes without loss.

    Build one per worker with `EvaluationReport(label_set)`, feed it with `count_frame`,
    `score_frame`, `count_dropped`, `count_skipped` and `add_voxel_counts`, send it back with
    `to_dict`, and combine with `EvaluationReport.merge`.

    Attributes:
        label_set: the classes scored; matrices have `label_set.num_classes` rows and ignore its ignore id.
        boundary_width_px: half-width of the boundary band (see `metrics.boundary_band`).
        worst_limit: how many worst frames are kept.
        confusion: overall confusion matrix.
        boundary: confusion matrix on the ground-truth boundary band.
        groups: confusion matrix per group: a bag, a scenario (named `SCENARIO` + tag, e.g. "scenario:night"), …
        latency: per-stage latency samples.
        wall_s: wall-clock seconds the frames took end to end (0: not measured); merging adds them, and
            a replay of bags side by side sets its own.
        frames: frames processed (segmented).
        frames_scored: frames compared with ground truth.
        frames_dropped: frames the live scheduler dropped.
        skipped: messages skipped, by reason.
        voxel_counts: voxel-map scores, metric name → (correct, scored); empty where there is no 3-D truth.
        worst_frames: the `worst_limit` frames with the lowest mIoU, worst first.
    """

    label_set: LabelSet
    boundary_width_px: int = 3
    worst_limit: int = 8
    confusion: ConfusionMatrix = field(init=False)
    boundary: ConfusionMatrix = field(init=False)
    groups: dict[str, ConfusionMatrix] = field(default_factory=dict)
    latency: LatencyStats = field(default_factory=LatencyStats)
    frames: int = 0
    frames_scored: int = 0
    frames_dropped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    voxel_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    worst_frames: list[FrameRecord] = field(default_factory=list)
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.label_set, LabelSet):
            raise EvaluationError(f"label_set must be a LabelSet, got {type(self.label_set).__name__}")
        for name in ("boundary_width_px", "worst_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EvaluationError(f"{name} must be an integer >= 0, got {value!r}")
        self.confusion = self._matrix()
        self.boundary = self._matrix()

    # ---- accumulation -------------------------------------------------------------------------------

    def count_frame(self, timing: Mapping[str, float] | None = None) -> None:
        """Count one processed frame and record its stage timings (ms), if given.

        Raises:
            EvaluationError: a timing that is not a finite number >= 0.
        """
        if timing is not None:
            self.latency.add(timing)
        self.frames += 1

    def score_frame(self, prediction: np.ndarray, target: np.ndarray, *, groups: str | Sequence[str] = (),
                    bag: str = "", stamp_ns: int = 0, index: int = 0) -> FrameRecord | None:
        """Score one frame against its ground truth, overall, on boundaries and in each of `groups`.

        Args:
            prediction: (H, W) integer class ids.
            target: (H, W) ground-truth ids; the label set's ignore id is not scored.
            groups: group name or names the frame belongs to (e.g. its bag and its scenario).
            bag, stamp_ns, index: identify the frame in the worst-frames list.

        Returns:
            The frame's record if it now ranks among the worst frames — save its overlay then and set
            `record.overlay` — else None (also when nothing in the frame was scored).

        Raises:
            EvaluationError: as `metrics.confusion_matrix` (shapes, dtypes, ids out of range); nothing is
                recorded then.
        """
        classes, ignore = self.label_set.num_classes, self.label_set.ignore_id
        frame, edges = frame_confusion(prediction, target, classes, self.boundary_width_px, ignore)
        names = (groups,) if isinstance(groups, str) else tuple(groups)
        self.confusion.add(frame)
        self.boundary.add(edges)
        for name in names:
            self.group(name).add(frame)
        self.frames_scored += 1
        single = self._matrix()
        single.add(frame)
        miou = single.miou()
        if math.isnan(miou) or self.worst_limit == 0:
            return None
        record = FrameRecord(int(index), str(bag), int(stamp_ns), miou)
        self.worst_frames = _rank([*self.worst_frames, record], self.worst_limit)
        return record if any(r is record for r in self.worst_frames) else None

    def group_names(self) -> list[str]:
        """The groups in table order: the scenarios by name, then the others (bags) as they came."""
        return sorted(n for n in self.groups if n.startswith(SCENARIO)) + \
            [n for n in self.groups if not n.startswith(SCENARIO)]

    def group(self, name: str) -> ConfusionMatrix:
        """The confusion matrix of group `name`, created empty on first use."""
        if name not in self.groups:
            self.groups[name] = self._matrix()
        return self.groups[name]

    def count_dropped(self, frames: int = 1) -> None:
        """Count frames dropped by the live scheduler."""
        self.frames_dropped += _count(frames, "dropped frames")

    def count_skipped(self, reason: str, messages: int = 1) -> None:
        """Count messages skipped for `reason` (e.g. "unknown encoding", "missing camera_info")."""
        self.skipped[str(reason)] = self.skipped.get(str(reason), 0) + _count(messages, "skipped messages")

    def add_voxel_counts(self, metric: str, correct: int, scored: int) -> None:
        """Add voxel-map results as counts so that merging stays exact, e.g. ("voxel_accuracy", 812, 1000).

        Raises:
            EvaluationError: counts that are not integers with 0 <= correct <= scored.
        """
        correct, scored = _count(correct, "correct voxels"), _count(scored, "scored voxels")
        if correct > scored:
            raise EvaluationError(f"voxel metric {metric!r}: correct ({correct}) exceeds scored ({scored})")
        old_correct, old_scored = self.voxel_counts.get(metric, (0, 0))
        self.voxel_counts[str(metric)] = (old_correct + correct, old_scored + scored)

    def frames_per_second(self) -> float:
        """End-to-end throughput: frames processed / `wall_s` (NaN when no wall time was measured)."""
        return self.frames / self.wall_s if self.wall_s > 0 else math.nan

    def voxel_accuracy(self) -> dict[str, float]:
        """Metric name → correct / scored (NaN when nothing was scored)."""
        return {name: correct / scored if scored else math.nan
                for name, (correct, scored) in self.voxel_counts.items()}

    # ---- merging and serialisation -------------------------------------------------------------------

    @classmethod
    def merge(cls, reports: Iterable[EvaluationReport]) -> EvaluationReport:
        """A new report holding the exact sum of `reports` (matrices and counts added, latency samples
        concatenated in the given order, worst frames re-ranked); the inputs are left untouched.

        Raises:
            EvaluationError: no reports, or reports of different label sets or boundary widths.
        """
        reports = list(reports)
        if not reports:
            raise EvaluationError("merge needs at least one report")
        first = reports[0]
        for other in reports[1:]:
            if other.label_set != first.label_set or other.boundary_width_px != first.boundary_width_px:
                raise EvaluationError(
                    f"cannot merge a report of label set {other.label_set.name!r} with {other.boundary_width_px} px "
                    f"boundaries into one of {first.label_set.name!r} with {first.boundary_width_px} px")
        merged = cls(first.label_set, first.boundary_width_px, max(r.worst_limit for r in reports))
        for report in reports:
            merged.confusion.merge(report.confusion)
            merged.boundary.merge(report.boundary)
            for name, matrix in report.groups.items():
                merged.group(name).merge(matrix)
            merged.latency.merge(report.latency)
            merged.frames += report.frames
            merged.frames_scored += report.frames_scored
            merged.frames_dropped += report.frames_dropped
            merged.wall_s += report.wall_s
            for reason, count in report.skipped.items():
                merged.count_skipped(reason, count)
            for metric, (correct, scored) in report.voxel_counts.items():
                merged.add_voxel_counts(metric, correct, scored)
        merged.worst_frames = _rank([replace(r) for report in reports for r in report.worst_frames],
                                    merged.worst_limit)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the raw counts and samples (what `from_dict` reads) plus the derived scores
        for readers of report.json. Undefined values (NaN) are None; matrices are lists of int rows."""
        names = self.label_set
        return _json_safe({
            "format": FORMAT,
            "version": VERSION,
            "label_set": self.label_set.to_dict(),
            "boundary_width_px": self.boundary_width_px,
            "worst_limit": self.worst_limit,
            "frames": self.frames,
            "frames_scored": self.frames_scored,
            "frames_dropped": self.frames_dropped,
            "skipped": dict(self.skipped),
            "scores": self.confusion.scores(names).to_dict(),
            "boundary_scores": self.boundary.scores(names).to_dict(),
            "confusion_matrix": self.confusion.matrix.tolist(),
            "boundary_confusion_matrix": self.boundary.matrix.tolist(),
            "groups": {name: {"miou": m.miou(), "pixel_accuracy": m.pixel_accuracy(),
                              "pixels": int(m.matrix.sum()), "confusion_matrix": m.matrix.tolist()}
                       for name, m in self.groups.items()},
            "latency": {**self.latency.to_dict(), "wall_s": self.wall_s,
                        "frames_per_second": self.frames_per_second()},
            "voxel": {name: {"correct": correct, "scored": scored, "accuracy": self.voxel_accuracy()[name]}
                      for name, (correct, scored) in self.voxel_counts.items()},
            "worst_frames": [record.to_dict() for record in self.worst_frames],
        })

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Rebuild a report from `to_dict` output (e.g. parsed report.json or a worker's result).

        Raises:
            EvaluationError: not a report of this format and version, or a missing or malformed field.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT or data.get("version") != VERSION:
            found = (data.get("format"), data.get("version")) if isinstance(data, Mapping) else type(data).__name__
            raise EvaluationError(f"not an evaluation report: expected format {FORMAT!r} version {VERSION}, "
                                  f"got {found}")
        try:
            report = cls(LabelSet.from_dict(data["label_set"]), int(data["boundary_width_px"]),
                         int(data["worst_limit"]))
            report.confusion.add(_int_matrix(data["confusion_matrix"]))
            report.boundary.add(_int_matrix(data["boundary_confusion_matrix"]))
            for name, group in data["groups"].items():
                report.group(str(name)).add(_int_matrix(group["confusion_matrix"]))
            report.latency = LatencyStats.from_dict(data["latency"])
            report.wall_s = float(data["latency"].get("wall_s", 0.0))
            if not math.isfinite(report.wall_s) or report.wall_s < 0:
                raise EvaluationError(f"wall_s must be a finite number of seconds >= 0, got {report.wall_s}")
            report.frames = _count(data["frames"], "frames")
            report.frames_scored = _count(data["frames_scored"], "frames_scored")
            report.frames_dropped = _count(data["frames_dropped"], "frames_dropped")
            for reason, count in data["skipped"].items():
                report.count_skipped(reason, count)
            for metric, voxel in data["voxel"].items():
                report.add_voxel_counts(metric, voxel["correct"], voxel["scored"])
            report.worst_frames = [FrameRecord.from_dict(r) for r in data["worst_frames"]]
        except EvaluationError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, LabelSetError) as exc:
            raise EvaluationError(f"malformed evaluation report ({exc!r}); write reports with to_dict()") from None
        return report

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.json, report.md and the PNG plots into `out_dir` (created if needed).

        Plots: confusion.png (row-normalised), class_iou.png, latency.png (when "total" latencies were
        recorded) and worst_frames.png (a grid of the worst frames whose image, truth and prediction files
        can be read). What each plot drew (legends, "no ground truth" classes, rows) is in report.json
        under "figures".

        Returns:
            What was written: "json", "markdown", "confusion", "class_iou", "latency", "worst_frames" → path.

        Raises:
            OSError: a file could not be written.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        scores = self.confusion.scores(self.label_set)
        shown = self._shown_classes()
        colors = {c.id: c.color for c in self.label_set.classes}
        plots: dict[str, Plot] = {
            "confusion": plot_confusion(self.confusion.matrix[np.ix_(shown, shown)],
                                        [scores.names[i] for i in shown], out / "confusion.png"),
            "class_iou": plot_class_iou([scores.iou[i] for i in shown], [scores.names[i] for i in shown],
                                        out / "class_iou.png", colors=[colors.get(i, (0, 0, 0)) for i in shown],
                                        gt_pixels=[scores.gt_pixels[i] for i in shown], miou=scores.miou),
        }
        if self.latency.samples(TOTAL).size:
            plots["latency"] = plot_latency(self.latency, out / "latency.png", self.frames_per_second())
        frames = [frame for record in self.worst_frames if (frame := _worst_frame(out, record)) is not None]
        if frames:
            plots["worst_frames"] = plot_worst_frames(frames, self.label_set, out / "worst_frames.png")
        paths = {name: plot.path for name, plot in plots.items()}
        figures = {name: {"file": plot.path.name, **plot.data} for name, plot in plots.items()}
        paths["json"] = out / "report.json"
        paths["json"].write_text(json.dumps({**self.to_dict(), "figures": _json_safe(figures)}, indent=1,
                                            allow_nan=False) + "\n", encoding="utf-8")
        paths["markdown"] = out / "report.md"
        paths["markdown"].write_text(self.markdown({k: p.name for k, p in paths.items()}), encoding="utf-8")
        return paths

    def markdown(self, images: Mapping[str, str] | None = None) -> str:
        """The readable summary written to report.md.

        Args:
            images: plot name ("confusion", "class_iou", "latency", "worst_frames") → relative PNG path to embed.
        """
        images = images or {}
        scores = self.confusion.scores(self.label_set)
        edge = self.boundary.scores(self.label_set)
        fps = self.frames_per_second()
        lines = [
            f"# Segmentation evaluation — {self.label_set.name}", "",
            "| | |", "|---|---|",
            f"| frames | {self.frames} processed, {self.frames_scored} scored, {self.frames_dropped} dropped |",
            f"| mIoU | {_pct(scores.miou)} % |",
            f"| pixel accuracy | {_pct(scores.pixel_accuracy)} % |",
            f"| mean class accuracy | {_pct(scores.mean_class_accuracy)} % |",
            f"| boundary mIoU ({self.boundary_width_px} px) | {_pct(edge.miou)} % |",
            f"| frames/s | {_throughput(self)} |", "",
            "## Per class", "",
            "| id | class | IoU % | accuracy % | boundary IoU % | ground-truth pixels | predicted pixels |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {i} | {scores.names[i]} | {_pct(scores.iou[i])} | {_pct(scores.accuracy[i])} | "
                  f"{_pct(edge.iou[i])} | {scores.gt_pixels[i]} | {scores.predicted_pixels[i]} |"
                  for i in self._shown_classes()]
        lines += ["", f"{DASH}: undefined, the class occurs in neither the ground truth nor the prediction "
                  "(within the boundary band, for boundary IoU).", ""]
        if self.groups:
            lines += self._group_lines()
        lines += ["## Latency", ""]
        summary = self.latency.summary()
        if summary:
            lines += ["| stage | frames | mean ms | p50 ms | p90 ms | p99 ms | max ms |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {stage} | {s['count']} | {_num(s['mean'])} | {_num(s['p50'])} | {_num(s['p90'])} | "
                      f"{_num(s['p99'])} | {_num(s['max'])} |" for stage, s in summary.items()]
            lines += ["", "Latency is each frame's own time through a stage, not throughput: frames segmented side "
                      f"by side each take longer than alone. Throughput (frames/s): {_throughput(self)}.", ""]
        else:
            lines += ["No latency was recorded.", ""]
        lines += ["## Dropped frames and skipped messages", "", f"Frames dropped: {self.frames_dropped}", ""]
        if self.skipped:
            lines += ["| reason | messages skipped |", "|---|---:|"]
            lines += [f"| {reason} | {count} |" for reason, count in sorted(self.skipped.items())]
        else:
            lines.append("No messages were skipped.")
        lines.append("")
        if self.voxel_counts:
            lines += ["## Voxel map", "", "| metric | accuracy % | correct | scored |", "|---|---:|---:|---:|"]
            accuracy = self.voxel_accuracy()
            lines += [f"| {name} | {_pct(accuracy[name])} | {correct} | {scored} |"
                      for name, (correct, scored) in self.voxel_counts.items()]
            lines.append("")
        if self.worst_frames:
            lines += ["## Worst frames", "", "| rank | bag | frame | stamp [ns] | mIoU % | overlay |",
                      "|---:|---|---:|---:|---:|---|"]
            lines += [f"| {rank} | {r.bag} | {r.index} | {r.stamp_ns} | {_pct(r.miou)} | {r.overlay or DASH} |"
                      for rank, r in enumerate(self.worst_frames, 1)]
            lines.append("")
        titles = {"worst_frames": "Worst frames", "confusion": "Confusion matrix", "class_iou": "Per-class IoU",
                  "latency": "Latency"}
        embedded = [f"![{title}]({images[key]})" for key, title in titles.items() if key in images]
        if embedded:
            lines += ["## Plots", ""] + [item for image in embedded for item in (image, "")]
        return "\n".join(lines).rstrip("\n") + "\n"

    def _group_lines(self) -> list[str]:
        """The per-scenario and per-bag table, and which classes each group's mIoU leaves out."""
        names = self.confusion.scores(self.label_set).names
        present = ~np.isnan(self.confusion.iou())
        lines = ["## Per scenario and bag", "",
                 "| group | mIoU % | pixel accuracy % | scored pixels | classes in its mIoU |",
                 "|---|---:|---:|---:|---:|"]
        absent = {}
        for name in self.group_names():
            matrix = self.groups[name]
            here = ~np.isnan(matrix.iou())
            lines.append(f"| {name} | {_pct(matrix.miou())} | {_pct(matrix.pixel_accuracy())} | "
                         f"{int(matrix.matrix.sum())} | {int(here.sum())} of {int(present.sum())} |")
            if missing := [names[i] for i in np.flatnonzero(present & ~here)]:
                absent[name] = missing
        lines += ["", f"The overall mIoU averages the IoU of the {int(present.sum())} classes present (in the ground "
                  "truth or the prediction) anywhere; a group's mIoU averages over the classes present in that "
                  "group, so the overall mIoU is not the mean of the groups' mIoUs."]
        if absent:
            lines += ["Classes absent from a group (left out of its mIoU, counted in the overall one):", ""]
            lines += [f"- {name}: {', '.join(missing)}" for name, missing in absent.items()]
        lines.append("")
        return lines

    def _matrix(self) -> ConfusionMatrix:
        return ConfusionMatrix(self.label_set.num_classes, self.label_set.ignore_id)

    def _shown_classes(self) -> list[int]:
        """Class ids of the label set, plus any other id that holds pixels (e.g. a prediction of an unused id)."""
        matrix = self.confusion.matrix
        used = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
        ids = {c.id for c in self.label_set.classes}
        return [i for i in range(self.label_set.num_classes) if i in ids or used[i]]


def summary_table(report: EvaluationReport) -> str:
    """A short fixed-width table for the terminal: mIoU and pixel accuracy per group and overall (percent,
    one decimal), then end-to-end frames/s and p50/p90 of the "total" latency (ms, one decimal); "—" where
    undefined.

    Example:
        group    mIoU %  pixel acc %
        day        61.2         90.1
        night      48.1         85.0
        overall    55.0         87.6
        frames/s 23.4 end to end · latency p50 40.1 ms · p90 52.3 ms · 60 frames, 0 dropped
        3-D: lidar point accuracy 86.1 % · voxel accuracy 85.1 %      (where there is 3-D truth)
    """
    rows = [(name, report.groups[name].miou(), report.groups[name].pixel_accuracy()) for name in report.group_names()]
    rows.append(("overall", report.confusion.miou(), report.confusion.pixel_accuracy()))
    width = max(len("group"), *(len(name) for name, _, _ in rows))
    lines = [f"{'group':<{width}}  {'mIoU %':>6}  {'pixel acc %':>11}"]
    lines += [f"{name:<{width}}  {_pct(miou, 1):>6}  {_pct(accuracy, 1):>11}" for name, miou, accuracy in rows]
    total = report.latency.summary().get(TOTAL)
    p50, p90 = (_num(total["p50"]), _num(total["p90"])) if total else (DASH, DASH)
    fps = report.frames_per_second()
    throughput = _num(fps) if math.isnan(fps) else f"{_num(fps)} end to end"
    lines.append(f"frames/s {throughput} · latency p50 {p50} ms · p90 {p90} ms · "
                 f"{report.frames} frames, {report.frames_dropped} dropped")
    if report.voxel_counts:
        lines.append("3-D: " + " · ".join(f"{name.replace('_', ' ')} {_pct(value, 1)} %"
                                          for name, value in sorted(report.voxel_accuracy().items())))
    return "\n".join(lines)


def _rank(records: list[FrameRecord], limit: int) -> list[FrameRecord]:
    return sorted(records, key=FrameRecord.rank_key)[:limit]


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise EvaluationError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


def _int_matrix(rows: object) -> np.ndarray:
    """Rows of JSON integers → int64 matrix; floats are refused so counts never pass through a rounding."""
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows) \
            or not all(isinstance(v, int) and not isinstance(v, bool) for row in rows for v in row):
        raise EvaluationError("a confusion matrix must be a list of rows of integer counts")
    return np.array(rows, np.int64)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _worst_frame(out_dir: Path, record: FrameRecord) -> WorstFrame | None:
    """The record's image, truth and prediction read back for the grid; None if a file is missing or unreadable."""
    paths = [None if name is None else Path(name) if Path(name).is_absolute() else out_dir / name
             for name in (record.image, record.truth, record.prediction)]
    if any(path is None for path in paths):
        return None
    image = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
    truth, prediction = (cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in paths[1:])
    if image is None or truth is None or prediction is None:
        return None
    caption = f"{record.bag} #{record.index}\nmIoU {_pct(record.miou, 1)} %"
    return WorstFrame(caption, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), truth, prediction)


def _throughput(report: EvaluationReport) -> str:
    if math.isnan(report.frames_per_second()):
        return DASH
    return f"{_num(report.frames_per_second())} end to end ({report.frames} frames in {report.wall_s:.1f} s)"


def _pct(value: float, digits: int = 2) -> str:
    return DASH if math.isnan(value) else f"{100.0 * value:.{digits}f}"


def _num(value: float) -> str:
    return DASH if math.isnan(value) else f"{value:.1f}"
