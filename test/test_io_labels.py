"""LabelSet ⇄ seg_perception/LabelSet messages, and label-set files."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import cdr_roundtrip
from seg_perception.io import label_set_to_msg, msg_to_label_set
from seg_perception.labels import LabelClass, LabelSet, LabelSetError, available_label_sets, load_label_set


def test_label_set_message_roundtrip(factory):
    original = load_label_set("sim_offroad")
    msg = label_set_to_msg(original, stamp_ns=5_000_000_001, factory=factory)
    back = cdr_roundtrip(msg, "seg_perception/msg/LabelSet")
    assert back.header.stamp.sec == 5 and back.header.stamp.nanosec == 1
    assert msg_to_label_set(back) == original


def test_every_shipped_label_set_loads_and_is_consistent():
    names = available_label_sets()
    assert "sim_offroad" in names
    for name in names:
        label_set = load_label_set(name)
        assert label_set.name == name
        palette = label_set.palette()
        for c in label_set.classes:
            assert tuple(palette[c.id]) == c.color


def test_sim_label_set_known_answers():
    label_set = load_label_set("sim_offroad")
    assert label_set.num_classes == 14
    assert label_set.id_of("person") == 13
    assert label_set.colorize(__import__("numpy").array([[13]], "uint8"))[0, 0].tolist() == [230, 20, 60]


def test_bad_label_sets_raise_label_set_error(tmp_path):
    with pytest.raises(LabelSetError, match="repeats class ids"):
        LabelSet("x", (LabelClass(1, "a", (0, 0, 0)), LabelClass(1, "b", (0, 0, 0))))
    with pytest.raises(LabelSetError, match="differ from ignore_id"):
        LabelSet("x", (LabelClass(255, "a", (0, 0, 0)),))
    with pytest.raises(LabelSetError, match="no label set 'nope'; available: .*sim_offroad"):
        load_label_set("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nclasses: [{id: 0}]\n")
    with pytest.raises(LabelSetError, match="malformed label set"):
        load_label_set(bad)
    with pytest.raises(LabelSetError, match="has no class 'car'; classes: sky, road"):
        load_label_set("sim_offroad").id_of("car")


@pytest.mark.parametrize("shape, dtype", [((36, 64), np.uint8), ((5,), np.uint16), ((2, 3, 4), np.uint8),
                                          ((0, 7), np.uint8)])
def test_colorize_equals_indexing_the_palette(shape, dtype):
    label_set = load_label_set("sim_offroad")
    labels = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    labels.flat[: labels.size // 2] %= label_set.num_classes
    colors = label_set.colorize(labels)
    assert colors.shape == (*shape, 3) and colors.dtype == np.uint8
    assert np.array_equal(colors, label_set.palette()[labels])
