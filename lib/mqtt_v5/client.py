"""The asyncio driver and public API: ``MqttClient``.

The driver only moves bytes and time between a transport and the sans-IO
``Session``. Its parts:

* connecting: ``connect`` / ``_connect_once`` / ``_handshake`` (bounded by
  ``connect_timeout``), and the **supervisor** (``_cold.supervise``), a task
  started when a link fails, that reconnects with backoff, follows redirections,
  and gives up for good;
* the **write path** (``_put``): every packet is encoded and handed to the
  transport with no await in between, so no lock; a write the transport could
  not finish at once is *held* and finished by a writer task, and nothing is
  encoded until it is;
* the **publish path** (``publish``): no coroutine in the usual case;
* subscribe / unsubscribe / disconnect;
* the **reader** task (``_read_loop``, ``_dispatch``: callbacks, coroutine
  callbacks bounded by ``receive_maximum``) and the **keep-alive** task
  (``_timer_loop``), which needs nothing the writer holds.

Nothing here polls.
"""

import asyncio

# The builtins the publish path names, as globals of this module: MicroPython looks a
# builtin up in the module's globals first, and a miss probes until it meets a free slot
# (this module's dict was full: all of it, ~200 ns a name on the unix port, four names
# per QoS 0 PUBLISH). A global is found at once (the lookup cache). See codec's len.
from builtins import bytes, str, type  # noqa: UP029

# The package's own __getattr__, as this module's: Message (the session's), Will (the
# codec's), PublishOptions (its own module's), set_debug (_client_extras') are public here
# too, with no global (nor string) each, found where they live (see ``mqtt_v5._NAMES``).
from . import __getattr__  # noqa: F401
from . import codec as _c
from . import properties as _p
from . import session as _s
from . import topic as _t
from ._compat import (
    BATCH_WRITES_DEFAULT,
    PENDING,
    READY,
    Done,
    Waiter,
    const,
    heap_collect,
    is_awaitable,
    sleep_ms,
    ticks_diff,
    ticks_ms,
)

heap_collect()  # (before this module defines anything: see _compat's heap_collect)

_ZERO = Done(0)  # what publish() of QoS 0 gives when it made no coroutine
# _dispatch's reader of a message's properties: one for every client, as _dispatch
# runs to its end without yielding (user callbacks it calls cannot reach it).
_CURSOR = _p.PropertyCursor()
# (their makers are needed no more: each global is a slot of this module's dict, which
# grows in steps when full; with these two gone it keeps its 37 names in 37 slots, 47
# otherwise)
del Done, _p

# Folded by MicroPython (the block below is not even compiled) and, with its underscore,
# no global of this module; mypy reads the block.
_TYPE_CHECKING = const(0)
if _TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Awaitable, Callable, Optional, Union  # noqa: F401

    from ._client_extras import set_debug  # noqa: F401
    from ._codec_rare import Will  # noqa: F401
    from ._publish_options import PublishOptions  # noqa: F401
    from .session import Message  # noqa: F401

_log_fn = None  # type: Any
_cold = None  # the module _cold once loaded: an import statement allocates on MicroPython


def _cold_paths():
    """``_cold``, loaded on first use; cached, for the per-message paths that use it."""
    global _cold
    if _cold is None:
        from . import _cold as cold

        _cold = cold
    return _cold


# The debug lines (set_debug) and the error texts live in _cold, by number: their text
# would be heap on every device (from .mpy), and a debug line costs only an ``if`` when off.
_N_CONNECTING = const(0)
_N_CONNECT = const(1)
_N_CONNACK = const(2)
_N_RESEND_FAILED = const(3)
_N_EVENT_CALLBACK_RAISED = const(4)
_N_PUBLISH = const(5)
_N_SUBSCRIBE = const(6)
_N_DISCONNECT = const(7)
_N_DISCONNECT_NOT_SENT = const(8)
_N_CALLBACK_RAISED = const(9)
_N_PINGREQ = const(10)


def _note(n, *values):
    """Debug line ``n`` (its text in ``_rare.NOTES``) with its values, when set_debug
    is on."""
    if _log_fn is not None:
        _cold_paths().note(n, values)


_E_ALREADY_CONNECTED = const(0)
_E_CONNECT_TIMEOUT = const(1)
_E_TRANSPORT_CLOSED = const(2)
_E_CLOSED_BEFORE_CONNACK = const(3)
_E_UNEXPECTED_BEFORE_CONNACK = const(4)
_E_BEGIN_PUBLISH_QOS = const(5)
_E_QUEUED_REFUSED = const(6)
_E_INVALID_FILTER = const(7)
_E_NOT_CONNECTED = const(8)
_E_SUBSCRIBE_REFUSED = const(9)
_E_CONNECTION_LOST = const(10)
_E_PUBLISH_REFUSED = const(11)
_E_CLOSED_BY_SERVER = const(12)
_E_WRITE_STALLED = const(13)
_E_CLIENT_DISCONNECTED = const(14)

# session's event codes and state, properties' identifiers: copies, as const() folds per
# module on MicroPython (``_s.EV_NONE`` is two lookups a use, in the read loop too).
# host_tests/test_unix_lazy.py checks they match.
_DISCONNECTED = const(0)
_EV_NONE = const(0)
_EV_CONTINUE = const(1)
_EV_CONNACK = const(2)
_EV_MESSAGE = const(3)
_EV_PUBLISH_DONE = const(4)
_EV_PUBLISH_FAILED = const(5)
_EV_SUBACK = const(6)
_EV_UNSUBACK = const(7)
_EV_DISCONNECT = const(8)
_EV_AUTH = const(9)
_PROP_SUBSCRIPTION_IDENTIFIER = const(0x0B)
_PROP_ASSIGNED_CLIENT_IDENTIFIER = const(0x12)
_PROP_RESPONSE_INFORMATION = const(0x1A)
_PROP_SERVER_REFERENCE = const(0x1C)
_PROP_REASON_STRING = const(0x1F)
_PROP_USER_PROPERTY = const(0x26)


def _errors():
    """``errors``, loaded when an error class is first named (an except clause is evaluated
    only once something was raised): not on a device's everyday path."""
    from . import errors

    return errors


def _error(*args):
    """The exception ``_clienterr.error(n, value, rc, more)`` builds (loaded for it, and
    unloaded again). (No defaults here: a tuple of them would be heap on every device.)"""
    from ._clienterr import error

    return error(*args)


