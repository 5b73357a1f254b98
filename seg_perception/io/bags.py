"""Bag reading and writing through rosbags: rosbag2 (MCAP, SQLite3) and ROS 1 bags, no ROS needed."""
from __future__ import annotations

import logging
import struct
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BagError
from .mcap_index import IndexedMcap
from .mcap_salvage import TruncatedMcap, mcap_file
from .typestore import bag_typestore, default_typestore

log = logging.getLogger(__name__)

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
        path = mcap_file(self.path)
        if path is not None:
            fill_chunk_crcs(path)

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


def fill_chunk_crcs(path: Path) -> None:
    """Write each chunk's CRC into a finished MCAP file whose chunks carry none (0: "not computed").

    rosbags' MCAP writer computes no chunk CRC, so flipped bytes that still decompress would reach
    the pipeline unnoticed; every bag the package writes gets them here, and readers (rosbags, the
    mcap library, `IndexedMcap`) check them.
    """
    import zlib

    from mcap.data_stream import ReadDataStream
    from mcap.reader import make_reader
    from mcap.records import Chunk

    with open(path, "r+b") as stream:
        summary = make_reader(stream).get_summary()
        for index in summary.chunk_indexes if summary is not None else ():
            stream.seek(index.chunk_start_offset + _RECORD_HEAD)
            chunk = Chunk.read(ReadDataStream(stream))
            if chunk.uncompressed_crc:
                continue
            data = chunk.data
            if chunk.compression == "zstd":
                import zstandard

                data = zstandard.ZstdDecompressor().decompress(data, max_output_size=chunk.uncompressed_size)
            elif chunk.compression:
                continue  # only what this package writes: zstd or none
            stream.seek(index.chunk_start_offset + _RECORD_HEAD + _CRC_AT)
            stream.write(struct.pack("<I", zlib.crc32(data)))


_RECORD_HEAD = 9  # an MCAP record's opcode (1 byte) and length (8)
_CRC_AT = 24  # a Chunk record's uncompressed_crc follows its start time, end time and uncompressed size (u64 each)


