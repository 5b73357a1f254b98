"""The two encodings of the ROS 2 libcaer driver (iniVation DAVIS / DVXplorer): "libcaer" and "libcaer_cmp".

Both are self-contained per message, and `time_base` already is ROS time (libcaer_driver: the ROS
time of its last time-stamp reset plus the sensor time elapsed since), so `t = time_base + sensor
offset`; the header stamp is not used. The driver publishes polarity (CD) events only: libcaer's
special events (its external-input trigger edges) are not put into either encoding, so these
packets carry no triggers.

"libcaer": libcaer's polarity events copied as they are, 8 bytes each: a uint32 `data` word
(bit 0 valid mark, bit 1 polarity, bits 16..2 y, bits 31..17 x) and an int32 timestamp (µs,
31 bits). t = time_base + (timestamp + 2**31 × wraps) × 1000, a wrap being a timestamp smaller than
the one before it in the message. Events whose valid mark is clear were invalidated by libcaer's
filters and are dropped, as libcaer's own iterators skip them.

"libcaer_cmp": 16-bit words, the code in bits 15..12 and a 12-bit payload:
  0 TIME_HIGH  bits 23..12 of the time offset (µs)   1 TIME_LOW  bits 11..0
  2 ADDR_X     x (11 bits): the current column
  3 ADDR_Y     y (11 bits), polarity (bit 11): one event at (current x, y)
  4 VECT_BASE_Y  base y (11 bits), polarity (bit 11)
  5 VECT_8     bit i set: an event at (current x, base y + i); base y then moves on by 8
Time starts at 0 in each message; t = time_base + ((high << 12) | low) × 1000.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .errors import ConversionError
from .event_layout import EVENT_DTYPE, check_range, empty_events, packed_rows

CMP_TIME_HIGH, CMP_TIME_LOW, CMP_ADDR_X, CMP_ADDR_Y, CMP_VECT_BASE_Y, CMP_VECT_8 = range(6)
_CMP_NAMES = "TIME_HIGH, TIME_LOW, ADDR_X, ADDR_Y, VECT_BASE_Y, VECT_8"
_POPCOUNT8 = np.array([bin(m).count("1") for m in range(256)], np.int64)
_HIGHEST8 = np.array([m.bit_length() - 1 for m in range(256)], np.int64)
_LIBCAER_WRAP_US = 1 << 31
_CMP_MAX_US = (1 << 24) - 1  # 24 bits of time offset
_INT64_MAX = 2**63 - 1


def libcaer_to_events(raw: np.ndarray, width: int, height: int, time_base: int, big_endian: bool) -> np.ndarray:
    """A "libcaer" payload → EVENT_DTYPE events (see the module docstring).

    Raises:
        ConversionError: not whole 8-byte events, a negative timestamp, an event outside the
            sensor, or times beyond the int64 nanosecond range.
    """
    if raw.size % 8:
        raise ConversionError(
            f"libcaer event payload has {raw.size} bytes, not a multiple of 8; accepted: whole 8-byte polarity events")
    order = ">" if big_endian else "<"
    records = raw.view(np.dtype([("data", f"{order}u4"), ("ts", f"{order}i4")]))
    if records.size == 0:
        return empty_events()
    us = records["ts"].astype(np.int64)
    if us.min() < 0:
        raise ConversionError(f"libcaer event timestamp {int(us.min())} is negative; accepted: 0..2**31-1 µs")
    wraps = np.zeros(us.size, np.int64)
    np.cumsum(us[1:] < us[:-1], out=wraps[1:])
    data = records["data"]
    valid = (data & 1).astype(bool)
    data, us, wraps = data[valid], us[valid], wraps[valid]
    if data.size == 0:
        return empty_events()
    x, y = (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF
    check_range(int(x.max()), int(y.max()), width, height, "libcaer event packet")
    time_base = int(time_base)
    _check_time(time_base, int(us[-1]) + int(wraps[-1]) * _LIBCAER_WRAP_US, "libcaer")
    out = np.empty(data.size, EVENT_DTYPE)
    out["x"], out["y"], out["p"] = x, y, (data >> 1) & 1
    out["t"] = (us + wraps * _LIBCAER_WRAP_US) * 1000 + time_base
    return out


def libcaer_cmp_to_events(raw: np.ndarray, width: int, height: int, time_base: int, big_endian: bool) -> np.ndarray:
    """A "libcaer_cmp" payload → EVENT_DTYPE events (see the module docstring).

    Raises:
        ConversionError: odd byte count, a code other than 0..5, an event word before the ADDR_X
            or VECT_BASE_Y it needs, an event outside the sensor, or times beyond int64 ns.
    """
    if raw.size % 2:
        raise ConversionError(
            f"libcaer_cmp payload has an odd byte count ({raw.size}); accepted: whole 16-bit words")
    words = raw.view(">u2" if big_endian else "<u2").astype(np.uint16, copy=False)
    if words.size == 0:
        return empty_events()
    time_base = int(time_base)
    _check_time(time_base, _CMP_MAX_US, "libcaer_cmp")
    count_kernel, decode_kernel = _compiled_cmp()
    bound, bad = count_kernel(words, _POPCOUNT8)
    if bad >= 0:
        raise ConversionError(
            f"libcaer_cmp word {bad} has code {int(words[bad]) >> 12}; accepted: 0..5 ({_CMP_NAMES})")
    rows = np.empty((bound + 8, 2), np.int64)  # by numpy, which asks for huge pages (see evt3.py)
    report = np.zeros(5, np.int64)  # missing x, missing base, count, max x, max y
    decode_kernel(words, time_base, report, _HIGHEST8, rows)
    missing_x, missing_base, count, max_x, max_y = (int(v) for v in report)
    if missing_x >= 0 or missing_base >= 0:
        word, needs = (missing_x, "ADDR_X") if missing_x >= 0 else (missing_base, "VECT_BASE_Y")
        raise ConversionError(f"libcaer_cmp event word {word} comes before any {needs}; accepted: a self-contained "
                              "packet, as libcaer_driver writes")
    if count == 0:
        return empty_events()
    check_range(max_x, max_y, width, height, "libcaer_cmp event packet")
    return packed_rows(rows[:count], EVENT_DTYPE)


def _check_time(time_base: int, last_us: int, what: str) -> None:
    if time_base + last_us * 1000 > _INT64_MAX:
        raise ConversionError(
            f"{what} time_base {time_base} ns plus the packet's up to {last_us} µs is beyond int64 nanoseconds; "
            f"accepted: times up to {_INT64_MAX} ns")


@functools.cache
def _compiled_cmp() -> tuple[Any, Any]:
    """`_count_cmp` and `_decode_cmp` compiled with numba, on first use."""
    from numba import njit

    return njit(cache=True, boundscheck=False)(_count_cmp), njit(cache=True, boundscheck=False)(_decode_cmp)


def _count_cmp(words, popcount):
    """(events, first word with a code other than 0..5 or -1) of libcaer_cmp words."""
    bound = 0
    for i in range(words.size):
        code = words[i] >> 12
        if code == CMP_ADDR_Y:
            bound += 1
        elif code == CMP_VECT_8:
            bound += popcount[words[i] & 0xFF]
        elif code > CMP_VECT_8:
            return bound, i
    return bound, -1


def _decode_cmp(words, time_base, report, highest, rows):
    """libcaer_cmp words → (N, 2) int64 `rows` of EVENT_DTYPE, t = time_base + offset µs × 1000.
    report = [first event word without x, first VECT_8 without a base (-1: none), count, max x,
    max y]. A VECT_8 writes its 8 candidates unconditionally and advances by each mask bit (no
    branch per pixel), hence 8 spare rows in `rows`."""
    report[0], report[1] = -1, -1
    high, low, x, base, pol = 0, 0, -1, -1, 0
    count, max_x, max_y, t = 0, 0, 0, time_base
    for i in range(words.size):
        word = np.int64(words[i])
        code, payload = word >> 12, word & 0xFFF
        if code == CMP_VECT_8:
            mask = payload & 0xFF
            if x < 0 or base < 0:
                report[0 if x < 0 else 1] = i
                return
            column = x | (pol << 32)
            for bit in range(8):
                rows[count, 0] = column | ((base + bit) << 16)
                rows[count, 1] = t
                count += (mask >> bit) & 1
            if mask:
                max_y = max(max_y, base + highest[mask])
                max_x = max(max_x, x)
            base += 8
        elif code == CMP_ADDR_Y:
            if x < 0:
                report[0] = i
                return
            y = payload & 0x7FF
            rows[count, 0] = x | (y << 16) | ((payload >> 11) << 32)
            rows[count, 1] = t
            count += 1
            max_x, max_y = max(max_x, x), max(max_y, y)
        elif code == CMP_ADDR_X:
            x = payload & 0x7FF
        elif code == CMP_TIME_LOW:
            low = payload
            t = time_base + ((high << 12) | low) * 1000
        elif code == CMP_TIME_HIGH:
            high = payload
            t = time_base + ((high << 12) | low) * 1000
        elif code == CMP_VECT_BASE_Y:
            base, pol = payload & 0x7FF, payload >> 11
    report[2], report[3], report[4] = count, max_x, max_y