class ReconnectConfig:
    """Automatic reconnection with exponential backoff and jitter (seconds)."""

    def __init__(self, enabled=True, initial_delay=1.0, max_delay=60.0, max_attempts=None,
                 jitter=0.5):
        self.enabled = enabled
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts  # None: forever
        self.jitter = jitter  # fraction of the delay added at random

    def delay(self, attempt):
        """Seconds to wait before reconnect attempt ``attempt`` (1-based)."""
        return _cold_paths().delay(self, attempt)


class ConnectOptions:
    """How to connect. Times are in seconds, as in MQTT.

    Memory: ``maximum_packet_size`` is the receive buffer, ``out_buffer_size``
    the send buffer (larger payloads are written after their header, not
    copied) and, with ``batch_writes``, again for small packets waiting to
    leave together in one write, ``max_inflight`` the outgoing QoS 1/2 slots, ``max_queued`` /
    ``max_queued_bytes`` bound the offline queue.
    """

    def __init__(self, client_id="", clean_start=True, keep_alive=60, session_expiry_interval=0,
                 username=None, password=None, will=None, user_properties=None,
                 receive_maximum=8, maximum_packet_size=2048, topic_alias_maximum=8,
                 tls=None, reconnect_config=None, max_inflight=8, out_buffer_size=256,
                 max_queued=64, max_queued_bytes=32768, connect_timeout=10.0,
                 auto_topic_alias=False, properties=None, batch_writes=None, auth_method=None,
                 auth_data=None, on_auth=None, follow_redirects=False):
        self.client_id = client_id
        self.clean_start = clean_start
        self.keep_alive = keep_alive
        self.session_expiry_interval = session_expiry_interval
        self.username = username
        self.password = password
        self.will = will
        self.user_properties = user_properties
        self.receive_maximum = receive_maximum
        self.maximum_packet_size = maximum_packet_size
        self.topic_alias_maximum = topic_alias_maximum
        self.tls = tls
        self.reconnect_config = (reconnect_config if reconnect_config is not None
                                 else ReconnectConfig())
        self.max_inflight = max_inflight
        self.out_buffer_size = out_buffer_size
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.connect_timeout = connect_timeout
        self.auto_topic_alias = auto_topic_alias
        self.properties = properties
        # Publishes that do not wait for their ack may wait (in an extra buffer of
        # out_buffer_size bytes) to leave together with the next ones in one write:
        # much faster in bursts, a few allocations more per lone publish. None: on
        # CPython yes, on MicroPython no. (The acks of one read always leave together.)
        self.batch_writes = batch_writes
        # Enhanced authentication: the method's name (str), the data for CONNECT, and
        # on_auth(server_data) -> our next data (a function or a coroutine function),
        # called for each challenge (at connect and after reauthenticate()).
        self.auth_method = auth_method
        self.auth_data = auth_data
        self.on_auth = on_auth
        # Follow a CONNACK or DISCONNECT 0x9C/0x9D with a Server Reference (URL targets).
        self.follow_redirects = follow_redirects


class ConnectionEvent:
    """Base of the events given to ``on_connection_event`` callbacks."""

    def __repr__(self):
        return _cold_paths().event_repr(self)


class Connected(ConnectionEvent):
    """``properties`` are the CONNACK's (a dict); the ones an application acts on are
    attributes too (None when absent)."""

    def __init__(self, session_present, limits, properties=None):
        self.session_present = session_present
        self.limits = limits
        p = properties or {}
        self.properties = p
        self.assigned_client_id = p.get(_PROP_ASSIGNED_CLIENT_IDENTIFIER)
        self.response_information = p.get(_PROP_RESPONSE_INFORMATION)
        self.server_reference = p.get(_PROP_SERVER_REFERENCE)
        self.reason_string = p.get(_PROP_REASON_STRING)
        self.user_properties = p.get(_PROP_USER_PROPERTY)


class Disconnected(ConnectionEvent):
    """``server_reference``: where the server said to go instead (0x9C / 0x9D)."""

    def __init__(self, reason_code=None, reason_string=None, by_server=False, error=None,
                 server_reference=None):
        self.reason_code = reason_code
        self.reason_string = reason_string
        self.by_server = by_server
        self.error = error
        self.server_reference = server_reference


class Reconnecting(ConnectionEvent):
    def __init__(self, attempt, delay):
        self.attempt = attempt
        self.delay = delay


ConnectionEvent.Connected = Connected  # type: ignore[attr-defined]
ConnectionEvent.Disconnected = Disconnected  # type: ignore[attr-defined]
ConnectionEvent.Reconnecting = Reconnecting  # type: ignore[attr-defined]


class Delivery(Waiter):
    """An outgoing QoS 1/2 message in flight; ``await delivery.wait()``
    returns its packet id once acknowledged or raises ``PublishFailed``.

    Inside the client it is also what publish() of QoS 1/2 returns to await
    (made once and reused: no coroutine, see ``_compat.Waiter``), a SUBACK /
    UNSUBACK waiter (``reason_code``: the list of codes) and the writer task's
    wake-up (``packet_id`` 0)."""

    def __init__(self):
        Waiter.__init__(self, asyncio.Event())
        self.packet_id = 0
        self.reason_code = None  # type: Any
        self.error = None  # type: Any
        # The client whose publish() owns it (None: the caller's own, from begin_publish):
        # once acknowledged and let go of by the session (_freed), it is reused.
        self._client = None  # type: Any
        self._freed = False

    def _done(self, pid, rc, error):
        self.packet_id = pid or self.packet_id
        self.reason_code = rc
        self.error = error
        self.event.set()

    def done(self):
        return self.event.is_set()

    def poll(self):
        # wait()'s outcome: the packet id, or the error raised.
        if not self.event.is_set():
            return PENDING
        pid = self.packet_id
        err = self.error
        c = self._client
        if c is not None and self._freed and len(c._spare) < c.options.max_inflight:
            # publish()'s own, acknowledged or refused: reuse it for the next publish()
            # rather than make a Delivery and its Event each time (up to max_inflight of
            # them: as many as may be in flight at once).
            self.packet_id = 0
            self.reason_code = None
            self.error = None
            self.event.clear()
            self._freed = False
            c._spare.append(self)
        if err is not None:
            raise err
        return pid