class BagReader:
    """One or more bags (rosbag2 folders or files, ROS 1 .bag files), opened once: their `topics`
    (topic → message type) and, as often as needed, their messages in log-time order.

    Message types the bags define themselves (MCAP, ROS 1) are used as stored; otherwise the
    package's type store (ROS 2 Kilted, event cameras, seg_perception) applies. A single indexed
    MCAP file is read through its message index (`IndexedMcap`: only what the chosen topics need
    is decompressed), and one as rosbag2 records it (CDR, ros2msg schemas) is opened from its
    summary alone; other bags, and MCAP files without that index, are read by rosbags.

    Raises:
        BagError: on entering, a bag is missing or unreadable.
    """

    def __init__(self, paths: Path | str | Iterable[Path | str]) -> None:
        self.paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        self.topics: dict[str, str] = {}
        self._reader: Any = None
        self._salvage: TruncatedMcap | None = None
        self._indexed: IndexedMcap | None = None
        self._undecodable: list[str] = []

    @property
    def damaged(self) -> list[str]:
        """What was skipped while reading, and why: damaged chunks, messages that do not deserialise."""
        return (self._indexed.damaged if self._indexed is not None else []) + self._undecodable

    def __enter__(self) -> BagReader:
        from rosbags.highlevel import AnyReaderError

        for path in self.paths:
            if not path.exists():
                raise BagError(f"bag {path} does not exist")
        path = mcap_file(self.paths[0]) if len(self.paths) == 1 else None
        self._indexed = IndexedMcap.open(path) if path is not None else None
        if self._indexed is not None and self._indexed.ros2_types is not None:
            # Its summary says all (topics, types and where each message is): rosbags' opening, which
            # also parses metadata.yaml and every type, took ~20x longer (~60 ms on the sim drive).
            self.topics = {topic: name for topic, (name, *_) in self._indexed.ros2_types.items()}
            return self
        error: Exception | None = None
        try:  # other bags, and MCAP files of other encodings (still read through their index, if any)
            self._reader = _any_reader(self.paths)
        except (AnyReaderError, OSError) as exc:  # OSError: a rosbag2 folder without its metadata.yaml
            error = exc
            if self._indexed is not None and self._indexed.path not in self.paths:
                # A whole, indexed MCAP file in a folder whose metadata.yaml rosbags refuses (an empty
                # storage identifier, as some recorders and converters write): the file says all.
                try:
                    self._reader = _any_reader([self._indexed.path])
                except (AnyReaderError, OSError):
                    pass
        if self._reader is None:
            if self._indexed is not None:
                self._indexed.__exit__(None, None, None)
                self._indexed = None
            self._salvage = self._truncated_mcap()
            if self._salvage is None:
                raise self._error(error) from error
            log.warning("%s cannot be opened normally (%s); reading the complete records of %s front to back",
                        self.paths[0], error, self._salvage.path.name)
            self.topics = dict(self._salvage.topics)
            return self
        self.topics = {c.topic: c.msgtype for c in self._reader.connections}
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._indexed is not None:
            self._indexed.__exit__(*exc_info)
        if self._reader is not None:
            self._reader.close()

    def _truncated_mcap(self) -> TruncatedMcap | None:
        """A single MCAP bag that lost its end (a recording cut short), read record by record."""
        path = mcap_file(self.paths[0]) if len(self.paths) == 1 else None
        if path is None:
            return None
        salvage = TruncatedMcap(path, default_typestore())
        return salvage if salvage.topics else None

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """The messages on `topics` (default: all).

        Raises:
            BagError: a requested topic is in none of the bags, or a bag turns out unreadable.
        """
        wanted = set(topics) if topics is not None else None
        if wanted is not None and wanted - set(self.topics):
            raise BagError(f"topic(s) {sorted(wanted - set(self.topics))} not in {[str(p) for p in self.paths]}; "
                           f"topics there: {sorted(self.topics)}")
        if self._salvage is not None:
            for topic, typename, log_time, msg in self._salvage.messages(wanted):
                yield BagMessage(topic, typename, log_time, msg)
            return
        if self._indexed is not None:
            yield from self._indexed_messages(self.topics if wanted is None else wanted)
            return
        reader = self._reader
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        try:
            for connection, log_time, raw in reader.messages(connections=connections):
                try:
                    msg = reader.deserialize(raw, connection.msgtype)
                except Exception as exc:  # rosbags' serde raises many types on damaged bytes: skipped, named
                    self._undecodable.append(f"{self.paths[0]}: the {connection.msgtype} message on "
                                             f"{connection.topic} at {log_time} ns does not deserialise: {exc}")
                    continue
                yield BagMessage(connection.topic, connection.msgtype, log_time, msg)
        except Exception as exc:  # damaged storage: rosbags' AnyReaderError, but also zstd, sqlite3, struct errors
            raise self._error(exc) from exc

    def _indexed_messages(self, topics: Collection[str]) -> Iterator[BagMessage]:
        from rosbags.highlevel import AnyReaderError
        from rosbags.serde import SerdeError
        from rosbags.typesys import TypesysError

        if self._reader is not None:  # rosbags opened it and holds its types
            deserialize = self._reader.deserialize
        else:
            types = self._indexed.ros2_types
            try:
                deserialize = bag_typestore(tuple(sorted({types[t] for t in topics}))).deserialize_cdr
            except TypesysError as exc:
                raise BagError(f"{self._indexed.path}: a message definition of {sorted(topics)} does not parse: "
                               f"{exc}") from exc
        for topic, log_time, raw in self._indexed.messages(topics):
            typename = self.topics[topic]
            try:
                msg = deserialize(raw, typename)
            except (SerdeError, AnyReaderError, ValueError, IndexError, struct.error) as exc:  # skipped, named
                self._undecodable.append(f"{self._indexed.path}: the {typename} message on {topic} at {log_time} ns "
                                         f"does not deserialise: {exc}")
                continue
            yield BagMessage(topic, typename, log_time, msg)

    def _error(self, exc: Exception) -> BagError:
        return BagError(f"cannot read {[str(p) for p in self.paths]}: {exc}")


def _any_reader(paths: list[Path]) -> Any:
    """rosbags' AnyReader over `paths`, opened; the package's type store for bags without their own types."""
    from rosbags.highlevel import AnyReader

    reader = AnyReader(paths, default_typestore=default_typestore())
    reader.open()
    return reader


def read_messages(paths: Path | str | Iterable[Path | str], topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Yield the messages of one or more bags in log-time order (see `BagReader`).

    Raises:
        BagError: a bag is missing or unreadable, or a requested topic is in none of them.
    """
    with BagReader(paths) as bag:
        yield from bag.messages(topics)
