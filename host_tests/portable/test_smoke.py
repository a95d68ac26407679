"""Smoke test of the portable test set-up: runs under pytest and under real MicroPython
(node tools/mp_run.mjs). Keep it free of pytest features."""

import struct

from _check import raises

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_ANSWER = const(42)


def test_struct_pack_into_preallocated_buffer():
    buf = bytearray(8)
    struct.pack_into("!BH", buf, 1, 0x30, _ANSWER)
    assert bytes(buf[:4]) == b"\x00\x30\x00\x2a"
    assert struct.unpack_from("!H", buf, 2) == (_ANSWER,)


def test_raises_helper():
    e = raises(ValueError, int, "not a number")
    assert isinstance(e, ValueError)
    assert isinstance(raises(AssertionError, raises, ValueError, int, "7"), AssertionError)