# A subscription is a tuple: the filter as given, as bytes, where matching starts in
# it (past a shared subscription's prefix), the callback, the SUBSCRIBE options, the
# properties, whether we chose its Subscription Identifier, and that identifier.
_SUB_FILTER = const(0)
_SUB_BYTES = const(1)
_SUB_START = const(2)
_SUB_CALLBACK = const(3)
_SUB_OPTIONS = const(4)
_SUB_PROPS = const(5)
_SUB_AUTO_SID = const(6)
_SUB_SID = const(7)


class MqttClient:
    """An MQTT 5 client on asyncio (CPython and MicroPython).

    ``client = MqttClient(ConnectOptions("thing-1"))``, then
    ``await client.connect("mqtts://host:8883")``.
    """

    if _TYPE_CHECKING:  # (made when first needed; see __init__)
        _queue_event = None  # type: Any

    def __init__(self, options=None):
        # type: (Optional[ConnectOptions]) -> None
        o = options if options is not None else ConnectOptions()
        self.options = o
        self._session = _s.Session(
            o.client_id, max_packet_size=o.maximum_packet_size, out_size=o.out_buffer_size,
            max_inflight=o.max_inflight, receive_maximum=o.receive_maximum,
            topic_alias_maximum=o.topic_alias_maximum, max_queued=o.max_queued,
            max_queued_bytes=o.max_queued_bytes,
            connect_timeout_ms=int(o.connect_timeout * 1000))
        # What the hot paths look up rather than make again: views of out / the batch by
        # size (see _view), str topics' bytes (see _publish_now). One dict for both.
        self._memo = {}  # type: dict
        # Small packets (acks, publishes) wait here to leave together in one write:
        # one syscall per packet was most of the CPU cost of publishing.
        self._batch_pub = BATCH_WRITES_DEFAULT if o.batch_writes is None else o.batch_writes
        # The batch buffer, ``_room`` and ``_msg`` are made at the first CONNACK (see
        # _handshake), then kept: on MicroPython the TLS handshake runs inside CONNECT's
        # write, and what the client holds then sits under its transient peak.
        self._batch_mv = None  # type: Any
        self._batch_len = 0
        # The write path (see _put): a write the transport could not finish at once, with
        # what goes after it and since when (a tuple: see _to_writer); wakes the writer.
        self._held = None  # type: Any
        # Set when room to send may have come: a held write finished (see _wait_room),
        # the send window opened (an ack, see _publish), the link was lost. One Event
        # for both: whoever waits checks its own condition again when woken. (None until
        # the first CONNACK, or a wait before it: none waits on it then, and the first
        # Event loads asyncio's event module, about 0.7 KB.)
        self._room = None  # type: Any
        # The writer task's wake-up (a Delivery: no coroutine per wake-up) while the task
        # runs: both made when first needed on a connection (most devices never need
        # them: see _to_writer).
        self._writer = None  # type: Any
        self._gave_up = None  # type: Any  # the error publish() raises once reconnecting stopped
        self._reauth = None  # type: Any  # set when a re-authentication succeeded
        self._transport = None  # type: Any
        # TCP_NODELAY, as last set: True while Nagle is on (QoS 0 PUBLISHes, see
        # _publish_now), False while off, None for a transport without nodelay().
        self._nagle = None  # type: Any
        self._target = None  # type: Any
        self._spare = []  # type: list  # Delivery objects publish() may reuse
        # (Empty tuples until first needed: one object for all, not a list each.)
        self._subs = ()  # type: Any  # tuples: see _SUB_FILTER (a list once subscribed)
        self._last_sid = 0
        self._event_cbs = ()  # type: tuple  # (a new tuple at each registration: rare)
        self._message_cbs = ()  # type: tuple
        self._queue = None  # type: Any  # messages() (with _queue_event, _queue_max)
        self._msg = None  # type: Any  # (the Message callbacks get, reused)
        # Counts connections (0: none yet, a transport given is then still open): a
        # deferred ack is for its own.
        self._link_no = 0
        self._tasks = ()  # type: Any  # the I/O tasks (a list from the first connection)
        # None until connect() succeeds and again after disconnect() or giving up;
        # True meanwhile, or while reconnecting the task that does it (_cold.supervise).
        self._supervisor = None  # type: Any
        self._closing = False
        self._connected = False
        # The link: None before the first, False while up, then the error that failed it.
        self._lost = None  # type: Any

    # ---------------------------------------------------------- properties --

    @property
    def is_connected(self):
        return self._connected

    @property
    def limits(self):
        """The server's limits from the last CONNACK (``session.Limits``)."""
        return self._session.limits

    @property
    def client_id(self):
        return self._session.client_id

    def status(self):
        # type: () -> dict
        """What the client is doing, for the REPL and logs (cold path): ``state``
        ("connected", "reconnecting", "gave up" or "disconnected"), ``client_id``,
        ``server`` (the URL connected to), ``in_flight`` (QoS 1/2 publishes awaiting
        their ack), ``queued`` (publishes waiting for the connection or the send
        window), ``subscriptions`` and the server's ``limits`` (from CONNACK)."""
        return _cold_paths().status(self)

    def __repr__(self):
        return _cold_paths().client_repr(self)

    def on_connection_event(self, callback):
        """Call ``callback(event)`` on Connected / Disconnected / Reconnecting."""
        self._event_cbs += (callback,)

    def on_message(self, callback):
        """Call ``callback(message)`` for messages no subscription callback
        took (e.g. AWS IoT responses delivered without a subscription)."""
        self._message_cbs += (callback,)

    # ---------------------------------------------------------- connect --

    async def connect(self, target):
        """Connect to ``mqtt://host:port`` / ``mqtts://host:port``, or over an
        already-open transport (``readinto``/``write``/``close``), or an async
        callable returning one (so reconnects can open a new one). Returns the
        ``Connected`` event. Raises ``ConnectRefused``, ``NetworkError``,
        ``MqttTimeout``."""
        if self._supervisor is not None:
            raise _error(_E_ALREADY_CONNECTED)
        self._closing = False
        self._gave_up = None
        self._target = self._home = target
        self._hops = 0  # redirections followed in a row
        while True:
            try:
                event = await self._connect_once()
                break
            except _errors().ConnectRefused as e:
                if not _cold_paths().redirect(self, e.reason_code, e.server_reference):
                    raise
        self._supervisor = True  # (a lost link starts the task: see _cold.link_failed)
        await self._after_connect(event)
        return event

    async def _connect_once(self):
        """Open the transport and handshake, all within ``connect_timeout``: a server
        that accepts TCP and then says nothing (or stalls TLS, whose handshake
        MicroPython runs inside the first write) cannot hang connect() or the
        reconnect loop. (DNS on MicroPython blocks the whole event loop: no timeout
        can bound it; connect by address where that matters.)"""
        from ._compat import within  # (asyncio.wait_for; on MicroPython in this task)

        limit = self.options.connect_timeout
        try:
            return await within(self._handshake(), limit)
        except BaseException as e:
            # (a failed attempt, as reconnecting, loads _cold: closes, raises)
            await _cold_paths().connect_failed(self, e, limit)
            raise

    async def _handshake(self):
        """Open the transport (``_transport``, which the caller closes on failure), send
        CONNECT and read up to the CONNACK; returns the ``Connected`` event.
        At the first CONNACK the heap is collected: on MicroPython the first TLS handshake
        (run in CONNECT's write) left garbage below, whose room then takes what the client
        keeps from now on rather than fresh heap above the session's buffers, where the
        next connection's handshake needs it. Not at later CONNACKs (worse there)."""
        self._transport = None  # (the last one is closed already)
        o = self.options
        t = self._target
        if isinstance(t, str):
            if o.tls:
                # The SSL context first (a TlsConfig keeps it: open_connection gets the same
                # one), before the first connect loads transport: building it loads and
                # unloads _tls_ctx and reads the certificate files, and transport's code
                # then fills those holes rather than the heap above them, under the TLS
                # session's buffers (unix port, 32-bit, .mpy: the scenario's smallest heap
                # 84,320 -> 83,232 B).
                o.tls.context()
            from .transport import open_connection

            _note(_N_CONNECTING, t)
            # (no timeout of its own: _connect_once bounds all of connecting)
            transport = await open_connection(t, None, o.tls, None)
        else:  # a transport, or what opens one (_cold: not the usual case)
            transport = await _cold_paths().open_given(self, t)
        self._transport = transport
        self._nagle = False if hasattr(transport, "nodelay") else None  # (opened with it on)
        s = self._session
        self._drop_writes()  # packets for the old connection are void
        if s.state != _DISCONNECTED or s.out_len or s.out_tail is not None:
            s.connection_lost()  # also drops a goodbye a failed attempt could not send
        props = dict(o.properties) if o.properties else {}
        if o.user_properties:
            props[_PROP_USER_PROPERTY] = list(o.user_properties)
        if o.auth_method is not None:
            from . import _rare

            _rare.auth_props(o, o.auth_data, props)
        clean = o.clean_start and (not self._link_no or not o.session_expiry_interval)
        now = ticks_ms()
        s.connect(now, clean, o.keep_alive, o.username, o.password,
                  o.will, props,
                  o.session_expiry_interval, o.auto_topic_alias)
        _note(_N_CONNECT, s.client_id, clean, o.keep_alive)
        if not self._put():
            await self._finish()
        rd = s.reader
        while True:
            n = await transport.readinto(rd.free())
            if not n:
                raise _error(_E_CLOSED_BEFORE_CONNACK)
            rd.wrote(n)
            ev = s.poll(ticks_ms())  # (a ProtocolError: _connect_once writes the goodbye)
            while ev == _EV_CONTINUE:
                if (s.out_len or s.out_tail is not None) and not self._put():
                    await self._finish()
                ev = s.poll(ticks_ms())
            if ev == _EV_CONNACK:
                break
            if ev == _EV_AUTH:  # a step of enhanced authentication (its answer written)
                from . import _rare

                await _rare.step(self)
                continue
            if ev != _EV_NONE:
                raise _error(_E_UNEXPECTED_BEFORE_CONNACK)
        _note(_N_CONNACK, s.ev_rc, s.ev_session_present, s.limits)
        if s.ev_rc >= 0x80 or s.ev_orphans:
            _cold_paths().refused_or_orphans(s)  # raises ConnectRefused if refused
        if self._msg is None:  # the first CONNACK: see __init__
            heap_collect()  # (see the docstring)
            self._msg = _s.Message()
            self._batch_mv = memoryview(
                bytearray(max(128, o.out_buffer_size) if self._batch_pub else 128))
            if self._room is None:
                self._room = asyncio.Event()
        self._connected = True
        self._link_no += 1
        self._up_since = ticks_ms()  # (see _cold.supervise)
        self._hops = 0
        props = s.ev_props
        s.ev_props = None  # (the event has them: not kept while connected)
        return Connected(s.ev_session_present, s.limits, props)

    async def _after_connect(self, event):
        """Start the I/O tasks, restore subscriptions, send what is owed."""
        self._lost = False
        self._tasks = [asyncio.create_task(self._read_loop(self._transport)),
                       asyncio.create_task(self._timer_loop())]
        self._room.set()
        self._writer = None
        if not event.session_present and self._subs:
            await _cold_paths().resubscribe(self)  # the server forgot us
        try:
            await self._pump()
        except (_errors().MqttError, OSError) as e:
            _note(_N_RESEND_FAILED, e)  # the link is down again
        await self._emit(event)

    async def _emit(self, event):
        for cb in self._event_cbs:
            try:
                r = cb(event)
                if is_awaitable(r):
                    await r
            except Exception as e:  # a user callback must not kill the client
                _note(_N_EVENT_CALLBACK_RAISED, e)

    def reauthenticate(self, data=None):
        # type: (Optional[bytes]) -> Awaitable[Optional[bytes]]
        """Enhanced authentication again, on this connection (needs
        ``ConnectOptions(auth_method=...)``): AUTH "re-authenticate" with ``data``,
        then the server's challenges go to ``on_auth`` as at connect. Returns once the
        server says success, with the Authentication Data of that AUTH (None if none;
        at connect it is in ``Connected.properties``). A server that refuses
        disconnects: ``ConnectRefused`` with its reason code (the client then
        reconnects as configured, authenticating from the start); no answer within
        ``connect_timeout``: ``MqttTimeout`` (and a new connection). (An awaitable.)"""
        from . import _rare

        return _rare.reauthenticate(self, data)

    # ---------------------------------------------------------- writing --

    def _view(self, n):
        """``out[:n]``, or for a negative n the batch's first -n bytes, without
        allocating in steady state (sizes repeat)."""
        memo = self._memo
        v = memo.get(n)
        if v is None:
            if len(memo) >= 48:
                memo.clear()
            v = memoryview(self._session.out)[:n] if n > 0 else self._batch_mv[:-n]
            memo[n] = v
        return v

    # The write path. Every packet is encoded into the session's ``out`` and handed to
    # the transport at once, with no await in between, so no lock is needed: what
    # the transport takes whole costs no coroutine and no scheduler round. Only
    # when it cannot (the kernel's buffer is full) is the write "held": the writer
    # task finishes it, and until then nothing is encoded (``out`` and the batch
    # may still be read by the transport). Whoever has something to send then
    # waits for ``_room``; a caller that drops or cancels its wait holds nothing.

    def _put(self):
        """Hand the batch, then the packet in ``out`` (and its tail) to the transport.
        True when it took everything now; False when the rest is held for the writer
        task. A failed write fails the link and raises NetworkError."""
        s = self._session
        n = s.out_len
        tail = s.out_tail
        if _log_fn is not None and n:
            _cold_paths().log_packet(s.out, n)
        s.flushed(ticks_ms())
        t = self._transport
        if self._nagle:
            # Anything but a QoS 0 PUBLISH is waited for: TCP_NODELAY back on, which also
            # sends at once a QoS 0 segment Nagle was holding (see _publish_now).
            self._nagle = False
            t.nodelay(True)
        try:
            b = self._batch_len
            if b:
                self._batch_len = 0
                w = t.write(self._view(-b))
                if w is not READY:
                    return self._to_writer(w, n, tail)
            if n:
                w = t.write(self._view(n))
                if w is not READY:
                    return self._to_writer(w, 0, tail)
            if tail is not None:
                w = t.write(tail)
                if w is not READY:
                    return self._to_writer(w, 0, None)
        except Exception as e:
            raise _cold_paths().write_failed(self, e)
        return True

    def _to_writer(self, waiter, n, out_tail):
        # type: (Any, int, Any) -> bool
        """Wake the writer task (made on first need). With ``waiter``, the awaitable of
        a write the transport could not finish at once, that write is *held*, with what
        goes after it (``out[:n]``, then ``out_tail``); without, the writer sends the
        batch. Returns False (``_put``'s "not all taken now")."""
        if waiter is not None:
            self._held = (waiter, n, out_tail, ticks_ms())
            if self._room is not None:
                self._room.clear()
        wr = self._writer
        if wr is None and self._connected:
            wr = self._writer = Delivery()
            self._tasks.append(asyncio.create_task(self._write_loop(wr)))
        if wr is not None:
            wr.event.set()
        return False

    async def _finish(self):
        """Wait for the held write, then write what was behind it."""
        t = self._transport
        w, n, tail, _ = self._held
        try:
            await w
            if n:
                await t.write(self._view(n))
            if tail is not None:
                await t.write(tail)
        except Exception as e:
            raise _cold_paths().write_failed(self, e)
        self._held = None
        if self._room is not None:
            self._room.set()

    def _drop_writes(self):
        """The connection is gone: what was held or batched for it is void."""
        self._held = None
        self._batch_len = 0
        if self._room is not None:
            self._room.set()

    async def _wait_room(self):
        """Until no write is held (a lost link voids it)."""
        while self._held is not None:
            if self._room is None:  # (a wait before the first CONNACK: see __init__)
                self._room = asyncio.Event()
            self._room.clear()
            await self._room.wait()

    def _batch_out(self):
        """Move the packet in ``out`` to the batch if it fits; the writer task (or the
        next write) sends it. True if it did."""
        s = self._session
        n = s.out_len
        a = self._batch_len
        if s.out_tail is not None or a + n > len(self._batch_mv):
            return False
        if _log_fn is not None:
            _cold_paths().log_packet(s.out, n)
        self._batch_mv[a:a + n] = self._view(n)
        self._batch_len = a + n
        s.flushed(ticks_ms())
        return True

    async def _write_loop(self, waiter):
        """The writer task: finishes held writes, sends what was batched. Asleep on
        an Event otherwise (nothing allocated while idle): ``waiter``, its wake-up."""
        try:
            while True:
                if self._held is not None:
                    await self._finish()
                elif self._batch_len:
                    self._put()
                else:
                    waiter.event.clear()
                    await waiter.wait()
        except Exception as e:  # (not CancelledError: a BaseException)
            while not self._link_failed(e):
                await sleep_ms(500)

    # ---------------------------------------------------------- publish --

    def publish(self, topic, payload, qos=0, retain=False, options=None):
        # type: (Union[str, bytes], Union[bytes, str], int, bool, Optional[PublishOptions]) -> Awaitable[int]
        """Publish; returns the packet id (0 for QoS 0: once handed to the
        transport, or batched with other small packets) once the server has
        acknowledged QoS >= 1. Raises ``PublishFailed`` with the reason code
        when the server refuses it. While disconnected the message is queued
        (``QueueFull`` past the bounds) and sent after reconnecting; once the
        client gave up reconnecting it raises ``NetworkError`` at once.

        A plain method returning an awaitable (await it once, or make it a
        task; dropping it unawaited costs nothing but that outcome). Under
        MicroPython every coroutine costs its frame, so the usual case (no
        write held, window open, no batching) makes none: the packet is
        handed to the transport here and what is returned is preallocated --
        a completed awaitable for QoS 0, the reused Delivery's ``wait()`` for
        QoS 1/2. Otherwise it is the one coroutine that does the work."""
        if self._gave_up is not None:
            return _raise(self._gave_up)
        if self._held is None and _log_fn is None and (
                not qos or self._session.window_open() or not self._connected):
            return self._publish_now(topic, payload, qos, retain, options, None)
        return self._publish(topic, payload, qos, retain, options, None)

    def _publish_now(self, topic, payload, qos, retain, options, token):
        """``publish`` (and ``begin_publish``, with its ``token``) when nothing has to
        be waited for before the write. The packet is encoded and handed to the
        transport here; if the transport could not take it all, the writer task
        finishes it. Returns the completed ``_ZERO`` for QoS 0 (and begin_publish),
        publish()'s own reused Delivery's ``wait()`` for QoS 1/2."""
        s = self._session
        if qos and token is None:
            if self._spare:
                token = self._spare.pop()
            else:
                token = Delivery()
                token._client = self
        if type(payload) is not bytes and isinstance(payload, str):
            payload = payload.encode()
        memo = self._memo
        tb = memo.get(topic) if type(topic) is str else topic
        if tb is None and type(topic) is str:  # not seen lately: encoded once, then looked up
            if len(memo) >= 48:
                memo.clear()
            tb = memo[topic] = topic.encode()
        try:
            pid = s.publish(tb, payload, qos, retain, None, 0, token) if options is None else \
                s.publish(tb, payload, qos, retain, options.properties, options.topic_alias,
                          token)
        except Exception as e:
            if token is not None and token._client is not None:
                self._spare.append(token)  # refused before the session took it
            return _raise(e)  # raised where the caller awaits, as from a coroutine
        n = s.out_len
        if n and token is None and not self._batch_pub and not self._batch_len and \
                s.out_tail is None and _log_fn is None:
            # QoS 0, one packet in ``out``, nothing batched: written at once, with
            # Nagle on. A write then only appends to the kernel's buffer while an earlier
            # segment is unacknowledged, and QoS 0 PUBLISHes in a row leave together:
            # with TCP_NODELAY each write was a segment of its own through the whole TCP
            # path. The kernel delivers what it holds without us; and since whatever
            # goes next turns TCP_NODELAY back on (_put), a packet someone waits for is
            # not held behind it. Switched on transitions only: no syscall in a run.
            s.flushed(ticks_ms())
            if self._nagle is False:
                self._nagle = True
                self._transport.nodelay(False)
            v = memo.get(n)
            try:
                w = self._transport.write(v if v is not None else self._view(n))
            except Exception as e:
                return _raise(_cold_paths().write_failed(self, e))  # QoS 0: it may be lost, say so
            if w is not READY:
                self._to_writer(w, 0, None)
            return _ZERO
        if s.out_len or s.out_tail is not None:
            if token is not None:
                token.packet_id = pid
            try:
                if self._batch_pub and (token is None or s.inflight() > 1) and \
                        self._batch_out():
                    # QoS 0, or others in flight (pipelining): it leaves with what is
                    # published this scheduler round, in one write when the writer
                    # task runs; a lone QoS 1/2 (stop-and-wait) at once.
                    self._to_writer(None, 0, None)
                else:
                    self._put()
            except _errors().NetworkError as e:
                if token is None:
                    return _raise(e)  # QoS 0: it may be lost, say so
                # QoS 1/2: the session holds it and resends it after reconnecting;
                # the Delivery completes then (raising here would invite a duplicate).
        if token is None or token._client is None:
            return _ZERO
        return token.wait()

    def publish_qos1(self, topic, payload, retain=False, options=None):
        # type: (Union[str, bytes], Union[bytes, str], bool, Optional[PublishOptions]) -> Awaitable[int]
        """``publish(..., qos=1)`` (an awaitable, as publish's)."""
        return self.publish(topic, payload, 1, retain, options)

    async def begin_publish(self, topic, payload, qos=1, retain=False, options=None):
        """Send a QoS 1/2 message without waiting for its acknowledgement:
        returns a ``Delivery`` (``.packet_id`` is set once sent; ``await
        delivery.wait()`` for the ack). Waits only while the server's
        Receive Maximum window is full."""
        if not 0 < qos < 3:
            raise _error(_E_BEGIN_PUBLISH_QOS)
        d = Delivery()
        await self._publish(topic, payload, qos, retain, options, d)
        return d

    async def _publish(self, topic, payload, qos, retain, options, token):
        """``_publish_now`` once the send window has room (QoS 1/2) and no write is
        held: the coroutine publish() makes only when it has to wait."""
        s = self._session
        while True:
            if qos:
                while self._connected and not s.window_open() and not self._closing:
                    self._room.clear()  # (set by an ack: see _room)
                    await self._room.wait()
            await self._wait_room()
            if self._gave_up is not None:
                raise self._gave_up
            if self._held is None or not self._connected:
                break
        if _log_fn is not None:  # (no tuple of values made otherwise)
            _note(_N_PUBLISH, topic, qos, self._connected)
        return await self._publish_now(topic, payload, qos, retain, options, token)

    async def _pump(self):
        """Send resends and queued messages while the window allows."""
        s = self._session
        while self._connected:
            await self._wait_room()
            if not self._connected:
                return
            token = s.pump()
            if token is None:
                return
            if token is False:
                err = s.ev_error
                if s.ev_token is not None:
                    s.ev_token._done(0, err.reason_code,
                                     _error(_E_QUEUED_REFUSED, err, err.reason_code))
                continue
            self._put()

    # -------------------------------------------------------- subscribe --

    async def subscribe(self, topic_filter, callback=None, qos=0, no_local=False,
                        retain_as_published=False, retain_handling=0, properties=None):
        # type: (str, Optional[Callable], int, bool, bool, int, Optional[dict]) -> int
        """Subscribe and route matching messages to ``callback(message)``: a
        plain function runs in the reader, a coroutine function as its own task
        (so it may await a ``publish``). Returns the granted QoS;
        raises ``SubscribeFailed`` with the reason code if refused."""
        f = topic_filter.encode() if isinstance(topic_filter, str) else topic_filter
        if not _t.filter_ok(f, 0, len(f)):
            raise _error(_E_INVALID_FILTER, topic_filter, 0x8F)
        # Subscription Identifier: the user's, or one we chose to route each copy of a
        # message that overlapping subscriptions match: one no other filter's
        # subscription uses (the user's own included), so a message is routed to its
        # filter's callback only.
        while True:
            sid = self._last_sid = self._last_sid + 1 if self._last_sid < 268435455 else 1
            for x in self._subs:
                if x[_SUB_SID] == sid and x[_SUB_FILTER] != topic_filter:
                    break
            else:
                break
        given = properties.get(_PROP_SUBSCRIPTION_IDENTIFIER) if properties else None
        if given is not None:
            sid = given if isinstance(given, int) else given[0]
        fb = bytes(f)
        skip = _t.share_prefix_len(fb)
        sub = (topic_filter, fb, skip if skip > 0 else 0, callback,
               _c.sub_options(qos, no_local, retain_as_published, retain_handling),
               properties, given is None, sid)
        # Registered before SUBSCRIBE leaves (in place of the filter's old one): a
        # retained message may come right behind the SUBACK, in the same read.
        old = []  # type: list
        subs = []  # type: list
        for x in self._subs:
            (old if x[_SUB_FILTER] == topic_filter else subs).append(x)
        subs.append(sub)
        self._subs = subs
        try:
            return await self._subscribe_one(sub)
        except BaseException:
            _cold_paths().subscribe_failed(self, sub, old)
            raise

    async def _subscribe_one(self, sub):
        if not self._connected:
            raise _error(_E_NOT_CONNECTED)
        waiter = Delivery()
        props = sub[_SUB_PROPS]
        s = self._session
        if sub[_SUB_AUTO_SID] and s.limits.subscription_identifiers_available:
            props = dict(props) if props else {}
            props[_PROP_SUBSCRIPTION_IDENTIFIER] = sub[_SUB_SID]
        await self._wait_room()
        if not self._connected:
            raise _error(_E_NOT_CONNECTED)
        pid = s.subscribe([(sub[_SUB_FILTER], sub[_SUB_OPTIONS])], props, waiter)
        _note(_N_SUBSCRIBE, sub[_SUB_FILTER], pid)
        self._put()
        await waiter.wait()  # raises the error that failed it
        codes = waiter.reason_code  # the SUBACK's
        rc = codes[0]
        if rc >= 0x80:
            raise _error(_E_SUBSCRIBE_REFUSED, sub[_SUB_FILTER], rc, codes)
        return rc

    def unsubscribe(self, topic_filter, properties=None):
        # type: (str, Optional[dict]) -> Awaitable[int]
        """Unsubscribe; returns the UNSUBACK reason code (0 or 0x11). (An awaitable:
        _cold's coroutine.)"""
        return _cold_paths().unsubscribe(self, topic_filter, properties)

    def messages(self, maxsize=64):
        """An async iterator of messages no callback took (detached copies)."""
        return _cold_paths().messages(self, maxsize)

    # ``async for m in client``: as over messages() (one function object for both).
    __aiter__ = messages

    def __anext__(self):
        return _cold_paths().next_message(self)

    # ------------------------------------------------------- disconnect --

    async def disconnect(self, reason_code=0, properties=None):
        """Send DISCONNECT and close. Unacknowledged messages stay in the
        session for a later ``connect`` (their waiters fail now)."""
        self._closing = True
        t = self._transport
        if self._connected and t is not None:
            try:
                # Not behind a write stuck on a dead link: a goodbye is not worth a hang.
                await asyncio.wait_for(self._wait_room(), 2)
                if self._held is None:
                    self._session.disconnect(reason_code, properties)
                    _note(_N_DISCONNECT, reason_code)
                    if not self._put():
                        await asyncio.wait_for(self._wait_room(), 2)
            except Exception as e:
                _note(_N_DISCONNECT_NOT_SENT, e)
        self._connected = False
        if self._supervisor is not None and self._supervisor is not True:
            # Stopped with the I/O tasks, all cancelled at once: a supervisor in the
            # middle of a reconnect starts no new ones.
            self._tasks.append(self._supervisor)
        self._supervisor = None
        await self._stop_tasks()
        if t is not None:
            try:
                await t.close()
            except Exception:
                pass
        # (the error is made for the first waiter it fails: none in the everyday case)
        err = self._fail_waiters(None, self._session.connection_lost())
        self._fail_waiters(err, None)
        if self._room is not None:
            self._room.set()
        if self._queue is not None:
            self._queue_event.set()
        await self._emit(Disconnected(reason_code, None, False))

    async def _stop_tasks(self):
        try:
            cur = asyncio.current_task()
        except Exception:  # (none running: MicroPython raises)
            cur = None
        for task in self._tasks:
            if task is not cur:
                task.cancel()
        for task in self._tasks:
            if task is not cur:
                try:
                    await task
                except BaseException:
                    pass
        self._tasks = []
        self._writer = None
        self._drop_writes()

    def _fail_waiters(self, error, waiting):
        """Fail with ``error`` the SUBACK/UNSUBACK waiters ``waiting`` (``{pid: waiter}``, as
        ``Session.connection_lost`` returns them) or else everything waiting on the
        server: in-flight and queued publishes (the queue is emptied), SUBACK/UNSUBACK
        waiters, a re-authentication. ``error`` None: "client disconnected", made if a
        waiter is failed. Returns the error (None if none was needed)."""
        if waiting is None:
            if self._reauth is not None:
                self._reauth.set()
            waiting = self._session.drop_waiting()
        else:
            waiting = waiting.values()
        for w in waiting:
            if w is not None and not w.done():
                if error is None:
                    error = _error(_E_CLIENT_DISCONNECTED)
                w._done(0, None, error)
        return error

    # --------------------------------------------------------- I/O tasks --

    async def _read_loop(self, t):
        """Handle what is buffered, then read more; forever: one coroutine for the
        connection's life, not one per read (under MicroPython a coroutine's frame is
        allocated at each call). Packets that came in the same read
        as CONNACK (a resumed session's queued messages) are already buffered: they are
        handled before the first read."""
        s = self._session
        rd = s.reader
        # The transport's (``t``'s) read_raw costs no coroutine of ours per read (see
        # transport.py).
        raw = hasattr(t, "read_raw")
        try:
            while True:
                if self._held is not None:
                    await self._wait_room()  # the acks this poll may encode need out
                # (this poll answers the last message: nothing to log)
                acking = s.owes_ack() if _log_fn is not None else False
                ev = s.poll(ticks_ms())  # (a ProtocolError: the goodbye is written below)
                if _log_fn is not None and ev != _EV_NONE and not acking:
                    _cold_paths().log_incoming(s)
                if s.out_len or s.out_tail is not None:
                    # Acks are batched while more packets wait in the buffer, so the
                    # acks of one read leave in one write, in order [MQTT-4.6.0-2].
                    if not self._batch_out() or rd.start == rd.end:
                        self._put()
                if ev == _EV_NONE:
                    if self._batch_len:
                        self._put()
                    if raw:
                        n = await t.read_raw(rd.free())
                    else:
                        n = await t.readinto(rd.free())
                    if n is None:
                        continue  # (read_raw: nothing whole yet)
                    if not n:
                        raise _error(_E_CLOSED_BY_SERVER)
                    rd.wrote(n)
                    continue
                if ev == _EV_CONTINUE:
                    continue
                if ev == _EV_MESSAGE:
                    coros = self._dispatch()
                    if coros is not None:
                        # One task runs the message's coroutine callbacks; past
                        # receive_maximum of them running, reading waits (see _cold).
                        await _cold_paths().start_callbacks(self, coros)
                elif ev == _EV_PUBLISH_DONE or ev == _EV_PUBLISH_FAILED:
                    tok = s.ev_token
                    if tok is not None:
                        if ev == _EV_PUBLISH_FAILED:
                            tok._done(s.ev_pid, s.ev_rc,
                                      _error(_E_PUBLISH_REFUSED, None, s.ev_rc, s.ev_pid))
                        else:
                            tok._done(s.ev_pid, s.ev_rc, None)
                        tok._freed = True
                    self._room.set()  # the window may be open
                    if s.queued():
                        await self._pump()
                elif ev == _EV_SUBACK or ev == _EV_UNSUBACK:
                    w = s.ev_token
                    if w is not None:
                        w._done(s.ev_pid, s.ev_codes, None)  # what its wait() returns
                elif ev == _EV_AUTH:  # re-authentication (its answer written)
                    from . import _rare

                    await _rare.step(self)
                elif ev == _EV_DISCONNECT:
                    raise _cold_paths().server_disconnect(self)
        except Exception as e:  # (not CancelledError: a BaseException)
            try:
                if isinstance(e, _errors().ProtocolError):
                    _cold_paths().goodbye(self, e)  # the acks, then the DISCONNECT
                elif not isinstance(e, _errors().MqttError) and hasattr(t, "name_error"):
                    e = t.name_error(e)
            except MemoryError:
                pass  # (no goodbye, the error as it was)
            while not self._link_failed(e):
                await sleep_ms(500)

    def _link_failed(self, e):
        """The end of an I/O task: the link failed (``e``), reconnecting starts (see
        _cold). False when there is no heap to load that now: the task tries again
        shortly (allocating nothing meanwhile), as a reconnect attempt would; a task
        that died here left every waiter waiting for good. Meanwhile the link counts as
        lost (publish() queues) and a SUBSCRIBE awaiting its ack fails with ``e``: with
        the heap full, nothing else would ever wake it."""
        try:
            _cold_paths().link_failed(self, e)
            return True
        except MemoryError:
            if self._connected:
                self._connected = False
                try:
                    self._fail_waiters(e, self._session.connection_lost())
                except MemoryError:
                    pass
                self._drop_writes()
            return False

    def _dispatch(self):
        """Hand the message read to its callbacks; returns the coroutines they returned
        (a list), or None."""
        s = self._session
        msg = self._msg
        msg._bind(s)
        taken = False
        routed = False
        coros = None
        m = s.msg
        if m.prop_end > m.prop_start:
            # Route by Subscription Identifier: with overlapping subscriptions the
            # server sends one copy per subscription, each naming its own.
            c = _CURSOR.reset(m.buf, m.prop_start, m.prop_end)
            while True:
                pid = c.next()
                if not pid:
                    break
                if pid == _PROP_SUBSCRIPTION_IDENTIFIER:
                    for sub in self._subs:
                        # (a user may give one identifier to several filters)
                        fb = sub[_SUB_BYTES]
                        if sub[_SUB_SID] == c.value and _t.matches(
                                fb, sub[_SUB_START], len(fb), s.topic_buf, s.topic_start,
                                s.topic_end):
                            routed = True
                            if sub[_SUB_CALLBACK] is not None:
                                taken = True
                                coros = self._call(sub[_SUB_CALLBACK], msg, coros)
        if not routed:
            for sub in self._subs:
                fb = sub[_SUB_BYTES]
                if sub[_SUB_CALLBACK] is not None and _t.matches(
                        fb, sub[_SUB_START], len(fb), s.topic_buf, s.topic_start, s.topic_end):
                    taken = True
                    coros = self._call(sub[_SUB_CALLBACK], msg, coros)
        if not taken:
            for cb in self._message_cbs:
                coros = self._call(cb, msg, coros)
            # The iterator, like on_message, gets what no subscription callback took.
            if self._queue is not None:
                _cold_paths().queue_message(self, msg)
        return coros

    def _call(self, callback, msg, coros):
        """Run a message callback. A plain function runs now, on the message as it
        sits in the receive buffer. A coroutine function runs as a task (see
        ``_client_extras.start_callbacks``) on a detached message, so it may await
        anything, including a QoS 1/2 ``publish`` whose acknowledgement this reader has
        yet to read: its coroutine joins ``coros`` (a list made for the first), returned."""
        try:
            r = callback(msg)
        except Exception as e:  # a user callback must not kill the client
            _note(_N_CALLBACK_RAISED, e)
            return coros
        if is_awaitable(r):
            if coros is None:
                msg._detach()  # the coroutine holds this object: later messages get another
                self._msg = _s.Message()
                coros = []
            coros.append(r)
        return coros

    async def _timer_loop(self):
        """Keep-alive: PINGREQ when due, and a dead link found within 1.5x keep-alive
        whatever the writer does -- a write that waits that long for room in the
        kernel's buffer counts as a dead link too (no PINGREQ can pass it)."""
        s = self._session
        try:
            while True:
                now = ticks_ms()
                ka = s.keep_alive_ms
                held = self._held
                if held is not None and ka:
                    limit = ka + ka // 2
                    left = limit - ticks_diff(now, held[3])
                    if left <= 0:
                        raise _error(_E_WRITE_STALLED, limit)
                    await sleep_ms(left)
                    continue
                wait = s.next_timeout(now)
                if wait < 0:
                    return  # no keep-alive (held write or not): nothing to time here
                if wait > 0:
                    await sleep_ms(wait)
                    continue
                s.on_timer(now)  # may raise MqttTimeout
                if s.out_len or s.out_tail is not None:
                    _note(_N_PINGREQ)
                    self._put()
        except Exception as e:  # (not CancelledError: a BaseException)
            while not self._link_failed(e):
                await sleep_ms(500)


async def _raise(error):
    raise error
