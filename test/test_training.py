"""Losses against hand computations; a short training run learns; resume and budgets work."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from seg_perception.models import load_checkpoint
from seg_perception.training import FeatureKD, TrainConfig, cross_entropy, evaluate, logit_kd, selector_loss, train


def test_kd_loss_is_zero_for_equal_logits_and_matches_a_hand_computation():
    logits = torch.randn(2, 5, 4, 6)
    assert logit_kd(logits, logits.clone()).abs().item() < 1e-6
    # one pixel, two classes: student (0, 0), teacher (ln 3, 0), T = 1 → q = (3/4, 1/4), p = (1/2, 1/2)
    student = torch.zeros(1, 2, 1, 1)
    teacher = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1, 1)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert logit_kd(student, teacher, temperature=1.0).item() == pytest.approx(expected, rel=1e-5)
    # temperature T scales by T² and softens both
    t = 2.0
    q = torch.softmax(teacher.flatten() / t, 0)
    assert logit_kd(student, teacher, temperature=t).item() == pytest.approx(
        float((q * (q.log() - math.log(0.5))).sum()) * t * t, rel=1e-5)


def test_cross_entropy_ignores_pixels_and_ohem_keeps_the_hardest():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0] = torch.tensor([2.0, 0.0, -2.0, 5.0])  # class-0 scores; class 1 stays 0
    labels = torch.tensor([[[0, 0, 0, 255]]])
    per_pixel = [math.log(1 + math.exp(-v)) for v in (2.0, 0.0, -2.0)]
    assert cross_entropy(logits, labels).item() == pytest.approx(sum(per_pixel) / 3, rel=1e-5)
    # keep the hardest third: only the -2 pixel
    assert cross_entropy(logits, labels, ohem_fraction=0.34).item() == pytest.approx(per_pixel[2], rel=1e-5)


def test_selector_loss_targets_where_the_coarse_prediction_is_wrong():
    coarse = torch.zeros(1, 2, 2, 2)
    coarse[0, 1] = 1.0  # predicts class 1 everywhere
    labels = torch.tensor([[[1, 1], [0, 255]]])
    confident = torch.tensor([[[[-20.0, -20.0], [20.0, 0.0]]]])  # right where wrong, right where right
    assert selector_loss(confident, coarse, labels).item() < 1e-6
    assert selector_loss(-confident, coarse, labels).item() > 10


def test_feature_kd_is_zero_when_the_projection_maps_onto_the_teacher():
    kd = FeatureKD(3, 3)
    with torch.no_grad():
        kd.projection.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        kd.projection.bias.zero_()
    features = torch.randn(2, 3, 4, 4)
    assert kd(features, features * 7.0).item() < 1e-10  # channel-normalised: scale does not matter


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(out=out, architecture="student", modalities=("rgb", "thermal"), train_samples=32,
                         val_samples=8, image_size=(96, 64), epochs=3, batch_size=4, lr=5e-3, seed=3)
    return config, train(config)


def test_a_short_training_run_lowers_the_loss_and_beats_chance(tiny_run):
    config, summary = tiny_run
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    checkpoint = load_checkpoint(config.out / "last.safetensors", architecture="student")
    from seg_perception.sim.dataset import SimDataset, SimDatasetConfig

    held_out = SimDataset("test", SimDatasetConfig(samples=8, width=96, height=64))
    scores = evaluate(checkpoint.model, held_out)
    labels = torch.stack([held_out[i]["labels"] for i in range(len(held_out))])
    majority = torch.bincount(labels.flatten()).max().item() / labels.numel()
    assert scores["pixel_accuracy"] > majority  # better than always answering the most common class
    assert scores["miou"] > 1.0 / checkpoint.config.num_classes
    assert json.loads((config.out / "summary.json").read_text())["steps"] == summary["steps"]


def test_resume_continues_where_training_stopped(tiny_run):
    config, summary = tiny_run
    resumed = train(TrainConfig(**{**config.__dict__, "epochs": 4, "resume": True}))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["steps"] == summary["steps"] + summary["steps"] // 3


def test_wall_clock_budget_stops_training(tmp_path):
    summary = train(TrainConfig(out=tmp_path, train_samples=16, val_samples=4, image_size=(64, 48), epochs=50,
                                batch_size=4, minutes=0.05))
    assert len(summary["history"]) < 50
    assert summary["elapsed_s"] < 60


def test_distillation_runs_with_a_teacher_checkpoint(tiny_run, tmp_path):
    config, _ = tiny_run
    teacher = Path(config.out) / "last.safetensors"  # any checkpoint of the label set can teach
    summary = train(TrainConfig(out=tmp_path, modalities=("rgb",), train_samples=16, val_samples=4,
                                image_size=(96, 64), epochs=1, batch_size=4, teacher=teacher))
    assert summary["steps"] == 4 and summary["config"]["teacher"] == str(teacher)


def test_train_and_distill_commands(tmp_path, capsys):
    from seg_perception.cli import main

    common = ["--samples", "8", "--size", "64", "48", "--epochs", "1", "--batch-size", "4", "--threads", "1"]
    assert main(["train", "--arch", "teacher", "--out", str(tmp_path / "t"), *common]) == 0
    assert "best val mIoU" in capsys.readouterr().out
    assert main(["distill", "--teacher", str(tmp_path / "t" / "last.safetensors"), "--out", str(tmp_path / "s"),
                 "--modalities", "rgb", "thermal", *common]) == 0
    student = load_checkpoint(tmp_path / "s" / "best.safetensors")
    assert student.config.architecture == "student" and student.config.modalities == ("rgb", "thermal")
    assert student.metadata["training"]["config"]["teacher"] == str(tmp_path / "t" / "last.safetensors")


def test_torchrun_trains_with_distributed_data_parallel(tmp_path):
    """Two processes on the CPU (gloo over loopback): one run, one checkpoint, the steps split between ranks."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", "29531", "-m", "seg_perception", "train", "--out", str(out), "--samples", "16",
               "--size", "64", "48", "--epochs", "1", "--batch-size", "4", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2  # 16 samples / (batch 4 × 2 ranks)
    assert load_checkpoint(out / "last.safetensors").config.architecture == "student"


def test_every_shipped_checkpoint_loads_with_its_label_set():
    from seg_perception.models import SHIPPED, shipped_weights

    for name in SHIPPED:
        checkpoint = load_checkpoint(shipped_weights(name), label_set="camvid11" if "camvid" in name else "sim_offroad")
        assert checkpoint.config.architecture == ("teacher" if name.startswith("teacher") else "student")
        assert ("thermal" in checkpoint.config.modalities) == ("thermal" in SHIPPED[name])
        assert checkpoint.metadata["training"]["val"]["miou"] > 0.3


def test_distillation_from_cached_teacher_outputs_equals_the_online_teacher(tiny_run, tmp_path):
    """Precomputed teacher outputs (float16) give the same first-step loss as running the teacher."""
    config, _ = tiny_run
    teacher = Path(config.out) / "last.safetensors"
    common = dict(modalities=("rgb",), train_samples=8, val_samples=4, image_size=(96, 64), epochs=1, batch_size=4,
                  teacher=teacher, lr=0.0)
    online = train(TrainConfig(out=tmp_path / "online", **common))
    cached = train(TrainConfig(out=tmp_path / "cached", cache_dir=tmp_path / "cache", **common))
    assert any(p.name.startswith("teacher-") for p in (tmp_path / "cache").iterdir())
    assert cached["history"][0]["train_loss"] == pytest.approx(online["history"][0]["train_loss"], rel=2e-3)
