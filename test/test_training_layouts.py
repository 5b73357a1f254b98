"""Dataset layouts as users have them (SegNet/CamVid, dataset YAML), label ids checked against the label set,
and training sizes that keep the frames' aspect ratio."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from seg_perception.labels import load_label_set
from seg_perception.training import FolderDataset, FolderDatasetError, TrainConfig
from seg_perception.training.sizes import aspect_change, check_aspect, derived_size
from seg_perception.training.trainer import resolve

# SegNet's CamVid colours (SegNet-Tutorial, Scripts/test_segmentation_camvid.py), in label id order.
SEGNET_COLOURS = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _labels(seed: int, width: int = 24, height: int = 18, top: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, top, (height, width), dtype=np.uint8)


def _camvid(root: Path, splits=("train", "val"), stems=("0001TP_006690", "0006R0_f00930"), width=24,
            height=18) -> Path:
    """SegNet's CamVid layout: <split>/ frames and <split>annot/ label images of the same names."""
    for s, split in enumerate(splits):
        for i, stem in enumerate(stems):
            _write(root / split / f"{stem}.png", np.full((height, width, 3), 40 * i, np.uint8))
            _write(root / f"{split}annot" / f"{stem}.png", _labels(10 * s + i, width, height))
    return root


def test_camvid_label_set_has_segnets_ids_and_colours():
    camvid = load_label_set("camvid11")
    assert camvid.ignore_id == 11 and camvid.num_classes == 11
    assert [c.id for c in camvid.classes] == list(range(11))
    assert camvid.names == ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                            "pedestrian", "bicyclist"]
    assert [c.color for c in camvid.classes] == SEGNET_COLOURS


def test_segnet_camvid_layout_is_detected_and_paired_by_name(tmp_path):
    root = _camvid(tmp_path)
    dataset = FolderDataset(root, "val", label_set="camvid11")
    assert dataset.layout == "segnet" and len(dataset) == 2
    assert [p.image.name for p in dataset.samples] == ["0001TP_006690.png", "0006R0_f00930.png"]
    assert all(p.label == root / "valannot" / p.image.name for p in dataset.samples)
    rgb, raw = dataset.read(1)
    assert rgb.shape == (18, 24, 3) and np.array_equal(raw, _labels(11))
    assert np.array_equal(dataset[1]["labels"].numpy(), _labels(11).astype(np.int64))
    assert dataset.source_size() == (24, 18)


def test_layout_errors_name_the_splits_there_are(tmp_path):
    root = _camvid(tmp_path)
    with pytest.raises(FolderDatasetError, match=r"no dataset layout found .*test.*splits found: train, val"):
        FolderDataset(root, "test")
    (root / "trainannot" / "0001TP_006690.png").unlink()
    with pytest.raises(FolderDatasetError, match=r"1 images have no label: train/0001TP_006690\.png"):
        FolderDataset(root, "train")


def test_dataset_yaml_with_globs_suffix_pairing_label_set_and_map(tmp_path):
    # Images and labels side by side in one folder, named <frame>_rgb.jpg and <frame>_ids.png, plus a
    # colour rendering that is not a label image; a second split read from plain folders.
    for i in range(3):
        _write(tmp_path / "drive" / f"f{i}_rgb.png", np.full((18, 24, 3), 50 * i, np.uint8))
        _write(tmp_path / "drive" / f"f{i}_ids.png", _labels(i, top=12))
        _write(tmp_path / "drive" / f"f{i}_colour.png", np.zeros((18, 24, 3), np.uint8))
    _camvid(tmp_path / "camvid", splits=("val",))
    mapping = {3: 0, 8: 1}  # road → 0, car → 1; every other id → ignore
    (tmp_path / "road_car.yaml").write_text(yaml.safe_dump({"target": str(tmp_path / "road_car_set.yaml"),
                                                             "mapping": mapping}))
    (tmp_path / "road_car_set.yaml").write_text(yaml.safe_dump({
        "name": "road_car", "ignore_id": 255,
        "classes": [{"id": 0, "name": "road", "color": [1, 1, 1]}, {"id": 1, "name": "car", "color": [2, 2, 2]}]}))
    spec = {"label_set": "camvid11",
            "splits": {"train": {"images": "drive/*_rgb.png", "labels": "drive/*_ids.png", "image_suffix": "_rgb.png",
                                 "label_suffix": "_ids.png", "label_map": str(tmp_path / "road_car.yaml"),
                                 "label_set": str(tmp_path / "road_car_set.yaml")},
                       "val": {"images": "camvid/val", "labels": "camvid/valannot"}}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
    train = FolderDataset(tmp_path / "data.yaml", "train")
    assert train.layout == "yaml" and [p.image.name for p in train.samples] == ["f0_rgb.png", "f1_rgb.png",
                                                                                 "f2_rgb.png"]
    assert [p.label.name for p in train.samples] == ["f0_ids.png", "f1_ids.png", "f2_ids.png"]
    assert train.label_set.name == "road_car"
    expected = np.full((18, 24), 255, np.int64)
    for source, target in mapping.items():
        expected[_labels(2) == source] = target
    assert np.array_equal(train[2]["labels"].numpy(), expected)
    val = FolderDataset(tmp_path / "data.yaml", "val")
    assert val.label_set.name == "camvid11" and len(val) == 2 and val.label_map is None
    with pytest.raises(FolderDatasetError, match=r"has no split 'test'; splits: train, val"):
        FolderDataset(tmp_path / "data.yaml", "test")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"splits": {"train": {"images": "drive"}}}))
    with pytest.raises(FolderDatasetError, match="expected the keys images and labels"):
        FolderDataset(tmp_path / "bad.yaml", "train")


