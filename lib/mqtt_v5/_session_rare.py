"""Session's cold paths, imported on first use (a session that connects with a clean
start, subscribes, publishes and receives QoS 0/1 and disconnects never loads this
module): resends after a reconnect and the offline queue (``pump``), requeueing
when the server lost the session, QoS 2 (PUBREC / PUBREL / PUBCOMP, both ways),
outbound topic aliases, UNSUBSCRIBE, AUTH, packets larger than the send buffer, the
checks against a server without shared or wildcard subscriptions, and the packets the
server should not send. Functions of the ``Session`` (``self``); it keeps one-line
hooks. Sans-IO like the session. (A PUBLISH off the plain path, the offline queue and
outbound topic aliases: ``_publish_rare``'s, below it.)"""

from . import codec as _c
from . import properties as _p
from ._compat import const
from ._publish_rare import _no_room, _put_publish, _queued_size, _send_publish, check_publish
from .errors import ProtocolError, UsageError
from .topic import is_wildcard, share_prefix_len

# session.py's public constants (``session.X`` finds them here: see its ``__getattr__``).
# Connection states:
DISCONNECTED = const(0)
CONNECTING = const(1)
CONNECTED = const(2)
# Events returned by Session.poll():
EV_NONE = const(0)  # nothing more to do until more bytes arrive
EV_CONTINUE = const(1)  # a packet was handled internally (output may be pending)
EV_CONNACK = const(2)  # ev_rc, ev_session_present, ev_props
EV_MESSAGE = const(3)  # msg, topic_buf/start/end
EV_PUBLISH_DONE = const(4)  # ev_pid, ev_rc, ev_token: QoS 1 PUBACK or QoS 2 PUBCOMP
EV_PUBLISH_FAILED = const(5)  # ev_pid, ev_rc >= 0x80, ev_token
EV_SUBACK = const(6)  # ev_pid, ev_codes, ev_props
EV_UNSUBACK = const(7)  # ev_pid, ev_codes, ev_props
EV_DISCONNECT = const(8)  # ev_rc, ev_props (server sent DISCONNECT)
EV_AUTH = const(9)  # ev_rc, ev_props

# (session.py's, repeated: const() names are local to their module)
_FREE = const(0)
_WAIT_PUBACK = const(1)
_WAIT_PUBREC = const(2)
_WAIT_PUBCOMP = const(3)
_PID = const(0)
_STATE = const(1)
_SEQ = const(2)
_FLAGS = const(3)
_TOPIC = const(4)
_PAYLOAD = const(5)
_PROPS = const(6)
_TOKEN = const(7)
_SLOT = const(8)
_F_RETAIN = const(1)
_F_RESEND = const(2)
_F_CARRIED = const(4)
_SEQ_MASK = const(0x3FFFFFF)
# codec's packet types (codec.X would go through its __getattr__: an import each time)
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_PUBREC = const(5)
_PUBREL = const(6)
_PUBCOMP = const(7)
_DISCONNECT = const(14)
_AUTH = const(15)
_E_NOT_FLUSHED = const(65)  # (session's error numbers: see _errtext.SESSION)
_E_QOS_ABOVE_MAX = const(78)
_E_PUBLISH_TOO_BIG = const(80)


def encode_big(self, e, encode, args):
    """Session._encode_cold when the packet did not fit ``out`` (``e`` said so, or
    something else, raised again): into a buffer of its own, sent as ``out_tail``."""
    if not _no_room(e):
        raise e
    size = len(self.out)
    while True:
        size *= 4
        buf = bytearray(size)
        try:
            n = encode(buf, *args)
            break
        except UsageError as e2:
            if not _no_room(e2):
                raise
    self.out_len = 0
    self.out_tail = memoryview(buf)[:n]
    return n


