"""The shipped CamVid student on the real frames the package ships scores what docs/results.md says."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_camvid_student_scores_the_documented_miou_on_the_committed_frames(tmp_path):
    from seg_perception.cli_replay import replay_camvid_frames

    table = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    documented = float(re.search(r"\| `student_camvid` \| data/camvid_val10 \([^)]*\) \| ([0-9.]+) \|", table).group(1))
    report = replay_camvid_frames(tmp_path)
    assert report.frames == report.frames_scored == 10
    assert abs(report.confusion.miou() * 100 - documented) <= 1.0
