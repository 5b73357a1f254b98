"""seg_perception/LabelSet ⇄ LabelSet (the classes, names and colours a model predicts)."""
from __future__ import annotations

from typing import Any

import numpy as np

from seg_perception.labels import MAX_CLASSES, LabelClass, LabelSet, LabelSetError

from .messages import MessageFactory, RosbagsFactory, make_header


def label_set_to_msg(label_set: LabelSet, *, stamp_ns: int = 0, factory: MessageFactory | None = None) -> Any:
    """A seg_perception/msg/LabelSet with the classes in id order."""
    factory = factory or RosbagsFactory()
    classes = [factory.make("seg_perception/msg/LabelClass", id=c.id, name=c.name, color=np.array(c.color, np.uint8),
                               traversability=c.traversability, dynamic=c.dynamic)
               for c in sorted(label_set.classes, key=lambda c: c.id)]
    return factory.make("seg_perception/msg/LabelSet", header=make_header(factory, stamp_ns), name=label_set.name,
                        classes=classes, ignore_id=label_set.ignore_id)


def msg_to_label_set(msg: Any) -> LabelSet:
    """The LabelSet carried by a seg_perception/msg/LabelSet (either message world).

    Raises:
        LabelSetError: the message's classes are inconsistent (repeated ids or names, none at all,
            more than MAX_CLASSES) or one is invalid (see LabelClass).
    """
    if len(msg.classes) > MAX_CLASSES:
        raise LabelSetError(f"label set {msg.name!r} has {len(msg.classes)} classes; accepted: 1..{MAX_CLASSES}")
    classes = tuple(LabelClass(int(c.id), str(c.name), tuple(int(v) for v in np.asarray(c.color)),  # type: ignore[misc]
                               str(c.traversability) or "unknown", bool(c.dynamic))
                    for c in msg.classes)
    return LabelSet(str(msg.name), classes, int(msg.ignore_id))
