"""Session's PUBLISH off its plain path, imported on first use: properties, a topic alias,
a payload larger than the send buffer, a closed Receive Maximum window, the offline queue
(and the resends ``_session_rare.pump`` sends). Functions of the ``Session`` (``self``).
Kept apart from ``_session_rare``: a device that publishes with properties loads this
alone. Sans-IO like the session."""

from . import codec as _c
from . import properties as _p
from ._compat import const
from .errors import QueueFull, UsageError

# (session.py's, repeated: const() names are local to their module)
_CONNECTED = const(2)
_SLOT = const(8)
_PUBLISH = const(3)
_PROP_SUBSCRIPTION_IDENTIFIER = const(0x0B)
_PROP_TOPIC_ALIAS = const(0x23)
_CF_AUTO_ALIAS = const(1)  # (session's _connect_flags bit)
_DEFAULT_SERVER_MAX = const(268435460)
# session's error numbers (see _errtext.SESSION)
_E_NOT_FLUSHED = const(65)
_E_QOS = const(75)
_E_SID_ON_PUBLISH = const(76)
_E_ALIAS_PROPERTY = const(77)
_E_QOS_ABOVE_MAX = const(78)
_E_NO_RETAIN = const(79)
_E_PUBLISH_TOO_BIG = const(80)
_E_NO_SLOT = const(81)


def publish(self, topic, payload, qos, retain, props, topic_alias, token):
    """Session.publish (see there) for what its plain path does not take: properties, a
    topic alias, a payload larger than ``out``, a closed window, the offline queue."""
    check_publish(self, topic, payload, qos, retain, props)
    if self.state != _CONNECTED or (qos and not self.window_open()) or self._queue:
        enqueue(self, topic, payload, qos, retain, props, token, topic_alias)
        return 0
    if self.out_len or self.out_tail is not None:
        raise _c._err(_E_NOT_FLUSHED)
    return _send_publish(self, topic, payload, qos, retain, props, topic_alias, token)


def check_publish(self, topic, payload, qos, retain, props=None):
    """Raise UsageError if the server's limits forbid this PUBLISH."""
    if qos != 0 and qos != 1 and qos != 2:
        raise _c._err(_E_QOS)
    if props:
        if _PROP_SUBSCRIPTION_IDENTIFIER in props:
            # [MQTT-3.3.4-6] only the server puts one on a PUBLISH
            raise _c._err(_E_SID_ON_PUBLISH)
        if _PROP_TOPIC_ALIAS in props:
            # Only the alias argument is checked against the server's maximum.
            raise _c._err(_E_ALIAS_PROPERTY)
    if self.state == _CONNECTED:
        lim = self.limits
        if qos > lim.maximum_qos:
            # [MQTT-3.2.2-11] never above the server's Maximum QoS
            raise _c._err(_E_QOS_ABOVE_MAX, lim.maximum_qos)
        if retain and not lim.retain_available:
            raise _c._err(_E_NO_RETAIN)


def _send_publish(self, topic, payload, qos, retain, props, topic_alias, token):
    # Nothing changes until the packet is encoded: a UsageError leaves the
    # alias table, the packet id counter and the in-flight table untouched.
    lim = self.limits
    alias = 0
    send_topic = topic
    if topic_alias or self._connect_flags & _CF_AUTO_ALIAS:
        alias = outbound_alias(self, topic, topic_alias)
        if alias > 0:
            send_topic = b""  # the server knows this alias already
    n = len(payload)
    pid = slot = 0
    if qos:
        if 0 not in self._pids:
            raise _c._err(_E_NO_SLOT)  # window_open() prevents this
        slot = self._pids.index(0) * _SLOT
        pid = self._peek_pid()
    tlen = len(send_topic) if not isinstance(send_topic, str) else len(send_topic.encode())
    psize = (_p.size(props, 1 << _PUBLISH) if props else 0) + (3 if alias else 0)
    rem = 2 + tlen + (2 if qos else 0) + _p.vbi_size(psize) + psize + n
    size = 1 + _p.vbi_size(rem) + rem  # (_codec_rare.publish_size: not loaded for this)
    if size > lim.maximum_packet_size:
        # [MQTT-3.2.2-15] never send more than the server's Maximum Packet Size
        raise _c._err(_E_PUBLISH_TOO_BIG, size, lim.maximum_packet_size)
    _put_publish(self, send_topic, payload, qos, pid, retain, False, props,
                 alias if alias > 0 else -alias)
    if alias < 0:
        remember_alias(self, topic, -alias)
    if qos:
        self._take_slot(slot, pid, qos, retain, topic, payload, props, token)
    return pid


