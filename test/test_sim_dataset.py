"""SimDataset: shapes and ranges per modality subset, determinism, split seeds, cache round trip, and
agreement with independent World renders (labels, thermal, RGB, event activity)."""
from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from seg_perception.labels import load_label_set
from seg_perception.sim import CameraSpec, RigSpec, World
from seg_perception.sim.dataset import (
    SPLIT_SEEDS,
    SceneBlockSampler,
    SimDataset,
    SimDatasetConfig,
    class_frequencies,
    plan_sample,
)

CONFIG = SimDatasetConfig(samples=6, samples_per_scene=3, width=160, height=90)
LABELS = load_label_set("sim_offroad")
TENSORS = ("rgb", "thermal", "events", "labels")


@pytest.fixture(scope="module")
def dataset() -> SimDataset:
    return SimDataset("train", CONFIG)


@pytest.fixture(scope="module")
def samples(dataset: SimDataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def _world(sample: dict, scenario: str | None = None) -> World:
    """The sample's scene built from scratch, with the rig the dataset documents (all modalities at training size)."""
    rig = RigSpec(camera=CameraSpec(width=CONFIG.width, height=CONFIG.height), thermal_scale=1.0, event_scale=1.0)
    return World(sample["seed"], scenario or sample["scenario"], rig=rig)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("modalities", [(), ("rgb",), ("rgb", "thermal"), ("events",), ("rgb", "thermal", "events")])
def test_shapes_dtypes_and_ranges_per_modality_subset(modalities, samples):
    sample = SimDataset("train", replace(CONFIG, modalities=modalities))[4]
    h, w = CONFIG.height, CONFIG.width
    assert {k for k in TENSORS if k in sample} == {"labels", *modalities}
    assert sample["labels"].shape == (h, w) and sample["labels"].dtype == torch.int64
    assert 0 <= int(sample["labels"].min()) and int(sample["labels"].max()) < LABELS.num_classes
    if "rgb" in modalities:
        assert sample["rgb"].shape == (3, h, w) and sample["rgb"].dtype == torch.float32
        assert 0.0 <= float(sample["rgb"].min()) and float(sample["rgb"].max()) <= 1.0
    if "thermal" in modalities:
        assert sample["thermal"].shape == (1, h, w) and sample["thermal"].dtype == torch.float32
        celsius = sample["thermal"] * 20 + 20
        assert -60 < float(celsius.min()) and float(celsius.max()) < 80  # sky at about -20 °C, people at 35 °C
    if "events" in modalities:
        assert sample["events"].shape == (CONFIG.event_bins, h, w) and sample["events"].dtype == torch.float32
        assert torch.isfinite(sample["events"]).all() and sample["events"].abs().max() > 0
    # Leaving a modality out skips its work and changes nothing else.
    full = samples[4]
    for key in ("labels", *modalities, "seed", "scenario", "kind", "time_s"):
        assert torch.equal(sample[key], full[key]) if torch.is_tensor(full[key]) else sample[key] == full[key]


def test_same_index_same_sample_across_instances(samples):
    other = SimDataset("train", CONFIG)
    for index in (4, 0):  # out of order: the answer must not depend on what was rendered before
        _assert_same(other[index], samples[index])


def test_different_indices_differ(samples):
    assert samples[0]["seed"] == samples[1]["seed"]  # consecutive indices share a scene ...
    assert samples[0]["time_s"] != samples[1]["time_s"]  # ... at different times
    for key in TENSORS:
        assert not torch.equal(samples[0][key], samples[1][key]), key
    assert samples[2]["seed"] != samples[3]["seed"]


def test_split_seed_ranges_are_disjoint_and_respected():
    ranges = sorted(SPLIT_SEEDS.values())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ranges, ranges[1:]))
    config = SimDatasetConfig(samples=40, samples_per_scene=4)
    for split, (start, end) in SPLIT_SEEDS.items():
        seeds = [plan_sample(split, i, config).seed for i in range(config.samples)]
        assert seeds == [start + i // 4 for i in range(config.samples)] and max(seeds) < end
    start, end = SPLIT_SEEDS["val"]
    with pytest.raises(ValueError, match="'val' split"):
        SimDataset("val", SimDatasetConfig(samples=end - start + 1, samples_per_scene=1))
    with pytest.raises(ValueError, match="supported: train, val, test"):
        SimDataset("training", CONFIG)
    with pytest.raises(IndexError):
        SimDataset("train", CONFIG)[CONFIG.samples]


def test_scenario_mix_follows_weights():
    config = SimDatasetConfig(samples=2000, samples_per_scene=1, scenarios=(("day", 3.0), ("night", 1.0)))
    names = [plan_sample("train", i, config).scenario for i in range(config.samples)]
    assert set(names) == {"day", "night"}
    assert abs(names.count("day") / len(names) - 0.75) < 0.04  # binomial sigma ≈ 0.01


def test_invalid_config_names_the_bad_value():
    with pytest.raises(ValueError, match="lidar"):
        SimDatasetConfig(modalities=("rgb", "lidar"))
    with pytest.raises(ValueError, match="rain"):
        SimDatasetConfig(scenarios=(("rain", 1.0),))
    with pytest.raises(ValueError, match="desert"):
        SimDatasetConfig(kind="desert")


def test_cache_round_trip_is_identical(tmp_path, samples, monkeypatch):
    writer = SimDataset("train", CONFIG, cache_dir=tmp_path)
    _assert_same(writer[2], samples[2])
    path = writer.cache_path(2)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind

    reader = SimDataset("train", CONFIG, cache_dir=tmp_path)

    def no_render(index):
        raise AssertionError("rendered although cached")

    monkeypatch.setattr(reader, "render", no_render)
    _assert_same(reader[2], samples[2])
    monkeypatch.undo()

    # A different config must not hit that file; a damaged file is rendered again and rewritten.
    assert SimDataset("train", replace(CONFIG, event_bins=3), cache_dir=tmp_path).cache_path(2) != path
    assert SimDataset("val", CONFIG, cache_dir=tmp_path).cache_path(2) != path
    path.write_bytes(b"not an npz")
    _assert_same(writer[2], samples[2])
    _assert_same(reader[2], samples[2])


def test_labels_thermal_and_rgb_match_an_independent_render(samples):
    sample = samples[4]
    world = _world(sample)
    rgb, counts, _, labels = world.render_camera(sample["time_s"], np.random.default_rng(12345))
    assert np.array_equal(sample["labels"].numpy(), labels)
    # Labels are geometry: another scenario's render of the same seed and time gives the same ones.
    other = "night" if sample["scenario"] != "night" else "day"
    assert np.array_equal(_world(sample, other).render_camera(sample["time_s"], np.random.default_rng(0))[3], labels)
    # Thermal and RGB differ from this render by sensor noise only (other noise draws).
    thermal = (counts.astype(np.float64) / 100 - 273.15 - 20) / 20
    assert np.abs(sample["thermal"][0].numpy() - thermal).mean() < 0.005  # 0.1 K: 50 ms later is 0.2 K off
    assert np.abs(sample["rgb"].numpy().transpose(1, 2, 0) - rgb / 255.0).mean() < 0.013  # 50 ms later: 0.017


def test_thermal_is_aligned_with_labels(samples):
    sky, grass, person = LABELS.id_of("sky"), LABELS.id_of("grass"), LABELS.id_of("person")
    with_people = 0
    for sample in samples:
        labels, thermal = sample["labels"].numpy(), sample["thermal"][0].numpy()
        means = {c: thermal[labels == c].mean() for c in np.unique(labels) if (labels == c).sum() >= 20}
        assert min(means, key=means.get) == sky, sample["scenario"]
        if person in means:
            with_people += 1
            assert means[person] > means[grass] + 0.25  # people are > 5 K warmer than grass
    assert with_people >= 1  # the fixture's samples do contain people


def test_events_appear_where_log_intensity_changed(samples):
    sample = samples[3]
    world = _world(sample)
    times = sample["time_s"] - CONFIG.event_window_s * np.linspace(1, 0, CONFIG.event_substeps + 1)
    logs = np.stack([world.event_log_intensity(t) for t in times])
    active = sample["events"].abs().sum(0).numpy() > 0
    changed = np.abs(logs[-1] - logs[0]) > 3 * CONFIG.event_config.threshold_on
    still = np.abs(logs - logs[0]).max(0) < 0.02
    assert changed.sum() > 200 and still.sum() > 200
    assert active[changed].mean() > 0.9
    assert active[still].mean() < 0.02  # shot noise only: 0.1 Hz × 50 ms per pixel


def test_class_frequencies_match_the_labels(samples):
    frequencies = class_frequencies("train", CONFIG)
    counts = sum(np.bincount(s["labels"].numpy().ravel(), minlength=LABELS.num_classes) for s in samples)
    np.testing.assert_allclose(frequencies, counts / counts.sum())
    assert frequencies.shape == (LABELS.num_classes,)


def test_scene_block_sampler_shuffles_whole_scenes():
    dataset = SimDataset("train", SimDatasetConfig(samples=22, samples_per_scene=4))
    sampler = SceneBlockSampler(dataset, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(22))
    scenes = [i // 4 for i in first]
    assert len([s for a, s in zip(scenes, scenes[1:]) if s != a]) == 5  # six scenes, each in one block
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_dataloader_batches_and_pickles_without_worlds(dataset, samples):
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch["rgb"].shape == (3, 3, CONFIG.height, CONFIG.width)
    assert torch.equal(batch["events"][2], samples[2]["events"]) and batch["scenario"][0] == samples[0]["scenario"]
    assert len(pickle.dumps(dataset)) < 10_000  # workers get the recipe, not the cached Worlds