def requeue(self):
    """CONNACK without a session: the unacknowledged publishes go out again as new
    messages (MQTT 5.0 §4.1), in the order they were first sent."""
    front = []
    sl = self._slots
    while True:
        i = oldest(self, False)  # in the order they were first sent
        if i < 0:
            break
        st = sl[i + _STATE]
        if st != _WAIT_PUBCOMP:
            topic = sl[i + _TOPIC]
            payload = sl[i + _PAYLOAD]
            front.append([topic, payload, 1 if st == _WAIT_PUBACK else 2,
                          (sl[i + _FLAGS] & _F_RETAIN) != 0, sl[i + _PROPS], sl[i + _TOKEN],
                          0])
            # Counted like any queued message (pump() subtracts it again);
            # may exceed max_queued_bytes: these were accepted already.
            self._queued_bytes += _queued_size(topic, payload, sl[i + _PROPS])
        elif sl[i + _TOKEN] is not None:
            # The server acknowledged receipt with PUBREC before losing the
            # session; sending again could duplicate a QoS 2 message, so the
            # outcome is unknown: the driver must tell the waiter.
            if not self.ev_orphans:  # (the class's empty tuple, or the driver's [])
                self.ev_orphans = []
            self.ev_orphans.append((sl[i + _PID], sl[i + _TOKEN]))
        self._free_slot(i)
    if front:
        front.extend(self._queue)
        self._queue = front


def oldest(self, resend_only, pubrel_only=False):
    """The in-flight slot sent longest ago (only those due for a resend
    if ``resend_only``; only those awaiting PUBCOMP if ``pubrel_only``),
    or -1."""
    best = -1
    best_age = -1
    seq = self._seq
    sl = self._slots
    for i in range(0, len(sl), _SLOT):
        st = sl[i + _STATE]
        if st != _FREE and (sl[i + _FLAGS] & _F_RESEND or not resend_only) and (
                st == _WAIT_PUBCOMP or not pubrel_only):
            age = (seq - sl[i + _SEQ]) & _SEQ_MASK
            if age > best_age:
                best = i
                best_age = age
    return best


def pump(self):
    """Session.pump (see there) when something is due: a resend or a queued message."""
    sl = self._slots
    i = oldest(self, True)  # resends keep the original order [MQTT-4.6.0-1]
    if i >= 0 and sl[i + _STATE] != _WAIT_PUBCOMP and \
            _sent_on_this_connection(self) >= self._window:
        # [MQTT-3.3.4-7] a resent PUBLISH counts against this connection's
        # Receive Maximum, which may be lower than the last one; PUBREL
        # does not (it completes, it is no new PUBLISH).
        i = oldest(self, True, True)
        if i < 0:
            return None
    if i >= 0:
        if sl[i + _FLAGS] & _F_RESEND:
            self._resends -= 1
        sl[i + _FLAGS] &= ~_F_RESEND
        pid = sl[i + _PID]
        if sl[i + _STATE] == _WAIT_PUBCOMP:
            self.out_len = _c.encode_ack(self.out, _PUBREL, pid)
        else:
            err = _resend_refused(self, i)
            if err is not None:
                # The server we came back to cannot take it (lower limits).
                self.ev_rc = err.reason_code
                self.ev_token = sl[i + _TOKEN]
                self.ev_pid = pid
                self.ev_error = err
                self._free_slot(i)
                return False
            _put_publish(self, sl[i + _TOPIC], sl[i + _PAYLOAD],
                         1 if sl[i + _STATE] == _WAIT_PUBACK else 2, sl[i + _PID],
                         (sl[i + _FLAGS] & _F_RETAIN) != 0, True, sl[i + _PROPS], 0)
            sl[i + _FLAGS] &= ~_F_CARRIED
        return sl[i + _TOKEN] or True
    if not self._queue:
        return None
    entry = self._queue[0]
    qos = entry[2]
    if qos and self._inflight >= self._window:
        return None
    del self._queue[0]
    self._queued_bytes -= _queued_size(entry[0], entry[1], entry[4])
    alias = entry[6]
    if alias > self.limits.topic_alias_maximum:
        alias = 0  # this server allows fewer aliases: the topic goes in full
    try:
        check_publish(self, entry[0], entry[1], qos, entry[3], entry[4])
        _send_publish(self, entry[0], entry[1], qos, entry[3], entry[4], alias, entry[5])
    except UsageError as e:
        # The new server cannot take it (lower limits than when queued).
        self.ev_rc = e.reason_code or 0x80
        self.ev_token = entry[5]
        self.ev_pid = 0
        self.ev_error = e
        return False
    return entry[5] or True