def _put_publish(self, topic, payload, qos, pid, retain, dup, props, topic_alias):
    """PUBLISH into ``out``: the payload copied behind the header when it fits,
    else left in ``out_tail``. A header larger than ``out`` (a long topic with
    many properties) gets a buffer of its own for this one packet."""
    out = self.out
    if not props and not topic_alias and not dup:
        m = _c.encode_publish_plain(out, topic, payload, qos, pid, retain,
                                    _DEFAULT_SERVER_MAX)  # (the size was checked)
        if m:
            self.out_len = m
            return
    n = len(payload)
    try:
        hlen = _c.encode_publish_header(out, topic, n, qos, pid, retain, dup, props,
                                        topic_alias)
    except Exception as e:  # (a UsageError saying it did not fit: else raised again)
        put_big_publish(self, e, topic, payload, qos, pid, retain, dup, props, topic_alias)
        return
    if hlen + n <= len(out):
        out[hlen:hlen + n] = payload
        self.out_len = hlen + n
    else:
        self.out_len = hlen
        self.out_tail = payload


def put_big_publish(self, e, topic, payload, qos, pid, retain, dup, props, alias):
    """_put_publish when the PUBLISH header did not fit ``out`` (``e`` said
    so, or something else, raised again): the whole packet in a buffer of its own."""
    if not _no_room(e):
        raise e
    n = len(payload)
    buf = bytearray(4 * len(self.out) + n)
    while True:
        try:
            m = _c.encode_publish_header(buf, topic, n, qos, pid, retain, dup, props, alias)
            if m + n <= len(buf):
                break
        except UsageError as e2:
            if not _no_room(e2):
                raise
        buf = bytearray(4 * len(buf))
    buf[m:m + n] = payload
    self.out_len = 0
    self.out_tail = memoryview(buf)[:m + n]


def _no_room(e):
    """True for the codec's "does not fit the buffer" (not "too large for MQTT")."""
    return isinstance(e, UsageError) and e.reason_code == 0x95 and "does not fit" in e.args[0]


def enqueue(self, topic, payload, qos, retain, props, token, alias=0):
    """Into the offline queue (``QueueFull`` past its bounds)."""
    size = _queued_size(topic, payload, props)
    if (len(self._queue) >= self._conf[2]  # max_queued
            or self._queued_bytes + size > self._conf[3]):  # max_queued_bytes
        raise QueueFull("offline queue full (%d messages, %d bytes)"
                        % (len(self._queue), self._queued_bytes))
    # The message waits as given; the caller must not change a mutable payload.
    if not self._queue:
        self._queue = []  # (the first: see Session.__init__)
    self._queue.append([topic, payload, qos, retain, props, token, alias])
    self._queued_bytes += size


def _queued_size(topic, payload, props):
    """What a queued message counts against max_queued_bytes."""
    return len(topic) + len(payload) + (_p.size(props, 1 << _PUBLISH) if props else 0)


def outbound_alias(self, topic, requested):
    """The Topic Alias for ``topic`` within the server's Topic Alias Maximum:
    ``a > 0`` if the server already knows it (send an empty topic), ``-a``
    for a new mapping (send topic and alias, then ``remember_alias``), 0
    for none. Changes nothing; an int rather than a tuple, as this runs
    for every PUBLISH in auto-alias mode."""
    amax = self.limits.topic_alias_maximum
    if not amax:
        if requested:
            raise UsageError("the server allows no topic aliases", 0x94)
        return 0
    key = topic if not isinstance(topic, str) else topic.encode()
    if self._alias_out is None:
        self._alias_out = {}  # (the first use on this connection: see Session.__init__)
    known = self._alias_out.get(key, 0)
    if requested:
        if requested > amax:
            # [MQTT-3.2.2-17] never above the server's Topic Alias Maximum
            raise UsageError("topic alias %d above the server's maximum %d"
                             % (requested, amax), 0x94)
        return requested if known == requested else -requested
    if known:
        return known
    if len(self._alias_out) < amax:
        # The lowest free alias (explicit requests may have taken any of them).
        for alias in range(1, amax + 1):
            if not _alias_taken(self, alias):
                return -alias
    return 0


def _alias_taken(self, alias):
    for v in self._alias_out.values():
        if v == alias:
            return True
    return False


def remember_alias(self, topic, alias):
    """Record that the PUBLISH being sent maps ``alias`` to ``topic``."""
    key = topic.encode() if isinstance(topic, str) else bytes(topic)
    # Re-map: forget whichever topic held this alias, and this topic's old alias.
    for k in list(self._alias_out):
        if k == key or self._alias_out[k] == alias:
            del self._alias_out[k]
    self._alias_out[key] = alias
