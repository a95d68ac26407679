"""Helpers shared by the portable codec tests (CPython under pytest AND MicroPython).

Plain functions only: no pytest, no hypothesis. ``mp_run.mjs`` copies this file next to
each test file it runs, so ``from _codec_util import ...`` works on both runtimes.
"""

import sys

from _check import raises

from mqtt_v5 import _server_codec as codec
from mqtt_v5.errors import ProtocolError, UsageError

IS_MICROPYTHON = sys.implementation.name == "micropython"

# MicroPython dicts do not keep insertion order, so the order in which our encoder writes
# the properties of a dict holding several of them is only defined on CPython.
DICT_ORDERED = not IS_MICROPYTHON


def fail(msg):
    raise AssertionError(msg)


def eq(got, want, what=""):
    if got != want:
        fail("%s\n   got %r\n  want %r" % (what, got, want))


def protocol_error(reason_code, fn, *args):
    """fn(*args) must raise ProtocolError carrying ``reason_code``; returns it."""
    e = raises(ProtocolError, fn, *args)
    if e.reason_code != reason_code:
        fail("expected reason code 0x%02X, got 0x%02X: %s" % (reason_code, e.reason_code, e))
    return e


def usage_error(fn, *args):
    return raises(UsageError, fn, *args)


def frames(reader, out):
    """Frame and decode every complete packet buffered in ``reader`` into ``out``."""
    while True:
        first = reader.next()
        if first < 0:
            return out
        r = reader.reader.reset(reader.buf, reader.body_start, reader.body_end)
        out.append(codec.decode_body(first, r))


def decode_stream(chunks, max_packet_size=4096):
    """Feed ``chunks`` one after another into a fresh PacketReader, framing after each;
    returns every packet decoded, and the reader."""
    rd = codec.PacketReader(max_packet_size)
    out = []
    for chunk in chunks:
        pos = 0
        while pos < len(chunk):
            n = rd.feed(chunk[pos:])
            pos += n
            frames(rd, out)
            if n == 0 and pos < len(chunk):
                fail("reader full and no packet framed")
    return out, rd


def bytewise(data):
    return [data[i:i + 1] for i in range(len(data))]