def _sent_on_this_connection(self):
    n = 0
    sl = self._slots
    for i in range(0, len(sl), _SLOT):
        if sl[i + _STATE] != _FREE and not sl[i + _FLAGS] & _F_CARRIED:
            n += 1
    return n


def _resend_refused(self, i):
    """The UsageError this server's limits make of resending slot ``i``, or None."""
    sl = self._slots
    lim = self.limits
    qos = 1 if sl[i + _STATE] == _WAIT_PUBACK else 2
    if qos > lim.maximum_qos:
        # [MQTT-3.2.2-11] never above the server's Maximum QoS
        return _c._err(_E_QOS_ABOVE_MAX, lim.maximum_qos)
    props = sl[i + _PROPS]
    from ._codec_rare import publish_size

    size = publish_size(len(sl[i + _TOPIC]), len(sl[i + _PAYLOAD]), qos,
                        _p.size(props, 1 << _PUBLISH) if props else 0)
    if size > lim.maximum_packet_size:
        # [MQTT-3.2.2-15] never send more than the server's Maximum Packet Size
        return _c._err(_E_PUBLISH_TOO_BIG, size, lim.maximum_packet_size)
    return None


# ------------------------------------------------------------- topic aliases --


def inbound_alias(self, m):
    """Session.poll for a PUBLISH ``m`` with a Topic Alias: a topic with it (re)maps the
    alias; the alias alone stands for its topic, then in ``topic_buf``."""
    alias = m.topic_alias
    amax = self._conf[5]  # topic_alias_maximum
    if alias > amax:
        # [MQTT-3.3.2-9] above the Topic Alias Maximum we sent
        raise _c._err(87, alias, amax)  # _E_ALIAS_ABOVE_MAX
    if self._alias_in is None:
        self._alias_in = [None] * (amax + 1)
    known = self._alias_in[alias]
    start = m.topic_start
    n = m.topic_end - start
    if n:
        if known is not None and len(known) == n:
            for k in range(n):  # (compared in place: the same topic allocates nothing)
                if known[k] != m.buf[start + k]:
                    break
            else:
                return
        self._alias_in[alias] = bytes(m.buf[start:m.topic_end])
    elif known is None:
        raise _c._err(88, alias)  # _E_UNKNOWN_ALIAS
    else:
        self.topic_buf = known
        self.topic_start = 0
        self.topic_end = len(known)


# --------------------------------------------------------------------- QoS 2 --

def publish_qos2(self, m):
    """An incoming QoS 2 PUBLISH: EV_CONTINUE (PUBREC again) for a resend of one
    already delivered, else None (deliver it; it is recorded now)."""
    pid = m.packet_id
    if self._in_qos2 is None:
        self._in_qos2 = [0] * self._conf[4]  # receive_maximum
    slot = -1
    for i in range(len(self._in_qos2)):
        v = self._in_qos2[i]
        if v == pid:
            # A resend of a message we already have: acknowledge, do
            # not deliver twice (exactly once, MQTT 5.0 §4.3.3).
            self.out_len = _c.encode_ack(self.out, _PUBREC, pid)
            return EV_CONTINUE
        if v == 0 and slot < 0:
            slot = i
    if slot < 0:
        raise ProtocolError("more QoS 2 messages in flight than our Receive Maximum", 0x93)
    # Recorded as it is delivered, not when PUBREC leaves: if the link
    # drops in between, the server's resend must not deliver it again.
    self._in_qos2[slot] = pid
    return None


