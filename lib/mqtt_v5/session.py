"""The sans-IO MQTT 5 client session: bytes and time in, events and bytes out.

Theory of operation
-------------------
``Session`` never touches a socket or a clock. The driver (``client.py``, the
blocking facade, or a test) moves data:

* Input: read transport bytes into ``session.reader.free()``, call
  ``session.reader.wrote(n)``, then call ``poll(now_ms)`` until it returns
  ``EV_NONE``. Each call handles at most one packet and returns one event;
  details are left in ``ev_*`` attributes and, for ``EV_MESSAGE``, in
  ``msg`` (a ``PublishView`` into the receive buffer, valid until the next
  ``poll``) with the resolved topic in ``topic_buf[topic_start:topic_end]``.
* Output: an operation that has something to send encodes exactly one packet
  into ``out`` (from offset 0) and sets ``out_len``; a large PUBLISH payload
  that did not fit is left in ``out_tail``. The driver writes
  ``out[:out_len]`` then ``out_tail`` and calls ``flushed(now_ms)`` before
  asking the session for anything else. ``poll`` returns after any packet
  that produced output, so one packet always leaves in one write.
* Time: every deadline is computed from the ``now_ms`` the driver passes in
  (``ticks_ms()`` values; ``ticks_diff`` keeps them wrap-around safe).
  ``next_timeout(now_ms)`` says how long the driver may sleep;
  ``on_timer(now_ms)`` sends PINGREQ when due and raises ``MqttTimeout`` for a
  dead link or a CONNACK that never came.

Buffers are allocated once, in ``__init__``; the in-flight table and ``msg`` once, at the
first CONNACK (the tables of incoming QoS 2 ids and topic aliases, and the offline queue,
by their first use). In steady state, publishing and receiving QoS 0/1 allocate nothing
here.

Errors: a peer that breaks the protocol makes ``poll`` queue a DISCONNECT
with the right reason code in ``out`` and then raise ``ProtocolError``; once
DISCONNECTED, ``poll`` ignores whatever else was buffered. Illegal requests
raise ``UsageError`` before any state changes (no packet id or topic alias
is used up by a refused PUBLISH or SUBSCRIBE).

Resending: in-flight messages go out again in the order first sent, with
DUP, after a CONNACK with Session Present; PUBLISH resends count against the
new connection's Receive Maximum. Without Session Present they are queued
again as new messages ahead of the offline queue.

What it does not do: sockets, TLS, reconnect timing and user callbacks (the
driver), and topic routing to callbacks (``topic.matches``).
"""
from . import codec as _c
from ._compat import const, heap_collect, ticks_diff

heap_collect()  # (before this module defines anything: see _compat's heap_collect)

# ``errors`` is not imported here: its classes are only needed once something was raised,
# and then whoever raised it loaded them (a device's import line need not hold them).

# _session_rare (the cold paths), once loaded: kept in a global because an import
# statement allocates on MicroPython (it builds the module's full name each time), and
# paths it holds must not allocate once warm (a QoS 2 exchange, a known topic alias).
_rare = None
_publish_rare = None  # type: Any  # (likewise: a PUBLISH off the plain path, see publish)


def _rare_paths():
    global _rare
    if _rare is None:
        from . import _session_rare

        _rare = _session_rare
    return _rare


def __getattr__(name):
    # session.CONNECTED, session.EV_NONE, ...: from _session_rare, then kept here (a
    # second look-up allocates nothing). Not dunders: an import probes ``__path__``.
    if name[0] == "_":
        raise AttributeError(name)
    value = globals()[name] = getattr(_rare_paths(), name)
    return value


# Folded by MicroPython (the block below is not even compiled) and, with its underscore,
# no global of this module; mypy reads the block.
_TYPE_CHECKING = const(0)
if _TYPE_CHECKING:  # pragma: no cover
    from typing import Any

# Connection states and the events poll() returns: public as ``session.CONNECTED``,
# ``session.EV_NONE``, ... (``_session_rare``'s, through ``__getattr__`` above): here, with
# an underscore, const() folds them and they are no globals of this module.
_DISCONNECTED = const(0)
_CONNECTING = const(1)
_CONNECTED = const(2)

_EV_NONE = const(0)  # nothing more to do until more bytes arrive
_EV_CONTINUE = const(1)  # a packet was handled internally (output may be pending)
_EV_CONNACK = const(2)  # ev_rc, ev_session_present, ev_props
_EV_MESSAGE = const(3)  # msg, topic_buf/start/end
_EV_PUBLISH_DONE = const(4)  # ev_pid, ev_rc, ev_token: QoS 1 PUBACK or QoS 2 PUBCOMP
_EV_PUBLISH_FAILED = const(5)  # ev_pid, ev_rc >= 0x80, ev_token
_EV_SUBACK = const(6)  # ev_pid, ev_codes, ev_props
_EV_UNSUBACK = const(7)  # ev_pid, ev_codes, ev_props
_EV_DISCONNECT = const(8)  # ev_rc, ev_props (server sent DISCONNECT)
_EV_AUTH = const(9)  # ev_rc, ev_props

