"""Folder datasets: both layouts, label maps (hand-checked), resizing, thermal, flips, errors; shipped YAMLs load."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

from seg_perception.labels import available_label_sets, load_label_set
from seg_perception.label_maps import LabelMapError, available_label_maps, load_label_map
from seg_perception.training.folders import FolderDataset, FolderDatasetError

CITYSCAPES_MAP = "cityscapes_labelids_to_cityscapes19"
# labelId → trainId, from cityscapesScripts' labels.py.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                        26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _rgb_image(width: int = 64, height: int = 32) -> np.ndarray:
    """Left half red, right half blue (as RGB); written through cv2, so converted to BGR there."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = RED
    rgb[:, width // 2:] = BLUE
    return rgb


def _label_image(width: int = 64, height: int = 32) -> np.ndarray:
    """Cityscapes labelIds: left half road (7), right top car (26), right bottom 'ground' (6, not evaluated)."""
    labels = np.full((height, width), 7, np.uint8)
    labels[: height // 2, width // 2:] = 26
    labels[height // 2:, width // 2:] = 6
    return labels


def _cityscapes(root: Path, split: str = "train", names=(("aachen", "aachen_000000_000019"),
                                                         ("bochum", "bochum_000000_000313"))) -> Path:
    for city, name in names:
        _write(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", cv2.cvtColor(_rgb_image(),
                                                                                           cv2.COLOR_RGB2BGR))
        _write(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", _label_image())
        # The other gtFine files beside it are not labels of this dataset.
        _write(root / "gtFine" / split / city / f"{name}_gtFine_color.png", _rgb_image())
    return root


def _generic(root: Path, split: str = "train", stems=("a", "b"), thermal: bool = False) -> Path:
    for stem in stems:
        _write(root / split / "images" / f"{stem}.png", cv2.cvtColor(_rgb_image(), cv2.COLOR_RGB2BGR))
        _write(root / split / "labels" / f"{stem}.png", _label_image())
        if thermal:
            # Half resolution, 40 °C on the left, 0 °C on the right: kelvin × 100.
            counts = np.full((16, 32), round((273.15 + 0.0) * 100), np.uint16)
            counts[:, :16] = round((273.15 + 40.0) * 100)
            _write(root / split / "thermal" / f"{stem}.png", counts)
    return root


def test_cityscapes_layout_maps_label_ids_to_train_ids(tmp_path):
    dataset = FolderDataset(_cityscapes(tmp_path), "train", label_map=CITYSCAPES_MAP, size=(32, 16))
    assert dataset.layout == "cityscapes" and len(dataset) == 2
    assert dataset.label_set.name == "cityscapes19"
    sample = dataset[0]
    assert sample["path"].endswith("aachen/aachen_000000_000019_leftImg8bit.png")
    assert sample["label_path"].endswith("aachen_000000_000019_gtFine_labelIds.png")
    labels = sample["labels"]
    assert labels.dtype == torch.int64 and labels.shape == (16, 32)
    expected = np.full((16, 32), 0)          # road 7 → 0
    expected[:8, 16:] = 13                   # car 26 → 13
    expected[8:, 16:] = 255                  # ground 6 is not evaluated → ignore
    np.testing.assert_array_equal(labels.numpy(), expected)
    rgb = sample["rgb"]
    assert rgb.dtype == torch.float32 and rgb.shape == (3, 16, 32)
    for colour, half in ((RED, rgb[:, :, :16]), (BLUE, rgb[:, :, 16:])):
        np.testing.assert_allclose(half.numpy(), np.broadcast_to(np.array(colour)[:, None, None] / 255, (3, 16, 16)))
    assert "thermal" not in sample


def test_generic_layout_pairs_by_stem_and_keeps_raw_ids_without_a_map(tmp_path):
    root = _generic(tmp_path, stems=("b", "a"))
    _write(root / "train" / "images" / "c.jpg", cv2.cvtColor(_rgb_image(), cv2.COLOR_RGB2BGR))
    _write(root / "train" / "labels" / "c.png", _label_image())
    dataset = FolderDataset(root, "train", size=(16, 8))
    assert dataset.layout == "generic" and dataset.label_set is None
    assert [Path(s["path"]).name for s in dataset] == ["a.png", "b.png", "c.jpg"]
    labels = dataset[2]["labels"].numpy()
    assert labels.dtype == np.int64 and labels.shape == (8, 16)
    assert set(np.unique(labels)) == {6, 7, 26}


def test_resize_shapes_and_native_size(tmp_path):
    root = _generic(tmp_path)
    for size, shape in (((320, 180), (180, 320)), ((48, 20), (20, 48)), (None, (32, 64))):
        sample = FolderDataset(root, "train", size=size)[0]
        assert sample["rgb"].shape == (3, *shape) and sample["labels"].shape == shape


def test_nearest_resize_never_invents_label_ids(tmp_path):
    root = tmp_path
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([7, 8, 26, 6], np.uint8), (50, 70))
    _write(root / "val" / "images" / "x.png", rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    _write(root / "val" / "labels" / "x.png", labels)
    mapped = FolderDataset(root, "val", CITYSCAPES_MAP, size=(33, 21))[0]["labels"].numpy()
    assert set(np.unique(mapped)) <= {0, 1, 13, 255}


def test_thermal_is_normalised_like_the_synthetic_data(tmp_path):
    dataset = FolderDataset(_generic(tmp_path, thermal=True), "train", size=(32, 16))
    assert dataset.has_thermal
    thermal = dataset[0]["thermal"]
    assert thermal.dtype == torch.float32 and thermal.shape == (1, 16, 32)
    # (celsius - 20) / 20: 40 °C → 1, 0 °C → -1 (counts are rounded to centikelvin).
    np.testing.assert_allclose(thermal[0, :, :16].numpy(), 1.0, atol=1e-3)
    np.testing.assert_allclose(thermal[0, :, 16:].numpy(), -1.0, atol=1e-3)


def test_thermal_scale_option(tmp_path):
    root = _generic(tmp_path, stems=("a",))
    _write(root / "train" / "thermal" / "a.png", np.full((8, 8), 3000, np.uint16))  # 300 K at 10 counts/K
    thermal = FolderDataset(root, "train", size=(8, 4), thermal_scale=10.0)[0]["thermal"]
    np.testing.assert_allclose(thermal.numpy(), (300 - 273.15 - 20) / 20, rtol=1e-5)


def test_samples_collate_and_are_deterministic(tmp_path):
    dataset = FolderDataset(_generic(tmp_path, thermal=True), "train", CITYSCAPES_MAP, size=(32, 16))
    batch = default_collate([dataset[0], dataset[1]])
    assert batch["rgb"].shape == (2, 3, 16, 32) and batch["labels"].shape == (2, 16, 32)
    assert batch["thermal"].shape == (2, 1, 16, 32)
    again = FolderDataset(tmp_path, "train", CITYSCAPES_MAP, size=(32, 16))[0]
    for key in ("rgb", "labels", "thermal"):
        assert torch.equal(dataset[0][key], again[key])


def test_horizontal_flip_mirrors_all_modalities_deterministically(tmp_path):
    root = _generic(tmp_path, stems=("a",), thermal=True)
    plain = FolderDataset(root, "train", CITYSCAPES_MAP, size=(32, 16))[0]
    flipping = FolderDataset(root, "train", CITYSCAPES_MAP, size=(32, 16), flip=True, seed=3)
    other = FolderDataset(root, "train", CITYSCAPES_MAP, size=(32, 16), flip=True, seed=3)
    flipped_epochs = []
    for epoch in range(12):
        flipping.set_epoch(epoch)
        other.set_epoch(epoch)
        sample = flipping[0]
        assert torch.equal(sample["labels"], other[0]["labels"])
        flipped = not torch.equal(sample["labels"], plain["labels"])
        flipped_epochs.append(flipped)
        for key in ("rgb", "labels", "thermal"):
            assert torch.equal(sample[key], plain[key].flip(-1) if flipped else plain[key])
    assert any(flipped_epochs) and not all(flipped_epochs)


def test_label_map_file_hand_checked(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "target": "sim_offroad",
                                    "mapping": {3: 1, 4: "ignore", 1000: 13, 9: 255}}))
    label_map = load_label_map(path)
    assert label_map.name == "mine" and label_map.label_set.name == "sim_offroad"
    raw = np.array([[3, 4, 5], [1000, 9, 0]], np.uint16)
    np.testing.assert_array_equal(label_map.apply(raw), [[1, 255, 255], [13, 255, 255]])
    assert label_map.apply(raw).dtype == np.int64


def test_every_shipped_label_set_loads():
    names = available_label_sets()
    assert {"sim_offroad", "cityscapes19", "rellis3d", "goose"} <= set(names)
    for name in names:
        labels = load_label_set(name)
        assert labels.name == name
        assert all(len(c.color) == 3 and all(0 <= v <= 255 for v in c.color) for c in labels.classes)


def test_shipped_label_sets_have_the_published_ids():
    cityscapes = load_label_set("cityscapes19")
    assert [c.id for c in cityscapes.classes] == list(range(19))
    assert cityscapes.names[6:8] == ["traffic_light", "traffic_sign"] and cityscapes.names[18] == "bicycle"
    rellis = load_label_set("rellis3d")
    assert {c.id for c in rellis.classes} | {rellis.ignore_id} == {0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 17, 18, 19,
                                                                    23, 27, 29, 30, 31, 33, 34}
    assert rellis.id_of("sky") == 7 and rellis.id_of("rubble") == 34 and rellis.num_classes == 35
    goose = load_label_set("goose")
    assert goose.names == ["other", "artificial_structures", "artificial_ground", "natural_ground", "obstacle",
                           "vehicle", "vegetation", "human", "sky"]


def test_every_shipped_label_map_loads():
    names = available_label_maps()
    assert CITYSCAPES_MAP in names
    for name in names:
        label_map = load_label_map(name)
        assert label_map.table.shape == (65536,)
        valid = {c.id for c in label_map.label_set.classes} | {label_map.label_set.ignore_id}
        assert set(np.unique(label_map.table)) <= valid


def test_cityscapes_map_sends_label_ids_to_train_ids():
    label_map = load_label_map(CITYSCAPES_MAP)
    assert label_map.label_set.name == "cityscapes19"
    for label_id in range(256):
        assert label_map.table[label_id] == CITYSCAPES_TRAIN_IDS.get(label_id, 255), label_id


def _error(call, message: str, error: type[Exception] = FolderDatasetError) -> None:
    with pytest.raises(error, match=message):
        call()


def test_errors_for_missing_folders(tmp_path):
    _error(lambda: FolderDataset(tmp_path / "nope", "train"), "not a folder")
    _error(lambda: FolderDataset(tmp_path, "train"), "no dataset layout found")
    (tmp_path / "train" / "images").mkdir(parents=True)
    _error(lambda: FolderDataset(tmp_path, "train"), "missing label folder")
    (tmp_path / "train" / "labels").mkdir()
    _error(lambda: FolderDataset(tmp_path, "train"), "no images found")
    city = _cityscapes(tmp_path / "cs")
    _error(lambda: FolderDataset(city, "val"), "missing Cityscapes image folder")
    (city / "leftImg8bit" / "val").mkdir()
    _error(lambda: FolderDataset(city, "val"), "missing Cityscapes label folder")


def test_errors_name_unmatched_files(tmp_path):
    root = _generic(tmp_path / "g")
    _write(root / "train" / "images" / "lonely.png", _rgb_image())
    _error(lambda: FolderDataset(root, "train"), r"1 images have no label: train/images/lonely\.png")
    root = _generic(tmp_path / "h")
    _write(root / "train" / "labels" / "orphan.png", _label_image())
    _error(lambda: FolderDataset(root, "train"), r"1 label files have no image: train/labels/orphan\.png")
    root = _generic(tmp_path / "t", thermal=True)
    (root / "train" / "thermal" / "b.png").unlink()
    _error(lambda: FolderDataset(root, "train"), r"have no thermal image: train/images/b\.png")
    city = _cityscapes(tmp_path / "cs")
    next((city / "gtFine" / "train").glob("bochum/*_labelIds.png")).unlink()
    _error(lambda: FolderDataset(city, "train"), r"no \*_gtFine_labelIds\.png label: leftImg8bit/train/bochum/")


def test_errors_for_bad_files(tmp_path):
    root = _generic(tmp_path / "a", stems=("a",))
    (root / "train" / "images" / "a.png").write_bytes(b"not a png")
    _error(lambda: FolderDataset(root, "train")[0], "cannot read image")
    root = _generic(tmp_path / "b", stems=("a",))
    _write(root / "train" / "labels" / "a.png", _rgb_image())
    _error(lambda: FolderDataset(root, "train")[0], "single-channel")
    root = _generic(tmp_path / "c", stems=("a",))
    _write(root / "train" / "labels" / "a.png", _label_image(32, 32))
    _error(lambda: FolderDataset(root, "train")[0], "is 32x32 but image")
    root = _generic(tmp_path / "d", stems=("a",))
    _write(root / "train" / "thermal" / "a.png", np.zeros((8, 8), np.uint8))
    _error(lambda: FolderDataset(root, "train")[0], "16-bit radiometric")


def test_errors_for_bad_options_and_label_maps(tmp_path):
    root = _generic(tmp_path / "g")
    _error(lambda: FolderDataset(root, "train", layout="kitti"), "layout 'kitti' is not supported")
    _error(lambda: FolderDataset(root, "train", size=(0, 10)), "size must be")
    _error(lambda: FolderDataset(root, "train", thermal_scale=0), "thermal_scale")
    _error(lambda: FolderDataset(root, "train", label_map="no_such_map"),
           f"no label map 'no_such_map'.*{CITYSCAPES_MAP}")
    for mapping, message in (({3: 99}, "maps to 99"), ({"x": 1}, "source id 'x'"), ({70000: 1}, "source id 70000")):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"target": "sim_offroad", "mapping": mapping}))
        _error(lambda path=path: load_label_map(path), message, LabelMapError)
    path.write_text(yaml.safe_dump({"target": "no_such_set", "mapping": {}}))
    _error(lambda: load_label_map(path), "no label set 'no_such_set'", LabelMapError)
    path.write_text("mapping: 3\n")
    _error(lambda: load_label_map(path), "must hold `target`", LabelMapError)
    with pytest.raises(LabelMapError, match="uint8 or uint16"):
        load_label_map(CITYSCAPES_MAP).apply(np.zeros((2, 2), np.int32))


def test_index_out_of_range(tmp_path):
    dataset = FolderDataset(_generic(tmp_path), "train")
    with pytest.raises(IndexError):
        dataset[2]