def ack_qos2(self, a, i, st):
    """PUBREL, PUBREC or PUBCOMP ``a`` (its in-flight slot ``i`` and state ``st``)."""
    t = a.type
    pid = a.packet_id
    if t == _PUBREL:
        for k in range(len(self._in_qos2 or ())):
            if self._in_qos2[k] == pid:
                self._in_qos2[k] = 0
                self.out_len = _c.encode_ack(self.out, _PUBCOMP, pid)
                return EV_CONTINUE
        # Unknown id: PUBCOMP with 0x92 Packet Identifier not found (§3.7.2.1).
        self.out_len = _c.encode_ack(self.out, _PUBCOMP, pid, 0x92)
        return EV_CONTINUE
    if t == _PUBREC:
        if st == _WAIT_PUBCOMP:
            # A duplicate PUBREC: answer with PUBREL again.
            self.out_len = _c.encode_ack(self.out, _PUBREL, pid)
            return EV_CONTINUE
        if st != _WAIT_PUBREC:
            self.out_len = _c.encode_ack(self.out, _PUBREL, pid, 0x92)
            return EV_CONTINUE
        if a.reason_code >= 0x80:
            # [MQTT-4.3.3-4] a failed PUBREC ends the exchange
            return self._free_slot(i, a.reason_code)
        self._slots[i + _STATE] = _WAIT_PUBCOMP
        self._slots[i + _PAYLOAD] = None  # the server has it; free the payload early
        self.out_len = _c.encode_ack(self.out, _PUBREL, pid)
        return EV_CONTINUE
    # PUBCOMP
    if st != _WAIT_PUBCOMP:
        raise ProtocolError("PUBCOMP for unknown packet id %d" % pid, 0x82)
    return self._free_slot(i, a.reason_code)


# ------------------------------------------------------------ other packets --

def check_subscribe(self, subscriptions, props):
    """Session.subscribe's checks against a server that said no to shared or wildcard
    subscriptions or subscription identifiers."""
    lim = self.limits
    for filt, _options in subscriptions:
        f = filt.encode() if isinstance(filt, str) else filt
        shared = share_prefix_len(f) > 0
        if shared and not lim.shared_available:
            raise _c._err(68)  # _E_NO_SHARED
        if not lim.wildcard_available and is_wildcard(
                f[share_prefix_len(f) if shared else 0:]):
            raise _c._err(69)  # _E_NO_WILDCARD
    if props and _p.PROP_SUBSCRIPTION_IDENTIFIER in props and \
            not lim.subscription_identifiers_available:
        raise _c._err(70)  # _E_NO_SID


# ---------------------------------- Session's methods, through its __getattr__ --

_METHODS = ("unsubscribe", "auth", "ping", "ping_pending", "abort", "last_ack", "has_output",
            "check_publish", "defer_ack", "ack")
# Session's settings, by name, in the order of its _conf tuple (see session's _C_*).
_CONF = ("ping_timeout_ms", "connect_timeout_ms", "max_queued", "max_queued_bytes")


def attr(s, name):
    """``s.name`` for what ``Session.__getattr__`` finds here: a method that lives here,
    a setting, or ``max_inflight``."""
    if name in _METHODS:
        f = globals()[name]
        return lambda *a, **k: f(s, *a, **k)
    if name in _CONF:
        return s._conf[_CONF.index(name)]
    if name == "max_inflight":
        return s._conf[6]  # _C_MAX_INFLIGHT
    raise AttributeError(name)


def unsubscribe(self, filters, props=None, token=None):
    """Encode UNSUBSCRIBE; returns the packet id."""
    if self.state != CONNECTED:
        raise _c._err(67)  # _E_NOT_CONNECTED
    pid = self._peek_pid()
    from ._codec_rare import encode_unsubscribe

    n = self._encode_cold(encode_unsubscribe, pid, filters, props)
    if n > self.limits.maximum_packet_size:  # (as Session.subscribe)
        self.out_len = 0
        self.out_tail = None
        raise _c._err(71, n, self.limits.maximum_packet_size)  # _E_REQUEST_TOO_BIG
    self._next_pid = pid
    self._pending_sub[pid] = (token, bytes(len(filters)))  # (UNSUBACK: any codes)
    return pid


def defer_ack(self):
    """Keep the message just handed out unacknowledged past the next ``poll``
    (its callback runs on; the server's Receive Maximum then bounds how many
    such messages wait). Returns the key to give ``ack`` (0 for QoS 0)."""
    qos = self._msg_unacked
    self._msg_unacked = 0
    return (qos << 16) | self.msg.packet_id if qos else 0


def ack(self, key):
    """Encode the PUBACK / PUBREC ``defer_ack`` put off (nothing if the
    connection it came on is gone: the server sends the message again)."""
    if self.out_len or self.out_tail is not None:
        raise _c._err(_E_NOT_FLUSHED)
    if key and self.state == CONNECTED:
        self.out_len = _c.encode_ack(self.out, _PUBACK if key >> 16 == 1 else _PUBREC,
                                     key & 0xFFFF)


