"""Just enough CBOR (RFC 8949) for the Fleet Provisioning ``.../cbor`` topics (§5.1).

The payloads are maps of text strings, integers, booleans and nested maps, so this
encodes None/bool/int/float/str/bytes/list/dict and decodes the same plus tags (ignored),
half/single floats and indefinite-length items. Decoding is strict: malformed input and
trailing bytes raise :class:`CborError`.
"""

from __future__ import annotations

import struct
from typing import Any


class CborError(ValueError):
    """Malformed or unsupported CBOR."""


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)
    raise CborError("integer too large for CBOR")


def dumps(value: Any) -> bytes:
    """Encode ``value`` as CBOR (definite lengths, preferred integer sizes)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif isinstance(value, int):
        out += _head(0, value) if value >= 0 else _head(1, -1 - value)
    elif isinstance(value, float):
        out += b"\xfb" + struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += _head(3, len(raw)) + raw
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out += _head(2, len(raw)) + raw
    elif isinstance(value, (list, tuple)):
        out += _head(4, len(value))
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        out += _head(5, len(value))
        for k, v in value.items():
            _encode(k, out)
            _encode(v, out)
    else:
        raise CborError(f"cannot encode {type(value).__name__}")


_BREAK = object()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CborError("truncated CBOR")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def argument(self, ai: int) -> int | None:
        """The head's argument; None for an indefinite length (ai 31)."""
        if ai < 24:
            return ai
        if ai == 31:
            return None
        sizes = {24: ">B", 25: ">H", 26: ">I", 27: ">Q"}
        if ai not in sizes:
            raise CborError(f"reserved additional information {ai}")
        fmt = sizes[ai]
        return int(struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0])

    def item(self, depth: int = 0) -> Any:
        if depth > 64:
            raise CborError("CBOR nested too deeply")
        initial = self.take(1)[0]
        major, ai = initial >> 5, initial & 0x1F
        if major == 7:
            return self.simple(ai)
        n = self.argument(ai)
        if major in (0, 1, 6) and n is None:
            raise CborError("indefinite length on an integer or tag")
        if major == 0:
            return n
        if major == 1:
            return -1 - n  # type: ignore[operator]
        if major in (2, 3):
            raw = self.string(major, n, depth)
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CborError("text string is not UTF-8") from None
        if major == 4:
            items = []
            while n is None or len(items) < n:
                value = self.item(depth + 1)
                if value is _BREAK:
                    if n is None:
                        break
                    raise CborError("unexpected break")
                items.append(value)
            return items
        if major == 5:
            result: dict[Any, Any] = {}
            count = 0
            while n is None or count < n:
                key = self.item(depth + 1)
                if key is _BREAK:
                    if n is None:
                        break
                    raise CborError("unexpected break")
                value = self.item(depth + 1)
                if value is _BREAK:
                    raise CborError("map key without a value")
                try:
                    result[key] = value
                except TypeError:
                    raise CborError("unhashable map key") from None
                count += 1
            return result
        return self.item(depth + 1)  # major 6: a tag; the twin ignores tags

    def string(self, major: int, n: int | None, depth: int) -> bytes:
        if n is not None:
            return self.take(n)
        chunks = []
        while True:
            initial = self.take(1)[0]
            if initial == 0xFF:
                return b"".join(chunks)
            if initial >> 5 != major or initial & 0x1F == 31:
                raise CborError("bad chunk in an indefinite-length string")
            size = self.argument(initial & 0x1F)
            chunks.append(self.take(size or 0))

    def simple(self, ai: int) -> Any:
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai in (22, 23):
            return None  # null, undefined
        if ai == 25:
            return struct.unpack(">e", self.take(2))[0]
        if ai == 26:
            return struct.unpack(">f", self.take(4))[0]
        if ai == 27:
            return struct.unpack(">d", self.take(8))[0]
        if ai == 31:
            return _BREAK
        raise CborError(f"unsupported simple value {ai}")


def loads(data: bytes) -> Any:
    """Decode exactly one CBOR item from ``data``."""
    reader = _Reader(bytes(data))
    value = reader.item()
    if value is _BREAK:
        raise CborError("unexpected break")
    if reader.pos != len(reader.data):
        raise CborError("trailing bytes after the CBOR item")
    return value
