"""mqtt_v5.reasons: names of reason codes and property identifiers (optional module).

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _codec_util import eq

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5 import reasons


def test_reason_names():
    eq(reasons.name(0x00), "Success")
    eq(reasons.name(0x00, codec.DISCONNECT), "Normal disconnection")
    eq(reasons.name(0x00, codec.SUBACK), "Granted QoS 0")
    eq(reasons.name(0x01), "Granted QoS 1")
    eq(reasons.name(0x87), "Not authorized")
    eq(reasons.name(0x95), "Packet too large")
    eq(reasons.name(0xA2), "Wildcard Subscriptions not supported")


def test_unknown_reason_codes_pass_through_as_hex():
    eq(reasons.name(0x03), "0x03")
    eq(reasons.name(0xFF), "0xFF")
    eq(reasons.name(0xA3), "0xA3")
    eq(reasons.name(0x8AB), "0x8AB")  # not "anned": the table is searched by two digits
    eq(reasons.prop_name(0x1A1), "0x1A1")


def test_every_code_a_packet_may_carry_has_a_name():
    for t in (codec.CONNACK, codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP,
              codec.SUBACK, codec.UNSUBACK, codec.DISCONNECT, codec.AUTH):
        for rc in range(256):
            if codec.reason_allowed(t, rc):
                n = reasons.name(rc, t)
                if n.startswith("0x"):
                    raise AssertionError("no name for 0x%02X in %s" % (rc, codec.PACKET_NAMES[t]))


def test_property_names():
    eq(reasons.prop_name(P.PROP_USER_PROPERTY), "User Property")
    eq(reasons.prop_name(P.PROP_TOPIC_ALIAS), "Topic Alias")
    eq(reasons.prop_name(0x04), "0x04")
    named = [pid for pid in range(0x30) if not reasons.prop_name(pid).startswith("0x")]
    eq(len(named), 27)
    for pid in named:
        eq(P.prop_type(pid) != 0, True)
