"""What a truncated MCAP file still holds. A recorder killed mid-write (power cut, full disk) leaves
no footer or summary, and rosbags refuses such a file; the `mcap` library's streaming reader still
reads its complete records, in file order, up to the cut."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import BagError

log = logging.getLogger(__name__)


def mcap_file(path: Path) -> Path | None:
    """The MCAP file of a bag given as the file or as a rosbag2 folder holding one; None otherwise."""
    if path.is_file():
        return path if path.suffix == ".mcap" else None
    files = sorted(path.glob("*.mcap")) if path.is_dir() else []
    return files[0] if len(files) == 1 else None


class TruncatedMcap:
    """The complete records of an MCAP file read front to back: `topics` (topic → message type, for
    the topics whose type the type store knows) and `messages(topics)` in file order.

    Raises:
        BagError: the file is not MCAP at all.
    """

    def __init__(self, path: Path, typestore: Any) -> None:
        self.path = path
        self.typestore = typestore
        self.topics: dict[str, str] = {}
        unknown: set[str] = set()
        for record in self._records(stop_quietly=True):
            if type(record).__name__ == "Channel" and record.topic not in self.topics:
                name = self._schemas.get(record.schema_id, "")
                if name in typestore.fielddefs:
                    self.topics[record.topic] = name
                else:
                    unknown.add(f"{record.topic} ({name or 'no schema'})")
        if unknown:
            log.warning("%s: leaving out topics of unknown message types: %s", path, ", ".join(sorted(unknown)))

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, Any]]:
        """(topic, message type, log time ns, message) of the complete messages on `topics` (default: all).

        Raises:
            BagError: at the cut, after the messages before it, naming how many were read.
        """
        wanted = set(self.topics) if topics is None else set(topics) & set(self.topics)
        channels: dict[int, str] = {}
        count = 0
        for record in self._records(stop_quietly=False):
            kind = type(record).__name__
            if kind == "Channel":
                channels[record.id] = record.topic
            elif kind == "Message" and channels.get(record.channel_id) in wanted:
                topic = channels[record.channel_id]
                typename = self.topics[topic]
                count += 1
                yield topic, typename, record.log_time, self.typestore.deserialize_cdr(record.data, typename)
        log.info("%s: read %d messages of a truncated bag", self.path, count)

    def _records(self, *, stop_quietly: bool) -> Iterator[Any]:
        from mcap.exceptions import McapError
        from mcap.stream_reader import StreamReader

        self._schemas: dict[int, str] = {}
        with open(self.path, "rb") as stream:
            reader = StreamReader(stream, skip_magic=False)
            try:
                for record in reader.records:
                    if type(record).__name__ == "Schema":
                        self._schemas[record.id] = record.name
                    yield record
            except (McapError, EOFError, ValueError, OSError) as exc:  # the cut, or damage before it
                if stop_quietly:
                    return
                raise BagError(f"{self.path} breaks off at byte {stream.tell()} of {self.path.stat().st_size} "
                               f"({str(exc) or type(exc).__name__}): a truncated or damaged recording; the "
                               f"messages before the break were read") from exc
