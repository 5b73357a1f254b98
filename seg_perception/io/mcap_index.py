"""Reading some topics of an indexed MCAP file without decompressing the rest.

A multi-sensor recording mixes a camera's small messages with LiDAR sweeps and depth images in
the same chunks. rosbags and the mcap library decompress and walk every chunk whole: replaying the
camera of the simulator's drive decompressed ~3 MB a frame for 0.3 MB of camera messages, the
largest cost of replay on a small CPU. An indexed MCAP file (what rosbag2, rosbags and the mcap
writers write) says where each message sits inside its chunk, so each chunk is decompressed only
up to the end of its last wanted message: reading the sim drive's camera topics takes ~2x less
CPU (`bench/bench_replay.py`, camera_topics_read_cpu_ms_per_frame). This is written here because
neither library reads a chunk partially.

A chunk's CRC covers the whole chunk, so it is checked only where a chunk is read whole. A chunk whose
damage breaks decompression or the index, or fails a checked CRC, is skipped and named in `damaged`:
the chunks after it are read on (one damaged chunk costs its own messages, not the rest of the bag).
"""
from __future__ import annotations

import heapq
import struct
import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import BagError
from .typestore import SCHEMA_ENCODINGS

_MESSAGE_OP = 0x05
_RECORD_HEAD = struct.Struct("<BQ")  # opcode, record length
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time