def test_label_ids_are_checked_on_first_read_with_found_and_accepted_ids(tmp_path):
    root = _camvid(tmp_path, splits=("train",))
    bad = _labels(0)
    bad[0, :3] = (11, 12, 40)  # 11 is CamVid's void (accepted); 12 and 40 are no class of it
    _write(root / "trainannot" / "0001TP_006690.png", bad)
    dataset = FolderDataset(root, "train", label_set="camvid11")
    found = sorted(set(np.unique(bad).tolist()))
    message = (rf"holds ids \[{', '.join(map(str, found))}\], of which \[12, 40\] are not in label set 'camvid11' "
               rf"\(accepted: classes 0-10 and ignore 11\)")
    with pytest.raises(FolderDatasetError, match=message):
        dataset[0]
    assert dataset[1]["labels"].shape == (18, 24)  # the other frame is fine
    # Through a label map every id is valid: unmapped ids become the ignore id.
    mapped = FolderDataset(root, "train", "cityscapes_labelids_to_cityscapes19")
    assert mapped[0]["labels"].max() <= 255
    with pytest.raises(FolderDatasetError, match="maps onto label set 'cityscapes19', not 'camvid11'"):
        FolderDataset(root, "train", "cityscapes_labelids_to_cityscapes19", label_set="camvid11")


@pytest.mark.parametrize("source, size", [((480, 360), (320, 240)), ((1920, 1080), (320, 176)),
                                          ((2048, 1024), (320, 160)), ((640, 100), (320, 48)), ((100, 4000), (320, 12800))])
def test_derived_size_keeps_the_aspect_ratio_to_a_multiple_of_16(source, size):
    assert derived_size(source) == size
    assert size[1] % 16 == 0 and aspect_change(size, source) <= 8 / size[1]


def test_explicit_sizes_must_keep_the_aspect_ratio_unless_stretched(tmp_path):
    check_aspect((640, 480), (480, 360))
    check_aspect((320, 176), (1920, 1080))  # 2 % off: rounding, not stretching
    with pytest.raises(FolderDatasetError, match=r"--size 320 180 .* stretch the 480x360 frames .* by 33 %.*"
                                                 r"e\.g\. 320 240.*--stretch"):
        check_aspect((320, 180), (480, 360))
    root = _camvid(tmp_path, width=32, height=24)
    common = dict(out=tmp_path / "run", data=str(root), label_set="camvid11")
    config, label_set = resolve(TrainConfig(**common))
    assert config.image_size == (320, 240) and label_set.name == "camvid11"
    with pytest.raises(FolderDatasetError, match="would stretch"):
        resolve(TrainConfig(**common, image_size=(64, 36)))
    assert resolve(TrainConfig(**common, image_size=(64, 36), stretch=True))[0].image_size == (64, 36)
    assert resolve(TrainConfig(**common, image_size=(64, 48)))[0].image_size == (64, 48)
    with pytest.raises(FolderDatasetError, match=r"label set of .* is not known.*--label-set"):
        resolve(TrainConfig(out=tmp_path, data=str(root)))
    assert resolve(TrainConfig(out=tmp_path))[0].image_size == (320, 180)  # the synthetic world renders any size


def test_cached_samples_are_read_from_memory_after_the_first_read(tmp_path):
    root = _camvid(tmp_path, splits=("train",), stems=("a", "b", "c", "d"))
    plain = FolderDataset(root, "train", size=(12, 9), label_set="camvid11", flip=True, seed=1)
    cached = FolderDataset(root, "train", size=(12, 9), label_set="camvid11", flip=True, seed=1, cache=True)
    expected = {}
    for epoch in (0, 1):  # flips differ between epochs
        plain.set_epoch(epoch)
        expected[epoch] = [plain[i] for i in range(len(plain))]
    assert [cached[i]["rgb"].shape for i in range(len(cached))] == [(3, 9, 12)] * 4
    for folder in ("train", "trainannot"):  # gone from disk: later reads must come from memory
        for path in (root / folder).iterdir():
            path.unlink()
    for epoch in (0, 1):
        cached.set_epoch(epoch)
        for i, sample in enumerate(expected[epoch]):
            assert all(torch.equal(cached[i][k], sample[k]) for k in ("rgb", "labels"))
    with pytest.raises(FolderDatasetError, match="cannot read image"):
        plain[0]


def test_train_command_errors_are_one_line(tmp_path, capsys):
    from seg_perception.cli import main

    root = _camvid(tmp_path / "camvid")
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: the label set of") and "--label-set" in error and error.count("\n") == 1
    assert main(["train", "--data", str(root), "--label-set", "camvid11", "--size", "64", "36",
                 "--out", str(tmp_path / "run")]) == 1
    assert "would stretch the 24x18 frames" in capsys.readouterr().err
