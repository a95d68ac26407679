"""Hostile bytes after a valid CONNECT never hurt the twin: no internal error is logged
and the next client is served. Random bytes, and well-framed packets of every type with
random bodies (which reach the decoders and the broker's packet handlers).

``make fuzz`` runs this with the long hypothesis profile."""

from __future__ import annotations

import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqtt_v5 import _server_codec as codec
from mqtt_v5.properties import vbi_size, write_vbi
from twin._server_util import HOST, running_twin


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def tw(tmp_path_factory):
    errors = _Errors()
    logging.getLogger("iot_twin").addHandler(errors)
    with running_twin(tmp_path_factory.mktemp("fuzz"), listeners=("plain",)) as t:
        t.errors = errors
        yield t
    logging.getLogger("iot_twin").removeHandler(errors)


def _framed(first: int, body: bytes) -> bytes:
    head = bytearray(1 + vbi_size(len(body)))
    head[0] = first
    write_vbi(head, 1, len(body))
    return bytes(head) + body


packets = st.builds(_framed, st.integers(0x10, 0xFF), st.binary(max_size=64))
subscribes = st.builds(
    lambda body: _framed(0x82, b"\x00\x01\x00" + body),
    st.binary(max_size=48),
)
publishes = st.builds(
    lambda flags, body: _framed(0x30 | flags, b"\x00\x03a/b" + body),
    st.integers(0, 15),
    st.binary(max_size=48),
)
streams = st.lists(
    st.one_of(st.binary(max_size=64), packets, subscribes, publishes), min_size=1, max_size=6
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(chunks=streams)
def test_random_input_after_connect(tw, chunks):
    s = socket.create_connection((HOST, tw.port("plain")))
    try:
        s.sendall(codec.encode_bytes(codec.Connect("fuzz", keep_alive=60)))
        for chunk in chunks:
            s.sendall(chunk)
    except OSError:
        pass  # the twin may already have closed on us
    finally:
        s.close()
    assert not tw.errors.records, [r.getMessage() for r in tw.errors.records]


def test_still_serving_after_the_fuzzing(tw):
    raw = tw.raw()
    assert raw.connect("after").reason_code == 0
    raw.send(codec.PINGREQ_BYTES)
    assert raw.recv_type(codec.PINGRESP) is not None
    raw.close()
    assert not tw.errors.records
