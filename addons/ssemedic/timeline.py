"""The chunk timeline of a recorded stream, packed into bytes for flow metadata.

mitmproxy keeps ``flow.metadata`` in saved flows only when it holds plain types,
so the timeline travels as one ``bytes`` value. Format version 1, little-endian:

    u8  version (1)
    u32 chunk count N
    N x u64  byte offset of each chunk in the raw body (ascending, first is 0)
    N x f64  arrival time of each chunk (seconds since the epoch)
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

VERSION = 1
_HEADER = struct.Struct("<BI")


class TimelineError(ValueError):
    """Packed timeline bytes that cannot be read."""


@dataclass(frozen=True, slots=True)
class Timeline:
    offsets: tuple[int, ...]
    times: tuple[float, ...]

    def chunks(self, body: bytes) -> list[tuple[bytes, float]]:
        """Cut ``body`` back into the chunks as they arrived."""
        if self.offsets and (self.offsets[-1] > len(body) or self.offsets[0] != 0):
            raise TimelineError(
                f"timeline covers {self.offsets[-1]}+ bytes but the body has {len(body)}"
            )
        ends = self.offsets[1:] + (len(body),)
        return [(body[a:b], t) for a, b, t in zip(self.offsets, ends, self.times, strict=True)]


def pack(offsets: Sequence[int], times: Sequence[float]) -> bytes:
    """Pack a timeline; offsets must ascend and match times one to one."""
    if len(offsets) != len(times):
        raise ValueError("offsets and times differ in length")
    if any(b < a for a, b in zip(offsets, offsets[1:])):
        raise ValueError("offsets must ascend")
    packed_offsets = array("Q", offsets)
    packed_times = array("d", times)
    if sys.byteorder != "little":
        packed_offsets.byteswap()
        packed_times.byteswap()
    return _HEADER.pack(VERSION, len(offsets)) + packed_offsets.tobytes() + packed_times.tobytes()


def unpack(data: bytes) -> Timeline:
    """Read packed timeline bytes; raises TimelineError saying what is wrong."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _HEADER.size:
        raise TimelineError("timeline is not packed bytes")
    version, count = _HEADER.unpack_from(data)
    if version != VERSION:
        raise TimelineError(f"timeline format version {version} is not supported (expected {VERSION})")
    if len(data) != _HEADER.size + 16 * count:
        raise TimelineError(f"timeline of {count} chunks should be {_HEADER.size + 16 * count} bytes, not {len(data)}")
    offsets = array("Q")
    offsets.frombytes(data[_HEADER.size : _HEADER.size + 8 * count])
    times = array("d")
    times.frombytes(data[_HEADER.size + 8 * count :])
    if sys.byteorder != "little":
        offsets.byteswap()
        times.byteswap()
    if any(b < a for a, b in zip(offsets, offsets[1:])):
        raise TimelineError("timeline offsets do not ascend")
    return Timeline(tuple(offsets), tuple(times))