class IndexedMcap:
    """The raw messages of chosen topics of one MCAP file with a full index, in log-time order.

    Use as a context manager, made by `open`.

    Attributes:
        ros2_types: topic → (message type, schema encoding, definition) when every channel carries
            CDR messages of a ros2msg or ros2idl schema, one channel a topic (what rosbag2 records);
            else None.
    """

    def __init__(self, path: Path, stream: BinaryIO, summary: Any) -> None:
        self.path = path
        self._stream = stream
        self._topics = {cid: channel.topic for cid, channel in summary.channels.items()}
        self._chunks = summary.chunk_indexes
        channels = list(summary.channels.values())
        schemas = [summary.schemas.get(c.schema_id) for c in channels]
        rosbag2 = len({c.topic for c in channels}) == len(channels) and all(
            s is not None and s.encoding in SCHEMA_ENCODINGS and c.message_encoding == "cdr"
            for c, s in zip(channels, schemas))
        self.ros2_types = ({c.topic: (s.name, s.encoding, s.data.decode()) for c, s in zip(channels, schemas)}
                           if rosbag2 else None)
        self.damaged: list[str] = []  # why each skipped chunk was skipped

    @classmethod
    def open(cls, path: Path) -> IndexedMcap | None:
        """The file's index, or None when it has no summary or a chunk has no message index (those
        files are read whole, as rosbags reads them)."""
        from mcap.exceptions import McapError
        from mcap.reader import make_reader

        stream = open(path, "rb")  # noqa: SIM115 - closed by __exit__, or here when unusable
        try:
            summary = make_reader(stream).get_summary()
        except (McapError, EOFError, ValueError, OSError):
            summary = None
        if summary is None or not summary.chunk_indexes or not all(
                c.message_index_offsets for c in summary.chunk_indexes):
            stream.close()
            return None
        return cls(path, stream, summary)

    def __enter__(self) -> IndexedMcap:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()

    def messages(self, topics: Collection[str]) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time ns, CDR bytes) of the messages on `topics`; messages of equal log time
        in file order, as rosbags gives them. A chunk that does not decompress, fails its checksum or
        whose index points at no message is skipped, and the reason added to `damaged`."""
        wanted = {cid for cid, topic in self._topics.items() if topic in topics}
        chunks = [c for c in self._chunks if wanted & c.message_index_offsets.keys()]
        # Each chunk's first entry is a marker at its start time: a chunk is decompressed only when
        # the merge reaches it, so chunks overlapping in time interleave correctly.
        for log_time, _, _, topic, data in heapq.merge(*(self._chunk_messages(c, wanted) for c in chunks)):
            if topic is not None:
                yield topic, log_time, data

    def _chunk_messages(self, chunk: Any, wanted: set[int]) -> Iterator[tuple[int, int, int, str | None, bytes]]:
        yield chunk.message_start_time, chunk.chunk_start_offset, -1, None, b""
        try:
            found = self._read_chunk(chunk, wanted)
        except BagError as exc:
            self.damaged.append(str(exc))
            return
        yield from found

    def _read_chunk(self, chunk: Any, wanted: set[int]) -> list[tuple[int, int, int, str | None, bytes]]:
        """The wanted messages of one chunk, sorted by (log time, file order).

        Raises:
            BagError: the chunk or its index is damaged.
        """
        try:
            stored = self._chunk(chunk)
        except Exception as exc:  # the mcap library's record parsing: struct errors, EOF, bad lengths
            raise BagError(f"{self._where(chunk)} is not a readable chunk record ({exc}); the file is damaged") from exc
        index = sorted((offset, cid) for cid in wanted & chunk.message_index_offsets.keys()
                       for _, offset in self._message_index(chunk.message_index_offsets[cid]))
        records = _Prefix(stored, self._where(chunk))
        found = []
        for offset, cid in index:
            head = offset + _RECORD_HEAD.size
            op, length = _RECORD_HEAD.unpack_from(records.upto(head), offset)
            channel, _, log_time, _ = (_MESSAGE_HEAD.unpack_from(records.upto(head + length), head)
                                       if op == _MESSAGE_OP and length >= _MESSAGE_HEAD.size else (None, 0, 0, 0))
            if channel != cid:
                raise BagError(f"{self._where(chunk)}: its message index puts a message of channel {cid} at byte "
                               f"{offset}, where there is none; the file is damaged")
            found.append((log_time, chunk.chunk_start_offset, offset, self._topics[cid],
                          bytes(records.data[head + _MESSAGE_HEAD.size:head + length])))
        return sorted(found, key=lambda m: m[:3])

    def _message_index(self, offset: int) -> list[tuple[int, int]]:
        from mcap.data_stream import ReadDataStream
        from mcap.records import MessageIndex

        self._stream.seek(offset + _RECORD_HEAD.size)
        return MessageIndex.read(ReadDataStream(self._stream)).records

    def _chunk(self, chunk: Any) -> Any:
        from mcap.data_stream import ReadDataStream
        from mcap.records import Chunk

        self._stream.seek(chunk.chunk_start_offset + _RECORD_HEAD.size)
        return Chunk.read(ReadDataStream(self._stream))

    def _where(self, chunk: Any) -> str:
        return f"{self.path}: the chunk at byte {chunk.chunk_start_offset}"


class _Prefix:
    """A chunk's records, decompressed on demand up to the furthest byte asked for; checked against
    the chunk's CRC (when it has one) once decompressed whole."""

    def __init__(self, chunk: Any, where: str) -> None:
        self._where = where
        self._size, self._crc = chunk.uncompressed_size, chunk.uncompressed_crc
        self._decompress: Callable[[int], bytes] | None = None
        if chunk.compression == "":
            self.data: bytes | bytearray = chunk.data
            self._check()
        else:
            self.data = bytearray()
            self._decompress = _decompressor(chunk.compression, chunk.data, where)

    def upto(self, end: int) -> bytes | bytearray:
        """The records up to at least byte `end`."""
        if end > self._size:
            raise self._damaged(f"holds {self._size} bytes, fewer than the {end} its index names")
        while len(self.data) < end:
            try:
                more = self._decompress(end - len(self.data)) if self._decompress is not None else b""
            except Exception as exc:  # zstandard.ZstdError, lz4's RuntimeError
                raise self._damaged(f"does not decompress ({exc})") from exc
            if not more:
                raise self._damaged(f"ends at byte {len(self.data)}, before byte {end} its index names")
            self.data += more
            self._check()
        return self.data

    def _check(self) -> None:
        if self._crc and len(self.data) == self._size and zlib.crc32(self.data) != self._crc:
            raise self._damaged("fails its checksum")

    def _damaged(self, what: str) -> BagError:
        return BagError(f"{self._where} {what}; the file is damaged")


def _decompressor(compression: str, data: bytes, where: str) -> Callable[[int], bytes]:
    """Streaming decompression of `data`: (at most this many bytes) → the next bytes out, b"" at the end.
    zstandard and lz4 are the codecs the mcap library reads chunks with."""
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(data).read
    if compression == "lz4":
        from lz4.frame import LZ4FrameDecompressor

        decompressor, pending = LZ4FrameDecompressor(), [data]
        return lambda limit: decompressor.decompress(pending.pop() if pending else b"", max_length=limit)
    raise BagError(f"{where} is compressed with {compression!r}; readable: zstd, lz4 or none")
