"""The codec's cold half, loaded on first use (``_server_codec`` re-exports it): the
Will of a CONNECT, UNSUBSCRIBE, AUTH, and decoding the DISCONNECT or AUTH a server
sends. Sans-IO like the codec."""

from . import properties as _p
from .codec import (
    AUTH,
    DISCONNECT,
    PACKET_NAMES,
    UNSUBSCRIBE,
    _check_id,
    _check_str,
    _encode_reason_only,
    _expect_end,
    _header,
    _packet,
    _props,
    reason_allowed,
)
from .errors import ProtocolError, UsageError
from .properties import vbi_size, write_bin, write_u16
from .topic import filter_ok


class Will:
    """The Will Message carried in CONNECT."""

    def __init__(self, topic, payload=b"", qos=0, retain=False, properties=None):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties or {}


def encode_unsubscribe(buf, packet_id, filters, props=None):
    """UNSUBSCRIBE (3.10)."""
    _check_id(packet_id)
    if not filters:
        raise UsageError("UNSUBSCRIBE needs at least one filter [MQTT-3.10.3-2]")
    psize = _p.size(props, 1 << UNSUBSCRIBE)
    rem = 2 + vbi_size(psize) + psize
    encoded = []
    for filt in filters:
        f = _check_str(filt, "topic filter")
        if not filter_ok(f, 0, len(f)):
            raise UsageError("invalid topic filter %r" % (filt,), 0x8F)
        encoded.append(f)
        rem += 2 + len(f)
    pos = _header(buf, 0xA2, rem)
    pos = write_u16(buf, pos, packet_id)
    pos = _p.write(buf, pos, props, psize)
    for f in encoded:
        pos = write_bin(buf, pos, f)
    return pos


def encode_auth(buf, reason_code=0, props=None):
    """AUTH (3.15). Returns the length."""
    return _encode_reason_only(buf, AUTH, reason_code, props)


# ------------------------------------------------------------ framing -----


def decode_reason_only(r, t):
    if r.pos == r.end:
        # [MQTT-3.14.2.1] [MQTT-3.15.2.1] no reason code means 0x00
        return _packet(t, 0, {})
    rc = r.u8()
    if not reason_allowed(t, rc):
        raise ProtocolError("reason code 0x%02X not allowed in %s" % (rc, PACKET_NAMES[t]), 0x82)
    if t == DISCONNECT:
        # "If the Remaining Length is less than 2, a value of 0 is used" (3.14.2.2.1)
        props = _props(r, 1 << t) if r.pos < r.end else {}
        _expect_end(r)
        return _packet(t, rc, props)
    # AUTH has no such rule: Reason Code and Property Length go together (3.15.2.1)
    props = _props(r, 1 << t)
    _expect_end(r)
    if _p.PROP_AUTHENTICATION_METHOD not in props:
        raise ProtocolError("AUTH without an Authentication Method (3.15.2.2.2)", 0x82)
    return _packet(t, rc, props)
