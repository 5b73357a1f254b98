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


def _document(**changes):
    document = {"name": "x", "ignore_id": 255, "classes": [{"id": 0, "name": "a", "color": [1, 2, 3]}]}
    return {**document, **changes}


@pytest.mark.parametrize(("document", "match"), [
    (_document(classes=[{"id": 0, "name": "a", "color": [300, -5, 1000]}]), r"colour \[300, -5, 1000\]; accepted: \[r, g, b\], each 0..255"),
    (_document(classes=[{"id": 0, "name": "a", "color": [1, 2]}]), r"colour \[1, 2\]; accepted"),
    (_document(classes=[{"id": 0, "name": "a", "color": "red"}]), r"colour 'red'; accepted"),
    (_document(classes=[{"id": 0, "name": "a", "color": [1.5, 2, 3]}]), r"colour \[1.5, 2, 3\]; accepted"),
    (_document(classes=[{"id": 0, "name": 7, "color": [1, 2, 3]}]), r"class 0 has name 7; accepted: a non-empty string"),
    (_document(classes=[{"id": 0, "name": None, "color": [1, 2, 3]}]), r"class 0 has name None"),
    (_document(classes=[{"id": "0", "name": "a", "color": [1, 2, 3]}]), r"class id '0' is invalid; accepted: an integer 0..4095"),
    (_document(classes=[{"id": True, "name": "a", "color": [1, 2, 3]}]), r"class id True is invalid"),
    (_document(classes=[{"id": 4096, "name": "a", "color": [1, 2, 3]}]), r"class id 4096 is invalid; accepted: an integer 0..4095"),
    (_document(classes={"a": 1}), r"classes is dict; accepted: a list"),
    (_document(classes=[{"id": 0, "name": "a", "color": [1, 2, 3], "colour": 1}]),
     r"label set class \[0\]: missing \[\], unknown \['colour'\]"),
    (_document(ignore_id=-1), r"ignore_id -1; accepted: an integer 0..65535"),
    (_document(name=["x"]), r"label set name \['x'\] is invalid"),
    (_document(extra=1), r"malformed label set: missing \[\], unknown \['extra'\]"),
    ([1, 2], r"malformed label set: list instead of a mapping"),
])
def test_malformed_label_sets_are_refused_when_loaded(tmp_path, document, match):
    with pytest.raises(LabelSetError, match=match):
        LabelSet.from_dict(document)
    path = tmp_path / "set.yaml"
    path.write_text(__import__("yaml").safe_dump(document))
    with pytest.raises(LabelSetError, match=match):
        load_label_set(path)


def test_more_classes_than_the_limit_are_refused_before_any_is_built():
    document = _document(classes=[{"id": i, "name": f"c{i}", "color": [0, 0, 0]} for i in range(70_001)])
    with pytest.raises(LabelSetError, match=r"classes is 70001; accepted: a list of 1..4096 classes"):
        LabelSet.from_dict(document)


def test_unreadable_label_set_files_raise_label_set_error(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(LabelSetError, match=r"cannot read label set .*broken.yaml"):
        load_label_set(broken)
    with pytest.raises(LabelSetError, match=r"cannot read label set .*missing.yaml"):
        load_label_set(tmp_path / "missing.yaml")


def test_label_set_messages_with_too_many_classes_are_refused():
    msg = label_set_to_msg(load_label_set("sim_offroad"))
    msg.classes = msg.classes[:1] * 4097
    with pytest.raises(LabelSetError, match=r"has 4097 classes; accepted: 1..4096"):
        msg_to_label_set(msg)


def test_traversability_and_dynamic_flags_load_round_trip_and_are_checked(tmp_path, factory):
    label_set = load_label_set("sim_offroad")
    table = label_set.traversability_by_id()
    assert [table[label_set.id_of(n)] for n in ("road", "grass", "tree_trunk", "sky")] == \
        ["drivable", "rough", "obstacle", "unknown"]
    assert label_set.dynamic_ids() == [label_set.id_of("vehicle"), label_set.id_of("person")]
    assert LabelSet.from_dict(label_set.to_dict()) == label_set
    back = cdr_roundtrip(label_set_to_msg(label_set, factory=factory), "seg_perception/msg/LabelSet")
    assert msg_to_label_set(back) == label_set
    # every shipped set says how each class counts for navigation, and flags its people as dynamic
    for name in available_label_sets():
        shipped = load_label_set(name)
        assert all(c.traversability != "unknown" or c.name in ("sky", "other") for c in shipped.classes), name
        assert shipped.dynamic_ids(), name
    # optional keys default; unknown values and types are refused, naming what is accepted
    plain = LabelSet.from_dict({"name": "p", "classes": [{"id": 0, "name": "a", "color": [0, 0, 0]}]})
    assert plain.classes[0].traversability == "unknown" and plain.classes[0].dynamic is False
    assert "traversability" not in plain.to_dict()["classes"][0]
    with pytest.raises(LabelSetError, match="traversability 'lava'; accepted: drivable, rough, obstacle, unknown"):
        LabelClass(0, "a", (0, 0, 0), "lava")
    with pytest.raises(LabelSetError, match="dynamic 'yes'; accepted: true or false"):
        LabelSet.from_dict({"name": "p", "classes": [{"id": 0, "name": "a", "color": [0, 0, 0], "dynamic": "yes"}]})
    with pytest.raises(LabelSetError, match="unknown \\['cost'\\]"):
        LabelSet.from_dict({"name": "p", "classes": [{"id": 0, "name": "a", "color": [0, 0, 0], "cost": 5}]})
