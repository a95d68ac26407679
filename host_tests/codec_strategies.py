"""Hypothesis strategies for MQTT 5 packets (pytest-only; shared by the codec property tests
and the peer cross-checks). Every strategy produces packets the spec allows, so our encoder
refusing one is a bug (of the encoder or of the strategy).
"""

from hypothesis import strategies as st

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5._server_codec import (
    Ack,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Ping,
    Publish,
    SubAck,
    Subscribe,
    Unsubscribe,
    Will,
)

WILL = 0

# Characters MQTT strings may hold: no U+0000 [MQTT-1.5.4-2], no surrogates [MQTT-1.5.4-1].
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
text = st.text(_chars, max_size=12)
_level_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/+#")
level = st.text(_level_chars, max_size=6)

topic_names = st.lists(level, min_size=1, max_size=4).map("/".join).filter(
    lambda t: 0 < len(t.encode()))


@st.composite
def topic_filters(draw, shared=None):
    levels = draw(st.lists(st.one_of(level, st.just("+")), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    if levels[0] == "$share":
        levels[0] = "$shared"  # "$share/..." is only a shared subscription when meant
    f = "/".join(levels) or "#"  # [MQTT-4.7.3-1] at least one character
    if shared is None:
        shared = draw(st.booleans())
    if shared:
        group = draw(st.text(_level_chars, min_size=1, max_size=5))
        f = f"$share/{group}/{f}"
    return f


binary = st.binary(max_size=16)
u8bool = st.integers(0, 1)
u16 = st.integers(0, 0xFFFF)
u16nz = st.integers(1, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u32nz = st.integers(1, 0xFFFFFFFF)
vbi = st.one_of(st.integers(1, 127), st.integers(128, 16383), st.integers(1, 268435455))
user_props = st.lists(st.tuples(text, text), min_size=1, max_size=3)

VALUES = {
    0x01: u8bool, 0x02: u32, 0x03: text, 0x08: topic_names, 0x09: binary,
    0x11: u32, 0x12: text, 0x13: u16, 0x15: text, 0x16: binary, 0x17: u8bool, 0x18: u32,
    0x19: u8bool, 0x1A: text, 0x1C: text, 0x1F: text, 0x21: u16nz, 0x22: u16, 0x23: u16nz,
    0x24: u8bool, 0x25: u8bool, 0x26: user_props, 0x27: u32nz, 0x28: u8bool, 0x29: u8bool,
    0x2A: u8bool,
}
ALL_PIDS = (*VALUES, 0x0B)


@st.composite
def properties(draw, kind, exclude=()):
    """A property dict for packet ``kind`` (a packet type or WILL), as decoding gives it
    back (Subscription Identifier and User Property as lists)."""
    where = P.W_WILL if kind == WILL else 1 << kind
    allowed = [p for p in ALL_PIDS if P.allowed_in(p, where) and p not in exclude]
    chosen = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=len(allowed))
                  ) if allowed else []
    props = {}
    for pid in chosen:
        if pid == 0x0B:
            n = 1 if kind == codec.SUBSCRIBE else draw(st.integers(1, 3))
            props[pid] = draw(st.lists(vbi, min_size=n, max_size=n))
        else:
            props[pid] = draw(VALUES[pid])
    return props


def _reasons(ptype):
    return [rc for rc in range(256) if codec.reason_allowed(ptype, rc)]


@st.composite
def connects(draw):
    will = None
    if draw(st.booleans()):
        will = Will(draw(topic_names), draw(binary), draw(st.integers(0, 2)),
                    draw(st.booleans()), draw(properties(WILL)))
    return Connect(draw(text), draw(st.booleans()), draw(u16),
                   draw(st.none() | text), draw(st.none() | binary), will,
                   draw(properties(codec.CONNECT)))


@st.composite
def connacks(draw):
    rc = draw(st.sampled_from(_reasons(codec.CONNACK)))
    return Connack(rc, draw(st.booleans()) if rc == 0 else False,
                   draw(properties(codec.CONNACK)))


@st.composite
def publishes(draw):
    qos = draw(st.integers(0, 2))
    props = draw(properties(codec.PUBLISH))
    topic = draw(topic_names)
    if P.PROP_TOPIC_ALIAS in props and draw(st.booleans()):
        topic = ""
    return Publish(topic, draw(st.binary(max_size=40)), qos, draw(st.booleans()),
                   draw(st.booleans()) if qos else False,
                   draw(u16nz) if qos else 0, props)


@st.composite
def acks(draw):
    t = draw(st.sampled_from((codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP)))
    return Ack(t, draw(u16nz), draw(st.sampled_from(_reasons(t))), draw(properties(t)))


@st.composite
def subscribes(draw):
    subs = []
    for _ in range(draw(st.integers(1, 4))):
        f = draw(topic_filters())
        nl = draw(st.booleans()) and not f.startswith("$share/")
        subs.append((f, codec.sub_options(draw(st.integers(0, 2)), nl, draw(st.booleans()),
                                          draw(st.integers(0, 2)))))
    return Subscribe(draw(u16nz), subs, draw(properties(codec.SUBSCRIBE)))


@st.composite
def subacks(draw):
    t = draw(st.sampled_from((codec.SUBACK, codec.UNSUBACK)))
    codes = draw(st.lists(st.sampled_from(_reasons(t)), min_size=1, max_size=5))
    return SubAck(t, draw(u16nz), codes, draw(properties(t)))


@st.composite
def unsubscribes(draw):
    return Unsubscribe(draw(u16nz), draw(st.lists(topic_filters(), min_size=1, max_size=4)),
                       draw(properties(codec.UNSUBSCRIBE)))


@st.composite
def disconnects(draw):
    return Disconnect(draw(st.sampled_from(_reasons(codec.DISCONNECT))),
                      draw(properties(codec.DISCONNECT)))


@st.composite
def auths(draw):
    rc = draw(st.sampled_from(_reasons(codec.AUTH)))
    props = draw(properties(codec.AUTH))
    if (rc or props) and P.PROP_AUTHENTICATION_METHOD not in props:
        props[P.PROP_AUTHENTICATION_METHOD] = draw(text)  # 3.15.2.2.2
    return Auth(rc, props)


pings = st.sampled_from((Ping(codec.PINGREQ), Ping(codec.PINGRESP)))

packets = st.one_of(connects(), connacks(), publishes(), acks(), subscribes(), subacks(),
                    unsubscribes(), pings, disconnects(), auths())
