"""Bag reading and writing through rosbags: rosbag2 (MCAP, SQLite3) and ROS 1 bags, no ROS needed."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BagError
from .typestore import default_typestore

STORAGES = ("mcap", "sqlite3")


@dataclass(frozen=True)
class BagMessage:
    """One deserialised message of a bag."""

    topic: str
    typename: str
    log_time_ns: int
    msg: Any


def _latched_qos() -> list[Any]:
    """Transient-local QoS, so players re-deliver the message to late subscribers (like /tf_static)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0, nsec=0)
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                never, never, QosLiveliness.AUTOMATIC, never, False)]


class BagWriter:
    """Writes rosbags type-store messages to a new rosbag2 folder.

    Use as a context manager; connections are created on first write of each topic.

    Args:
        path: bag folder to create; it must not exist.
        storage: "mcap" or "sqlite3".
        typestore: type store to serialise with; default `default_typestore()`.
        compress: zstd compression, lossless and read transparently by rosbags, the mcap
            libraries and `ros2 bag`: MCAP chunk compression (as the zstd storage presets write),
            or rosbag2's per-message compression for SQLite3.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", typestore: Any | None = None, *,
                 compress: bool = False) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"bag storage {storage!r} is not supported; supported: {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"bag {self.path} already exists; choose a new path or delete it")
        self.typestore = typestore if typestore is not None else default_typestore()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        if compress:
            mode = CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE
            self._writer.set_compression(mode, CompressionFormat.ZSTD)
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, log_time_ns: int, *, latched: bool = False) -> None:
        """Serialise `msg` (a type-store message) to CDR and append it on `topic` at `log_time_ns`."""
        typename = msg.__msgtype__
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(
                topic, typename, typestore=self.typestore,
                offered_qos_profiles=_latched_qos() if latched else (),
            )
            self._connections[topic] = connection
        elif connection.msgtype != typename:
            raise BagError(f"topic {topic} already carries {connection.msgtype}; cannot also write {typename}")
        self._writer.write(connection, int(log_time_ns), self.typestore.serialize_cdr(msg, typename))


def read_messages(paths: Path | str | Iterable[Path | str], topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Yield the messages of one or more bags (rosbag2 folders or files, ROS 1 .bag files) in log-time order.

    Message types the bags define themselves (MCAP, ROS 1) are used as stored; otherwise the
    package's type store (ROS 2 Kilted, event cameras, seg_perception) applies.

    Raises:
        BagError: a bag is missing or unreadable, or a requested topic is in none of them.
    """
    from rosbags.highlevel import AnyReader, AnyReaderError

    bag_paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    for path in bag_paths:
        if not path.exists():
            raise BagError(f"bag {path} does not exist")
    try:
        with AnyReader(bag_paths, default_typestore=default_typestore()) as reader:
            wanted = set(topics) if topics is not None else None
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if wanted is not None:
                absent = wanted - {c.topic for c in connections}
                if absent:
                    raise BagError(
                        f"topic(s) {sorted(absent)} not in {[str(p) for p in bag_paths]}; "
                        f"topics there: {sorted({c.topic for c in reader.connections})}"
                    )
            for connection, log_time, raw in reader.messages(connections=connections):
                yield BagMessage(connection.topic, connection.msgtype, log_time, reader.deserialize(raw, connection.msgtype))
    except AnyReaderError as exc:
        raise BagError(f"cannot read {[str(p) for p in bag_paths]}: {exc}") from exc