def refuse_disconnect(pkt):
    """Raise for a server DISCONNECT the spec forbids (Session.poll decoded it)."""
    if pkt.reason_code == 0x04:
        raise ProtocolError("DISCONNECT 0x04 (with will) is the client's to send", 0x82)
    # [MQTT-3.14.2-2] the server sends no Session Expiry Interval
    raise ProtocolError("server DISCONNECT with a Session Expiry Interval", 0x82)


def handle_other(self, first, r, t):
    """Session.poll for an AUTH, or a packet a server must not send."""
    if t == _AUTH:
        pkt = _c.decode_body(first, r)
        self.ev_rc = pkt.reason_code
        self.ev_props = pkt.properties
        return EV_AUTH
    if t == _CONNACK:
        raise ProtocolError("second CONNACK [MQTT-3.2.0-2]", 0x82)
    # CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ never go server -> client.
    raise ProtocolError("%s sent to a client" % _c.PACKET_NAMES[t], 0x82)


def auth(self, reason_code, props):
    """Encode AUTH (enhanced authentication)."""
    from ._codec_rare import encode_auth

    self._encode_cold(encode_auth, reason_code, props)


def ping(self, now_ms):
    """Encode a PINGREQ now, whether or not keep-alive wants one (a liveness
    check); ``ping_pending()`` is True until the PINGRESP arrives, and the
    usual ping timeout applies."""
    if self.out_len or self.out_tail is not None:
        raise _c._err(65)  # _E_NOT_FLUSHED
    if self.state != CONNECTED:
        raise _c._err(67)  # _E_NOT_CONNECTED
    self.out[0] = 0xC0  # PINGREQ
    self.out[1] = 0
    self.out_len = 2
    if self._ping_sent < 0:
        self._ping_sent = now_ms


def last_ack(self):
    """The PUBACK/PUBREC/PUBREL/PUBCOMP ``poll`` handled last (an AckView: ``msg``, which
    also holds the last PUBLISH; valid until the next ``poll``)."""
    return self.msg


def has_output(self):
    """True while ``out`` (or ``out_tail``) holds a packet not yet ``flushed``."""
    return self.out_len != 0 or self.out_tail is not None


def ping_pending(self):
    """True while a PINGREQ awaits its PINGRESP."""
    return self._ping_sent >= 0


def abort(self, rc):
    """The server broke the protocol (the driver found it, or ``Session.poll``): queue
    DISCONNECT ``rc``; the session is disconnected."""
    self.out_len = 0
    self.out_tail = None
    if self.state != DISCONNECTED:
        ok = _c.reason_allowed(_DISCONNECT, rc)
        self.out_len = _c.encode_disconnect(self.out, rc if ok else 0x82)
    self.state = DISCONNECTED


def repr_of(obj):
    """repr() of a Limits or a Message (session gives both classes one __repr__)."""
    if not hasattr(obj, "receive_maximum"):  # a Message
        return "Message(topic=%r, payload=%r, qos=%d, retain=%r)" % (
            obj.topic, obj.payload, obj.qos, obj.retain)
    lim = obj
    return ("Limits(receive_maximum=%d, maximum_qos=%d, retain_available=%r, "
            "maximum_packet_size=%d, topic_alias_maximum=%d, wildcards=%r, "
            "subscription_ids=%r, shared=%r, server_keep_alive=%d)" % (
                lim.receive_maximum, lim.maximum_qos, lim.retain_available,
                lim.maximum_packet_size, lim.topic_alias_maximum,
                lim.wildcard_available, lim.subscription_identifiers_available,
                lim.shared_available, lim.server_keep_alive))


# ------------------------------------------------------------------- Message --

def copy(m, c):
    """Message.copy (see there): into ``c``, a new Message; or ``m`` itself, which is
    then detached (Message._detach)."""
    c._topic = m.topic
    c._payload = m.payload
    c._props = m.properties
    c._session = None
    c.qos = m.qos
    c.retain = m.retain
    c.dup = m.dup
    c.packet_id = m.packet_id
    return c