# In-flight slot states (outgoing QoS 1/2).
_FREE = const(0)
_WAIT_PUBACK = const(1)
_WAIT_PUBREC = const(2)
_WAIT_PUBCOMP = const(3)

# The in-flight table is ONE flat list of _SLOT entries per outgoing QoS 1/2 message,
# with these fields at these offsets; a slot is named by the offset of its first entry
# (-1: none). One list of 8 words a slot instead of one list per field (each list
# object costs its header and slack under MicroPython), the three flags in one word.
_PID = const(0)
_STATE = const(1)  # _FREE / _WAIT_*: also its QoS (_WAIT_PUBACK is QoS 1, the others 2)
_SEQ = const(2)  # send order, for resends [MQTT-4.6.0-1]
_FLAGS = const(3)  # _F_* bits (0 while free)
_TOPIC = const(4)
_PAYLOAD = const(5)
_PROPS = const(6)
_TOKEN = const(7)
_SLOT = const(8)
_F_RETAIN = const(1)
_F_RESEND = const(2)  # to be sent again (DUP, or PUBREL) on this connection
# Set while the PUBLISH was last sent on an earlier connection: it does not count
# against this connection's Receive Maximum until resent.
_F_CARRIED = const(4)

# Settings fixed at construction, one tuple (``_conf``) at these offsets.
_C_PING_TIMEOUT_MS = const(0)
_C_CONNECT_TIMEOUT_MS = const(1)
_C_MAX_QUEUED = const(2)
_C_MAX_QUEUED_BYTES = const(3)
_C_RECEIVE_MAXIMUM = const(4)
_C_TOPIC_ALIAS_MAXIMUM = const(5)
_C_MAX_INFLIGHT = const(6)

# What the last CONNECT asked (``_connect_flags`` bits).
_CF_AUTO_ALIAS = const(1)
_CF_CLEAN_START = const(2)
_CF_EXPIRY_ZERO = const(4)  # its Session Expiry Interval was 0: it cannot be extended

_DEFAULT_SERVER_MAX = const(268435460)
# In-flight send order: a wrapping counter kept a small int on a 32-bit port.
_SEQ_MASK = const(0x3FFFFFF)

# Packet types and property identifiers (codec's and properties', folded here).
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_PUBREC = const(5)
_PUBREL = const(6)
_PUBCOMP = const(7)
_SUBACK = const(9)
_UNSUBACK = const(11)
_PINGRESP = const(13)
_DISCONNECT = const(14)
_AUTH = const(15)
_PROP_SESSION_EXPIRY_INTERVAL = const(0x11)
_PROP_ASSIGNED_CLIENT_IDENTIFIER = const(0x12)
_PROP_SERVER_KEEP_ALIVE = const(0x13)
_PROP_RECEIVE_MAXIMUM = const(0x21)
_PROP_TOPIC_ALIAS_MAXIMUM = const(0x22)
_PROP_TOPIC_ALIAS = const(0x23)
_PROP_MAXIMUM_QOS = const(0x24)
_PROP_RETAIN_AVAILABLE = const(0x25)
_PROP_MAXIMUM_PACKET_SIZE = const(0x27)
_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = const(0x28)
_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = const(0x29)
_PROP_SHARED_SUBSCRIPTION_AVAILABLE = const(0x2A)
_PROP_SUBSCRIPTION_IDENTIFIER = const(0x0B)

# Errors, by number (codec's _err makes them): class, reason code and text are in
# _errtext.SESSION, line n - 64 (no text in a device's RAM until one is raised).
_E_SIZES = const(64)
_E_NOT_FLUSHED = const(65)
_E_ALREADY = const(66)
_E_NOT_CONNECTED = const(67)
_E_NO_SHARED = const(68)
_E_NO_WILDCARD = const(69)
_E_NO_SID = const(70)
_E_REQUEST_TOO_BIG = const(71)
_E_EXPIRY_ON_DISCONNECT = const(72)
_E_NO_CONNACK = const(73)
_E_NO_PINGRESP = const(74)
_E_QOS = const(75)
_E_SID_ON_PUBLISH = const(76)
_E_ALIAS_PROPERTY = const(77)
_E_QOS_ABOVE_MAX = const(78)
_E_NO_RETAIN = const(79)
_E_PUBLISH_TOO_BIG = const(80)
_E_NO_SLOT = const(81)
_E_BEFORE_CONNACK = const(82)
_E_BAD_PINGRESP = const(83)
_E_UNKNOWN_REQUEST = const(84)
_E_CODE_COUNT = const(85)
_E_GRANTS_MORE = const(86)
_E_ALIAS_ABOVE_MAX = const(87)
_E_UNKNOWN_ALIAS = const(88)
_E_UNKNOWN_PUBACK = const(89)
_E_PRESENT_AFTER_CLEAN = const(90)

