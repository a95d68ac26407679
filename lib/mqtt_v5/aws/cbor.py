"""The little CBOR (RFC 8949) Fleet Provisioning needs: maps, text and byte strings,
integers, lists, true/false/null; definite lengths out, definite lengths in (AWS
sends no indefinite-length items in these answers). Imported only with
``Provisioner(fmt="cbor")``."""

import struct

from mqtt_v5.errors import UsageError


def _head(out, major, n):
    if n < 24:
        out.append(major << 5 | n)
    elif n < 0x100:
        out.append(major << 5 | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(major << 5 | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append(major << 5 | 26)
        out.extend(struct.pack(">I", n))
    else:
        out.append(major << 5 | 27)
        out.extend(struct.pack(">Q", n))


def _enc(out, v):
    if v is None:
        out.append(0xF6)
    elif v is True:
        out.append(0xF5)
    elif v is False:
        out.append(0xF4)
    elif isinstance(v, int):
        if v >= 0:
            _head(out, 0, v)
        else:
            _head(out, 1, -1 - v)
    elif isinstance(v, str):
        b = v.encode()
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _head(out, 2, len(v))
        out.extend(v)
    elif isinstance(v, (list, tuple)):
        _head(out, 4, len(v))
        for x in v:
            _enc(out, x)
    elif isinstance(v, dict):
        _head(out, 5, len(v))
        for k, x in v.items():
            _enc(out, k)
            _enc(out, x)
    else:
        raise UsageError("CBOR: cannot encode %r" % (type(v),))


def dumps(v):
    out = bytearray()
    _enc(out, v)
    return bytes(out)


def _dec(b, i):
    ib = b[i]
    major = ib >> 5
    ai = ib & 31
    i += 1
    if ai < 24:
        n = ai
    elif ai == 24:
        n = b[i]
        i += 1
    elif ai == 25:
        n = struct.unpack_from(">H", b, i)[0]
        i += 2
    elif ai == 26:
        if major == 7:
            return struct.unpack_from(">f", b, i)[0], i + 4
        n = struct.unpack_from(">I", b, i)[0]
        i += 4
    elif ai == 27:
        if major == 7:
            return struct.unpack_from(">d", b, i)[0], i + 8
        n = struct.unpack_from(">Q", b, i)[0]
        i += 8
    else:
        raise ValueError("CBOR: indefinite or reserved length")
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major == 2 or major == 3:
        if i + n > len(b):
            raise ValueError("CBOR: truncated string")
        s = bytes(b[i:i + n])
        return (s.decode() if major == 3 else s), i + n
    if major == 4:
        out = []
        for _ in range(n):
            x, i = _dec(b, i)
            out.append(x)
        return out, i
    if major == 5:
        d = {}
        for _ in range(n):
            k, i = _dec(b, i)
            x, i = _dec(b, i)
            d[k] = x
        return d, i
    if major == 6:  # a tag: keep the tagged value
        return _dec(b, i)
    if ai == 20:
        return False, i
    if ai == 21:
        return True, i
    if ai == 22 or ai == 23:
        return None, i
    raise ValueError("CBOR: unsupported simple value %d" % ai)


def loads(b):
    """Decode one CBOR item (raises ValueError when malformed or truncated)."""
    try:
        v, i = _dec(b, 0)
    except IndexError:
        raise ValueError("CBOR: truncated")
    if i != len(b):
        raise ValueError("CBOR: trailing bytes")
    return v
