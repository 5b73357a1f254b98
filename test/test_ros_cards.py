"""segmentation_node on real rclpy running users' own networks (model and card as parameters): what it
publishes equals the independent onnxruntime + numpy computation."""
from __future__ import annotations

import numpy as np
import pytest

from test_engines_cards import CONVENTIONS, assert_matches, build, frames_for, reference
from test_ros_segmentation_node import STAMP0, graph, image, outputs_of, started, wait_for  # noqa: F401

from seg_perception.io import image_to_array


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_segmentation_node_publishes_what_the_independent_computation_gives(graph, tmp_path, name):  # noqa: F811
    from seg_perception.ros.segmentation_node import SegmentationNode

    path, card = build(tmp_path, name, card_beside=False)
    card_file = tmp_path / "card.yaml"
    import yaml

    card_file.write_text(yaml.safe_dump(card))
    node = graph.node(SegmentationNode, model=str(path), card=str(card_file), backend="onnxruntime",
                      input_width=0, input_height=0)
    try:
        inboxes = outputs_of(graph, node)
        wanted = ("labels", "info") if name == "class_ids" else ("labels", "confidence", "info")
        rgb = started(graph, node, wanted)
        for i, frame in enumerate(frames_for()):
            stamp = STAMP0 + i * 100_000_000
            rgb.publish(image(graph, frame, stamp))
            labels = wait_for(lambda: inboxes["labels"].stamped(stamp), what=f"labels of frame {i}")
            info = wait_for(lambda: inboxes["info"].stamped(stamp), what=f"info of frame {i}")
            confidence = None
            if name != "class_ids":
                confidence = image_to_array(wait_for(lambda: inboxes["confidence"].stamped(stamp),
                                                     what=f"confidence of frame {i}"))
            else:
                assert np.isnan(info.mean_confidence)
            assert info.model_id == name and info.label_set == f"{name}_classes"
            assert_matches(image_to_array(labels), confidence, reference(path, card, frame))
    finally:
        graph.remove(node)