# const() is folded at compile time on MicroPython: only CPython calls it (above). Not
# kept as a global, its slot takes the next name: 11 globals (a frozen module's too, with
# its __version__, 12) fit a dict of 12; 13 took 17 slots.
del const


class Limits:
    """What the server allowed in CONNACK: its properties ``props`` (a dict), where one
    is absent the spec's default."""

    def __init__(self, props=None):
        get = (props or {}).get
        self.receive_maximum = get(_PROP_RECEIVE_MAXIMUM, 65535)
        self.maximum_qos = get(_PROP_MAXIMUM_QOS, 2)
        self.retain_available = get(_PROP_RETAIN_AVAILABLE, 1) == 1
        self.maximum_packet_size = get(_PROP_MAXIMUM_PACKET_SIZE, _DEFAULT_SERVER_MAX)
        self.topic_alias_maximum = get(_PROP_TOPIC_ALIAS_MAXIMUM, 0)
        self.wildcard_available = get(_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE, 1) == 1
        self.subscription_identifiers_available = get(
            _PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, 1) == 1
        self.shared_available = get(_PROP_SHARED_SUBSCRIPTION_AVAILABLE, 1) == 1
        self.server_keep_alive = get(_PROP_SERVER_KEEP_ALIVE, -1)  # -1: not given
        # -1: not given, ours applies
        self.session_expiry_interval = get(_PROP_SESSION_EXPIRY_INTERVAL, -1)
        self.assigned_client_id = get(_PROP_ASSIGNED_CLIENT_IDENTIFIER)

    reset = __init__  # (no argument: back to the spec's defaults)

    def __repr__(self):  # (Message's too: _session_rare tells them apart)
        return _rare_paths().repr_of(self)


# ------------------------------------------------- the drivers' shared types --

class Message:
    """A received message. Passed to a plain callback, it is only valid during
    the call (it reads the receive buffer); ``copy()`` keeps one. Coroutine
    callbacks and ``messages()`` get detached messages that stay valid. ``topic`` and
    ``payload`` build a str / bytes on first access; ``topic_is`` and
    ``payload_into`` do not allocate."""

    def __init__(self):
        self._session = None  # type: Any
        self._topic = None  # type: Any
        self._payload = None  # type: Any
        self._props = None  # type: Any
        self.qos = 0
        self.retain = False
        self.dup = False
        self.packet_id = 0

    def _bind(self, session):
        m = session.msg
        self._session = session
        self._topic = None
        self._payload = None
        self._props = None
        self.qos = m.qos
        self.retain = m.retain
        self.dup = m.dup
        self.packet_id = m.packet_id

    # ``topic`` (str), ``payload`` (bytes) and ``properties`` (dict) are built on first
    # access by __getattr__, then kept: one def rather than three properties (each def and
    # property object costs a device RAM). (Annotations without a value: MicroPython
    # compiles none.)
    topic: str
    payload: bytes
    properties: dict

    def __getattr__(self, name):
        # Called only for a name neither the instance nor the class has.
        if name == "topic":
            if self._topic is None:
                s = self._session
                self._topic = str(s.topic_buf[s.topic_start:s.topic_end], "utf-8")
            return self._topic
        if name == "payload":
            if self._payload is None:
                self._payload = self._session.msg.payload()
            return self._payload
        if name == "properties":
            if self._props is None:
                self._props = self._session.msg.properties()
            return self._props
        raise AttributeError(name)

    def topic_is(self, topic):
        """True if the topic equals ``topic`` (bytes), without allocating."""
        s = self._session
        if s is None:  # detached
            return self._topic.encode() == topic
        start = s.topic_start
        n = s.topic_end - start
        if len(topic) != n:
            return False
        buf = s.topic_buf
        for k in range(n):  # (compared in place)
            if topic[k] != buf[start + k]:
                return False
        return True

    def payload_into(self, buf):
        """Copy the payload into ``buf``; returns its length."""
        if self._session is None:  # detached
            n = len(self._payload)
            memoryview(buf)[0:n] = self._payload
            return n
        m = self._session.msg
        n = m.payload_end - m.payload_start
        mv = memoryview(buf)
        mv[0:n] = memoryview(m.buf)[m.payload_start:m.payload_end]
        return n

    def _detach(self):
        """Read everything out of the receive buffer: this object stays valid."""
        _rare_paths().copy(self, self)

    def copy(self):
        """A detached copy that stays valid."""
        return _rare_paths().copy(self, Message())

    __repr__ = Limits.__repr__  # (the same function object: one def fewer)


class Session:
    """One client's MQTT 5 session state machine.

    ``max_packet_size``: the Maximum Packet Size we advertise (receive buffer).
    ``out_size``: the send buffer; bigger payloads go out after the header.
    ``max_inflight``: outgoing QoS 1/2 slots (also capped by the server's
    Receive Maximum). ``receive_maximum``: incoming QoS 1/2 we accept at once.
    ``topic_alias_maximum``: inbound aliases we accept. ``max_queued`` and
    ``max_queued_bytes`` bound the offline queue.
    """

    # Set only by the rare paths that report them (until then ``__getattr__`` gives their
    # defaults): each attribute of a Session is a slot of its instance dict, and an entry
    # of the class's is one too. (Annotations without a value: MicroPython compiles none.)
    ev_error: "Any"  # why pump() could not send a queued message (None)
    # (packet id, token) of QoS 2 messages a lost session left unconfirmed (PUBREC seen,
    # PUBCOMP not): the driver fails their waiters after CONNACK, then sets it to [] (()).
    ev_orphans: "Any"

    def __getattr__(self, name):
        # Called only for a name neither the instance nor the class has. The methods
        # only rare paths call -- ``unsubscribe``, ``auth``, ``ping``, ``ping_pending``,
        # ``abort``, ``last_ack``, ``has_output``, ``check_publish``, ``defer_ack``, ``ack``
        # (see there) -- are _session_rare's, bound here on each use: a def in this class
        # costs a device RAM from import on.
        # So are the settings read from ``_conf`` by name (``max_queued``, ...) and
        # ``max_inflight``.
        if name == "ev_orphans":
            return ()
        if name == "ev_error":
            return None
        return _rare_paths().attr(self, name)

    def __init__(self, client_id="", max_packet_size=4096, out_size=1024, max_inflight=16,
                 receive_maximum=16, topic_alias_maximum=8, max_queued=64,
                 max_queued_bytes=32768, ping_timeout_ms=0, connect_timeout_ms=10000):
        # 38 attributes: an instance dict grows through 29, 37, 47, 59 ... slots when
        # full, and every method call looks in it first (a miss probes up to a free
        # slot), so 38 in 47 is both smaller than 48 in 59 and as quick. Settings and
        # flags read rarely share a tuple and an int (see _C_* and _CF_*).
        if max_inflight < 1 or receive_maximum < 1 or out_size < 64:
            raise _c._err(_E_SIZES)
        self.client_id = client_id
        self.reader = _c.PacketReader(max_packet_size)
        self.out = bytearray(out_size)
        self.out_len = 0
        self.out_tail = None
        self.limits = Limits()
        self.state = _DISCONNECTED
        self.keep_alive_ms = 0
        self._conf = (ping_timeout_ms, connect_timeout_ms, max_queued, max_queued_bytes,
                      receive_maximum, topic_alias_maximum, max_inflight)
        # Outgoing in-flight table, fixed size (see _SLOT), and each slot's packet id, 0
        # while free: found by the list's own (C) ``in`` and ``index`` rather than a Python
        # loop over the slots, twice per QoS 1 message. Both made at the first CONNACK
        # (nothing is in flight before), as is ``msg``, then kept: on MicroPython the TLS
        # handshake runs inside CONNECT's write, and whatever is held then sits under its
        # transient peak (the smallest heap that connects).
        self._slots = self._pids = ()  # type: Any
        self._resends = 0  # slots with _F_RESEND set (window_open is per publish)
        self._seq = 0
        self._inflight = 0
        self._window = max_inflight
        self._next_pid = 0
        # Incoming QoS 2 packet ids awaiting PUBREL: a list of receive_maximum, made by
        # the first such message of a connection (None until then).
        self._in_qos2 = None  # type: Any
        # SUBSCRIBE/UNSUBSCRIBE awaiting their ack: pid -> (token, what the ack must
        # match: the QoS asked per filter, bytes-like) (cold path).
        self._pending_sub = {}
        # Offline queue: [topic, payload, qos, retain, props, token, alias] entries, a list
        # once one was queued (() until then: nothing to allocate for a client that
        # never queues).
        self._queue = ()  # type: Any
        self._queued_bytes = 0
        # Topic aliases, each table made on a connection's first use (None until then):
        # inbound alias -> topic bytes (a list; a server seldom sends one); outbound
        # topic -> alias (a dict).
        self._alias_in = None  # type: Any
        self._alias_out = None  # type: Any
        self._connect_flags = _CF_CLEAN_START | _CF_EXPIRY_ZERO
        # Timers.
        self._last_sent = 0
        self._last_recv = 0
        self._ping_sent = -1
        self._connect_started = 0
        # Events.
        # The PUBLISH poll handed out last, and the PUBACK/PUBREC/PUBREL/PUBCOMP it handled
        # last: one view for both (each is valid until the next poll only, and a poll
        # handles one packet), so a session holds one view, not two.
        self.msg = None  # type: Any  # (a PublishView from the first CONNACK)
        self.topic_buf = b""
        self.topic_start = 0
        self.topic_end = 0
        self._msg_unacked = 0  # QoS of the last message not yet acknowledged
        self.ev_pid = 0
        self.ev_rc = 0
        self.ev_token = None  # type: Any
        self.ev_codes = None  # type: Any
        self.ev_props = None  # type: Any
        self.ev_session_present = False

    # ------------------------------------------------------------ output --

    def flushed(self, now_ms):
        """The driver wrote ``out[:out_len]`` (and ``out_tail``)."""
        if self.out_len or self.out_tail is not None:
            self._last_sent = now_ms
        self.out_len = 0
        self.out_tail = None

    # -------------------------------------------------------- connecting --

    def connect(self, now_ms, clean_start=True, keep_alive_s=60, username=None, password=None,
                will=None, props=None, session_expiry_s=0, auto_alias=False):
        """Encode CONNECT. ``props`` are extra CONNECT properties (dict); ``will`` a
        ``Will``. (The work is ``_connect``'s, loaded for it and unloaded again: not in
        the heap while connected, nor under the TLS handshake that CONNECT's write runs
        on MicroPython.)"""
        from ._connect import connect

        connect(self, now_ms, clean_start, keep_alive_s, username, password, will, props,
                session_expiry_s, auto_alias)

    def connection_lost(self):
        """The transport closed. Unacknowledged messages stay for a resend."""
        self.state = _DISCONNECTED
        self.out_len = 0
        self.out_tail = None
        self.reader.reset()
        self._ping_sent = -1
        self._msg_unacked = 0
        self._mark_resend()
        tokens = {}
        for pid, req in self._pending_sub.items():
            tokens[pid] = req[0]
        self._pending_sub = {}
        return tokens

    def _mark_resend(self):
        sl = self._slots
        for i in range(0, len(sl), _SLOT):
            if sl[i + _STATE] != _FREE:
                f = sl[i + _FLAGS]
                if not f & _F_RESEND:
                    self._resends += 1
                sl[i + _FLAGS] = f | _F_RESEND | _F_CARRIED

    # ---------------------------------------------------------- publishing --

    def window_open(self):
        """True if a QoS 1/2 PUBLISH may be sent now (Receive Maximum)."""
        return self.state == _CONNECTED and self._inflight < self._window and not self._resends

    def inflight(self):
        return self._inflight

    def queued(self):
        return len(self._queue)

    def publish(self, topic, payload, qos=0, retain=False, props=None, topic_alias=0,
                token=None):
        """Encode a PUBLISH into ``out`` and return its packet id (0 for QoS 0).

        When not connected, or while the Receive Maximum window is full, the
        message goes to the offline queue instead (``out_len`` stays 0) and 0
        is returned; ``pump`` sends it later. Raises ``QueueFull`` when the
        queue is full and ``UsageError`` for what the server cannot accept.
        """
        if (not props and not topic_alias and self.state == _CONNECTED and not self.out_len
                and self.out_tail is None and not self._queue
                and not self._connect_flags & _CF_AUTO_ALIAS
                and (not retain or self.limits.retain_available) and (not qos or (
                    0 < qos <= self.limits.maximum_qos and self._inflight < self._window
                    and not self._resends))):
            # The common PUBLISH (the checks below hold for it; for QoS 1/2 the window
            # is open): encoded whole by one codec call, which gives 0 when it is not
            # that plain (then the full path says why).
            pid = self._peek_pid() if qos else 0
            n = _c.encode_publish_plain(self.out, topic, payload, qos, pid, retain,
                                        self.limits.maximum_packet_size)
            if n:
                self.out_len = n
                if qos:
                    self._take_slot(self._pids.index(0) * _SLOT, pid, qos, retain, topic,
                                    payload, None, token)
                return pid
        # Properties, an alias, a payload larger than ``out``, the offline queue: cold.
        global _publish_rare
        if _publish_rare is None:
            from . import _publish_rare
        return _publish_rare.publish(self, topic, payload, qos, retain, props, topic_alias,
                                     token)

    def _take_slot(self, start, pid, qos, retain, topic, payload, props, token):
        """Record the PUBLISH just encoded in the free slot at ``start``."""
        self._next_pid = pid
        self._pids[start // _SLOT] = pid
        sl = self._slots
        sl[start + _PID] = pid
        sl[start + _STATE] = _WAIT_PUBACK if qos == 1 else _WAIT_PUBREC
        self._seq = (self._seq + 1) & _SEQ_MASK
        sl[start + _SEQ] = self._seq
        sl[start + _FLAGS] = _F_RETAIN if retain else 0
        sl[start + _TOPIC] = topic
        sl[start + _PAYLOAD] = payload
        sl[start + _PROPS] = props
        sl[start + _TOKEN] = token
        self._inflight += 1

    def _peek_pid(self):
        """The next free packet identifier, not yet taken: 1..65535, wrapping,
        never 0 [MQTT-2.2.1-3], skipping ids in use [MQTT-2.2.1-4]."""
        pid = self._next_pid
        while True:
            pid = pid + 1 if pid < 0xFFFF else 1
            if pid not in self._pids and pid not in self._pending_sub:
                return pid

    def _free_slot(self, start, rc=-1):
        """Free the in-flight slot at ``start``. Given the reason code ``rc`` of the
        acknowledgement that ends it, ``ev_*`` say which message, and the event
        (EV_PUBLISH_DONE or EV_PUBLISH_FAILED) is returned."""
        sl = self._slots
        if rc >= 0:
            self.ev_pid = sl[start + _PID]
            self.ev_rc = rc
            self.ev_token = sl[start + _TOKEN]
        sl[start + _STATE] = _FREE
        self._pids[start // _SLOT] = 0
        if sl[start + _FLAGS] & _F_RESEND:
            self._resends -= 1
        sl[start + _FLAGS] = 0
        sl[start + _TOPIC] = None
        sl[start + _PAYLOAD] = None
        sl[start + _PROPS] = None
        sl[start + _TOKEN] = None
        self._inflight -= 1
        return _EV_PUBLISH_FAILED if rc >= 0x80 else _EV_PUBLISH_DONE

    def drop_waiting(self):
        """The tokens of all that waits on the server, in a new list (cold path): the
        QoS 1/2 messages in flight (kept for a resend), the queued ones (the queue is
        emptied) and the SUBSCRIBE/UNSUBSCRIBE awaiting their ack (forgotten)."""
        sl = self._slots
        tokens = []
        for i in range(0, len(sl), _SLOT):
            if sl[i + _STATE] != _FREE and sl[i + _TOKEN] is not None:
                tokens.append(sl[i + _TOKEN])
        for e in self._queue:
            tokens.append(e[5])
        self._queue = ()
        self._queued_bytes = 0
        for req in self._pending_sub.values():
            tokens.append(req[0])
        self._pending_sub = {}
        return tokens

    def pump(self):
        """After CONNACK (and whenever the window opens), encode the next
        packet owed to the server: resends first (PUBLISH with DUP, or PUBREL
        [MQTT-4.4.0-1]), then queued messages. Returns the token of the
        message sent (True if none was given), None when nothing is due, or
        False when a queued message can no longer be sent (the new server's
        limits refuse it): ``ev_token`` and ``ev_error`` then say which and why."""
        if self.state != _CONNECTED or self.out_len or not (self._resends or self._queue):
            return None
        return _rare_paths().pump(self)

    def _encode_cold(self, encode, *args):
        """A cold-path packet (CONNECT, SUBSCRIBE, ...) into ``out``; one larger than
        ``out`` (long credentials, a big will) gets a buffer of its own, sent as
        ``out_tail``. Returns its length; ``out_len``/``out_tail`` are set. Refused
        while the last packet is not ``flushed`` (checked here, before anything is
        encoded: the callers change no state before)."""
        if self.out_len or self.out_tail is not None:
            raise _c._err(_E_NOT_FLUSHED)
        try:
            n = encode(self.out, *args)
            self.out_len = n
            return n
        except Exception as e:  # (a UsageError saying it did not fit: else raised again)
            return _rare_paths().encode_big(self, e, encode, args)

    # ------------------------------------------------------ subscriptions --

    def subscribe(self, subscriptions, props=None, token=None):
        """Encode SUBSCRIBE for ``[(filter, options), ...]``; returns the packet id."""
        if self.state != _CONNECTED:
            raise _c._err(_E_NOT_CONNECTED)
        lim = self.limits
        if not (lim.shared_available and lim.wildcard_available
                and lim.subscription_identifiers_available):
            _rare_paths().check_subscribe(self, subscriptions, props)
        pid = self._peek_pid()
        n = self._encode_cold(_c.encode_subscribe, pid, subscriptions, props)
        if n > lim.maximum_packet_size:  # (_session_rare.unsubscribe has the same check)
            self.out_len = 0
            self.out_tail = None
            # [MQTT-3.2.2-15] never send more than the server's Maximum Packet Size
            raise _c._err(_E_REQUEST_TOO_BIG, n, lim.maximum_packet_size)
        # What the SUBACK must match: one code per filter, none above the QoS asked.
        asked = bytearray(len(subscriptions))
        for k in range(len(subscriptions)):
            asked[k] = subscriptions[k][1] & 3
        self._next_pid = pid
        self._pending_sub[pid] = (token, asked)
        return pid

    # ----------------------------------------------------------- leaving --

    def disconnect(self, reason_code=0, props=None):
        """Encode DISCONNECT; the session is then disconnected."""
        if self.state == _DISCONNECTED:
            raise _c._err(_E_NOT_CONNECTED)
        if (props and self._connect_flags & _CF_EXPIRY_ZERO
                and props.get(_PROP_SESSION_EXPIRY_INTERVAL)):
            # [MQTT-3.14.2-2] a session CONNECT said ends now cannot be extended
            raise _c._err(_E_EXPIRY_ON_DISCONNECT)
        self._encode_cold(_c.encode_disconnect, reason_code, props)
        self.state = _DISCONNECTED

    # ------------------------------------------------------------ timers --

    def next_timeout(self, now_ms):
        """Milliseconds until ``on_timer`` has work; -1 for none (sleep until data)."""
        if self.state == _CONNECTING:
            return max(0, self._conf[_C_CONNECT_TIMEOUT_MS]
                       - ticks_diff(now_ms, self._connect_started))
        if self.state != _CONNECTED or not self.keep_alive_ms:
            return -1
        ka = self.keep_alive_ms
        if self._ping_sent >= 0:
            # The ping timeout (as on_timer): ours, else half the keep alive (a short one
            # whole).
            t = self._conf[_C_PING_TIMEOUT_MS] or (ka // 2 if ka > 2000 else ka)
            return max(0, t - ticks_diff(now_ms, self._ping_sent))
        since = ticks_diff(now_ms, self._last_sent)
        since_recv = ticks_diff(now_ms, self._last_recv)
        if since_recv > since:
            since = since_recv
        return max(0, ka - since)

    def on_timer(self, now_ms):
        """Send PINGREQ when keep-alive is due [MQTT-3.1.2-22]; raise
        ``MqttTimeout`` when the link is dead or CONNACK is late."""
        if self.state == _CONNECTING:
            t = self._conf[_C_CONNECT_TIMEOUT_MS]
            if ticks_diff(now_ms, self._connect_started) >= t:
                self.state = _DISCONNECTED
                raise _c._err(_E_NO_CONNACK, t)
            return
        if self.state != _CONNECTED or not self.keep_alive_ms or self.out_len:
            return
        if self._ping_sent >= 0:
            ka = self.keep_alive_ms  # (the ping timeout as in next_timeout)
            t = self._conf[_C_PING_TIMEOUT_MS] or (ka // 2 if ka > 2000 else ka)
            if ticks_diff(now_ms, self._ping_sent) >= t:
                self.state = _DISCONNECTED
                raise _c._err(_E_NO_PINGRESP, t)
            return
        if (ticks_diff(now_ms, self._last_sent) >= self.keep_alive_ms
                or ticks_diff(now_ms, self._last_recv) >= self.keep_alive_ms):
            self.out[0] = 0xC0  # PINGREQ
            self.out[1] = 0
            self.out_len = 2
            self._ping_sent = now_ms

    # ------------------------------------------------------------- input --

    def poll(self, now_ms):
        """Handle the next buffered packet; returns an ``EV_*`` code."""
        if self.out_len or self.out_tail is not None:
            raise _c._err(_E_NOT_FLUSHED)
        if self.state == _DISCONNECTED:
            # After a protocol error, a server DISCONNECT or a refused CONNACK
            # whatever else was buffered is not acted upon.
            return _EV_NONE
        qos = self._msg_unacked
        if qos:
            # Acknowledge the message handed out by the previous poll.
            self._msg_unacked = 0
            self.out_len = _c.encode_ack(self.out, _PUBACK if qos == 1 else _PUBREC,
                                         self.msg.packet_id)
            return _EV_CONTINUE
        try:
            first = self.reader.next()
            if first < 0:
                return _EV_NONE
            self._last_recv = now_ms
            rd = self.reader
            if first == 0x40 and rd.body_end - rd.body_start == 2 and self.state == _CONNECTED:
                # The usual PUBACK (success: no reason code, no properties) for a
                # QoS 1 message in flight; anything else about it (id 0, an id not
                # in flight) takes the full way below, which says what is wrong.
                b = rd.buf
                pid = (b[rd.body_start] << 8) | b[rd.body_start + 1]
                if pid and pid in self._pids:
                    i = self._pids.index(pid) * _SLOT
                    if self._slots[i + _STATE] == _WAIT_PUBACK:
                        a = self.msg  # (the ack's view: see __init__)
                        a.type = _PUBACK
                        a.packet_id = pid
                        a.reason_code = 0
                        a.prop_start = a.prop_end = 0
                        return self._free_slot(i, 0)
            r = rd.reader.reset(rd.buf, rd.body_start, rd.body_end)
            t = first >> 4
            if self.state == _CONNECTING:
                if t == _CONNACK:  # (here, not a method: one def less)
                    pkt = _c.decode_body(first, r)
                    if pkt.session_present and self._connect_flags & _CF_CLEAN_START:
                        # [MQTT-3.2.2-2] [MQTT-3.2.2-4] we asked for a new session
                        raise _c._err(_E_PRESENT_AFTER_CLEAN)
                    self.ev_rc = pkt.reason_code
                    self.ev_props = pkt.properties
                    self.ev_session_present = pkt.session_present
                    if pkt.reason_code >= 0x80:
                        self.state = _DISCONNECTED
                        return _EV_CONNACK
                    if self.msg is None:  # the first CONNACK (see __init__)
                        n = self._conf[_C_MAX_INFLIGHT]
                        self._slots = [0, _FREE, 0, 0, None, None, None, None] * n
                        self._pids = [0] * n
                        self.msg = _c.PublishView()
                    lim = self.limits
                    lim.reset(pkt.properties)
                    if lim.assigned_client_id:
                        self.client_id = lim.assigned_client_id
                    if lim.server_keep_alive >= 0:
                        # [MQTT-3.2.2-21] the server's keep alive replaces ours
                        self.keep_alive_ms = lim.server_keep_alive * 1000
                    self._window = min(len(self._pids), lim.receive_maximum)
                    self._alias_out = None
                    self._alias_in = None
                    self.state = _CONNECTED
                    if not pkt.session_present:
                        # The server has no session: our unacknowledged publishes go out
                        # again as new messages, so nothing accepted is lost (MQTT 5.0 §4.1).
                        self._in_qos2 = None
                        if self._inflight:
                            _rare_paths().requeue(self)
                    return _EV_CONNACK
                if t != _AUTH:
                    raise _c._err(_E_BEFORE_CONNACK, t)
            if t == _PUBLISH:
                m = _c.decode_publish_into(self.msg, first, r)
                self.topic_buf = m.buf
                self.topic_start = m.topic_start
                self.topic_end = m.topic_end
                if m.topic_alias:  # (servers seldom send one: a cold path)
                    _rare_paths().inbound_alias(self, m)
                if m.qos == 2:
                    ev = _rare_paths().publish_qos2(self, m)
                    if ev is not None:
                        return ev
                self._msg_unacked = m.qos
                return _EV_MESSAGE
            if _PUBACK <= t <= _PUBCOMP:
                a = _c.decode_ack_into(self.msg, first, r)
                pid = a.packet_id
                i = -1
                if t != _PUBREL and pid in self._pids:  # (a free slot's is 0)
                    i = self._pids.index(pid) * _SLOT
                st = self._slots[i + _STATE] if i >= 0 else _FREE
                if t == _PUBACK:
                    if st != _WAIT_PUBACK:
                        raise _c._err(_E_UNKNOWN_PUBACK, pid)
                    return self._free_slot(i, a.reason_code)
                return _rare_paths().ack_qos2(self, a, i, st)
            if t == _PINGRESP:
                if r.pos != r.end or first & 0x0F:
                    raise _c._err(_E_BAD_PINGRESP)
                self._ping_sent = -1
                return _EV_CONTINUE
            if t == _SUBACK or t == _UNSUBACK:  # (here, not a method: one def less)
                pkt = _c.decode_body(first, r)
                pid = pkt.packet_id
                if pid not in self._pending_sub:
                    raise _c._err(_E_UNKNOWN_REQUEST, t, pid)
                token, asked = self._pending_sub[pid]  # (kept until the ack is good)
                codes = pkt.reason_codes
                if len(codes) != len(asked):
                    raise _c._err(_E_CODE_COUNT, t, len(codes), len(asked))
                if t == _SUBACK:
                    for k in range(len(codes)):
                        if codes[k] < 0x80 and codes[k] > asked[k]:
                            raise _c._err(_E_GRANTS_MORE, codes[k], asked[k])
                del self._pending_sub[pid]
                self.ev_token = token
                self.ev_pid = pid
                self.ev_codes = codes
                self.ev_props = pkt.properties
                return _EV_SUBACK if t == _SUBACK else _EV_UNSUBACK
            if t == _DISCONNECT:
                # The server's goodbye is part of an everyday outage: handled here, so
                # that the reconnect after it loads no cold module (a device needs the
                # heap for its TLS handshake then).
                pkt = _c.decode_body(first, r)
                if pkt.reason_code == 0x04 or _PROP_SESSION_EXPIRY_INTERVAL in pkt.properties:
                    _rare_paths().refuse_disconnect(pkt)
                self.ev_rc = pkt.reason_code
                self.ev_props = pkt.properties
                self.state = _DISCONNECTED
                return _EV_DISCONNECT
            return _rare_paths().handle_other(self, first, r, t)
        except Exception as e:
            from .errors import ProtocolError  # (loaded already: see the imports)

            if isinstance(e, ProtocolError):
                self.abort(e.reason_code or 0x82)
            raise

    def owes_ack(self):
        """True if the next ``poll`` sends the acknowledgement of the message it
        handed out last (rather than handling another packet)."""
        return self._msg_unacked != 0
