"""A blocking MQTT 5 client for the REPL and simple scripts: ``SyncClient``.

The same sans-IO ``Session`` as ``MqttClient`` drives the protocol; this
module only moves its bytes over a ``BlockingTransport`` (or any object with
``readinto(buf, timeout_s)``, ``write(buf)`` and ``close()``) and waits. No
asyncio, no background task: keep-alive PINGREQs go out while a call waits
(``wait_msg`` included), so call ``wait_msg``/``check_msg`` at least once per
keep-alive interval when idle. Errors are those of ``mqtt_v5.errors``.

A REPL session on a board (``mpremote`` connected, Wi-Fi already up)::

    $ mpremote cp -r lib/mqtt_v5 :lib/        # once (or freeze it: boards/manifest.py)
    $ mpremote repl
    >>> from mqtt_v5.sync_client import SyncClient
    >>> c = SyncClient("esp32-repl", keep_alive=60)
    >>> c.connect("mqtt://192.168.1.10")             # or "mqtts://...", tls=TlsConfig(ca=...)
    False
    >>> c.subscribe("demo/#", qos=1)
    1
    >>> c.publish("demo/hello", b"hi", qos=1)        # returns once PUBACK arrived
    2
    >>> c.wait_msg(5)                                 # our own message, via the broker
    Message(topic='demo/hello', payload=b'hi', qos=1, retain=False)
    >>> c.check_msg()                                 # nothing waiting: returns at once
    >>> c.ping()
    >>> c.disconnect()

With TLS (``mqtts://``), pass ``tls=TlsConfig(ca="ca.der", cert=..., key=...)``
from ``mqtt_v5.tls``: without one, ``mqtts://`` verifies against the system
CA store (CPython) and fails on MicroPython, which has none.

Messages that arrive while a call waits for something else (a PUBACK, a
SUBACK, a PINGRESP) are kept, up to ``max_messages`` (the oldest is dropped
beyond), and ``wait_msg``/``check_msg`` return them first; with
``set_callback(fn)`` every message goes to ``fn(message)`` instead, as it
arrives. Messages are detached copies (they stay valid).

Nothing reconnects by itself: after a ``NetworkError`` call ``connect``
again. Unacknowledged QoS 1/2 messages then go out again (resumed session) or
as new messages (new session), and subscriptions are renewed when the server
did not keep them.
"""

from . import codec as _c
from . import properties as _p
from . import session as _s
from ._compat import ticks_diff, ticks_ms
from .errors import (
    ConnectRefused,
    MqttTimeout,
    NetworkError,
    ProtocolError,
    PublishFailed,
    SubscribeFailed,
    UsageError,
)
from .session import Message  # (MqttClient's, public here too, as Will below)
from .topic import filter_ok

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any  # noqa: F401


def __getattr__(name):
    # Will: MqttClient's (the codec's cold half has it), loaded when asked for.
    if name == "Will":
        return _c.Will
    raise AttributeError(name)


class _Op:
    """What a blocking call waits for (the session's token)."""

    def __init__(self):
        self.done = False
        self.pid = 0
        self.rc = 0
        self.codes = None  # type: Any


class SyncClient:
    """A blocking MQTT 5 client; see the module docstring.

    Keyword options (as ``ConnectOptions``): ``clean_start=True``,
    ``keep_alive=60`` (s), ``session_expiry_interval=0`` (s), ``username``,
    ``password``, ``will`` (``Will``, as MqttClient's),
    ``user_properties``, ``properties`` (extra CONNECT properties),
    ``receive_maximum=8``, ``maximum_packet_size=2048`` (the receive buffer),
    ``topic_alias_maximum=0``, ``max_inflight=4``, ``out_buffer_size=512``,
    ``connect_timeout=10`` (s), and ``timeout=30``: how long ``publish``,
    ``subscribe``, ``unsubscribe`` and ``ping`` wait for their answer before
    raising ``MqttTimeout`` (the connection stays up). ``max_messages=16``.
    """

    def __init__(self, client_id="", clean_start=True, keep_alive=60,
                 session_expiry_interval=0, username=None, password=None, will=None,
                 user_properties=None, properties=None, receive_maximum=8,
                 maximum_packet_size=2048, topic_alias_maximum=0, max_inflight=4,
                 out_buffer_size=512, connect_timeout=10, timeout=30, max_messages=16):
        self._session = _s.Session(
            client_id, max_packet_size=maximum_packet_size, out_size=out_buffer_size,
            max_inflight=max_inflight, receive_maximum=receive_maximum,
            topic_alias_maximum=topic_alias_maximum,
            connect_timeout_ms=int(connect_timeout * 1000))
        self.clean_start = clean_start
        self.keep_alive = keep_alive
        self.session_expiry_interval = session_expiry_interval
        self.username = username
        self.password = password
        self.will = will
        self.user_properties = user_properties
        self.properties = properties
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_messages = max_messages
        self._out_mv = memoryview(self._session.out)
        self._t = None  # type: Any
        self._cb = None
        self._messages = []
        self._subs = []  # [filter, options, props] to renew on a new session
        self._has_connected = False

    # ------------------------------------------------------------ state --

    @property
    def is_connected(self):
        return self._t is not None and self._session.state == _s.CONNECTED

    @property
    def limits(self):
        """The server's limits from the last CONNACK (``session.Limits``)."""
        return self._session.limits

    @property
    def client_id(self):
        return self._session.client_id

    def set_callback(self, callback):
        """Give every message to ``callback(message)`` as it arrives (None: keep
        them for ``wait_msg``/``check_msg``)."""
        self._cb = callback

    # ---------------------------------------------------------- connect --

    def connect(self, target, tls=None, timeout_s=None):
        """Connect to ``mqtt://host[:port]`` / ``mqtts://host[:port]`` (``tls``: a
        ``TlsConfig``), or over an open transport object. Returns the CONNACK's
        Session Present flag. Raises ``ConnectRefused``, ``NetworkError``,
        ``MqttTimeout``."""
        if self._t is not None:
            raise UsageError("already connected; call disconnect() first")
        s = self._session
        if isinstance(target, str):
            from .blocking_transport import BlockingTransport

            t = BlockingTransport.connect(
                target, tls=tls,
                timeout_s=self.connect_timeout if timeout_s is None else timeout_s)
        else:
            t = target
        if s.state != _s.DISCONNECTED or s.out_len or s.out_tail is not None:
            s.connection_lost()
        props = dict(self.properties) if self.properties else {}
        if self.user_properties:
            props[_p.PROP_USER_PROPERTY] = list(self.user_properties)
        # Once connected with a session that outlives the connection, resume it.
        clean = self.clean_start and not (self._has_connected and self.session_expiry_interval)
        try:
            s.connect(ticks_ms(), clean, self.keep_alive, self.username, self.password,
                      self.will, props, self.session_expiry_interval)
            self._t = t
            self._write()
            while True:
                ev = self._step(s.next_timeout(ticks_ms()))
                if ev == _s.EV_CONNACK:
                    break
        except BaseException:
            self._drop()
            raise
        if s.ev_rc >= 0x80:
            reason = s.ev_props.get(_p.PROP_REASON_STRING) if s.ev_props else None
            self._drop()
            raise ConnectRefused("connection refused%s" % (": " + reason if reason else ""),
                                 s.ev_rc)
        s.ev_orphans = []  # nobody waits on them: each call returns or raises first
        self._has_connected = True
        present = s.ev_session_present
        if not present:
            for filt, options, sprops in self._subs:
                self._subscribe(filt, options, sprops)
        self._pump()
        return present

    def disconnect(self, reason_code=0, properties=None):
        """Send DISCONNECT and close. Idempotent."""
        t = self._t
        if t is None:
            return
        try:
            if self._session.state != _s.DISCONNECTED:
                self._session.disconnect(reason_code, properties)
                self._write()
        except NetworkError:
            pass
        finally:
            self._drop()

    # ---------------------------------------------------------- publish --

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publish and, for QoS 1/2, wait for PUBACK / PUBCOMP (handling
        incoming messages meanwhile). Returns the packet id (0 for QoS 0).
        Raises ``PublishFailed`` with the server's reason code."""
        s = self._session
        self._need_connection()
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(payload, str):
            payload = payload.encode()
        op = _Op() if qos else None
        s.publish(topic, payload, qos, retain, properties, 0, op)
        if s.out_len or s.out_tail is not None:
            self._write()
        if op is None:
            return 0
        self._wait(op)
        if op.rc >= 0x80:
            raise PublishFailed("publish refused by the server", op.rc, op.pid)
        return op.pid

    # -------------------------------------------------------- subscribe --

    def subscribe(self, topic_filter, qos=0, no_local=False, retain_as_published=False,
                  retain_handling=0, properties=None):
        """Subscribe; returns the granted QoS. Raises ``SubscribeFailed``."""
        self._need_connection()
        f = topic_filter.encode() if isinstance(topic_filter, str) else topic_filter
        if not filter_ok(f, 0, len(f)):
            raise UsageError("invalid topic filter %r" % (topic_filter,), 0x8F)
        options = _c.sub_options(qos, no_local, retain_as_published, retain_handling)
        rc = self._subscribe(topic_filter, options, properties)
        self._subs = [x for x in self._subs if x[0] != topic_filter]
        self._subs.append([topic_filter, options, properties])
        return rc

    def _subscribe(self, filt, options, props):
        op = _Op()
        self._session.subscribe([(filt, options)], props, op)
        self._write()
        self._wait(op)
        if op.codes[0] >= 0x80:
            raise SubscribeFailed("subscription to %r refused" % (filt,), op.codes[0], op.codes)
        return op.codes[0]

    def unsubscribe(self, topic_filter, properties=None):
        """Unsubscribe; returns the UNSUBACK reason code (0 or 0x11)."""
        self._need_connection()
        self._subs = [x for x in self._subs if x[0] != topic_filter]
        op = _Op()
        self._session.unsubscribe([topic_filter], properties, op)
        self._write()
        self._wait(op)
        if op.codes[0] >= 0x80:
            raise SubscribeFailed("unsubscribe from %r refused" % (topic_filter,), op.codes[0],
                                  op.codes)
        return op.codes[0]

    # --------------------------------------------------------- receiving --

    def wait_msg(self, timeout_s=None):
        """The next message, waiting up to ``timeout_s`` seconds (None: until
        one comes); None if none came in time. Sends keep-alive PINGREQs while
        it waits. With a callback set, the message also went to the callback."""
        if self._messages:
            return self._messages.pop(0)
        self._need_connection()
        start = ticks_ms()
        limit = -1 if timeout_s is None else int(timeout_s * 1000)
        while True:
            left = -1 if limit < 0 else max(0, limit - ticks_diff(ticks_ms(), start))
            got = self._step(left, True)
            if isinstance(got, Message):
                return got
            if left == 0 or (limit >= 0 and ticks_diff(ticks_ms(), start) >= limit):
                return None

    def check_msg(self):
        """A message that has already arrived, or None; never waits."""
        return self.wait_msg(0)

    def ping(self, timeout_s=None):
        """Send PINGREQ and wait for PINGRESP (``MqttTimeout`` if none in time)."""
        self._need_connection()
        s = self._session
        s.ping(ticks_ms())
        self._write()
        start = ticks_ms()
        limit = int((self.timeout if timeout_s is None else timeout_s) * 1000)
        while s.ping_pending():
            left = limit - ticks_diff(ticks_ms(), start)
            if left <= 0:
                raise MqttTimeout("no PINGRESP within %d ms" % limit)
            self._step(left)

    # ------------------------------------------------------------- core --

    def _need_connection(self):
        if not self.is_connected:
            raise NetworkError("not connected")

    def _wait(self, op):
        start = ticks_ms()
        limit = int(self.timeout * 1000)
        while not op.done:
            left = limit - ticks_diff(ticks_ms(), start)
            if left <= 0:
                raise MqttTimeout("no answer from the server within %d ms" % limit)
            self._step(left)

    def _step(self, wait_ms, want_message=False):
        """Handle what is buffered, else wait up to ``wait_ms`` (-1: no limit;
        keep-alive bounds it) for bytes and handle them. Returns EV_CONNACK
        when that came, with ``want_message`` the first Message, else EV_NONE."""
        s = self._session
        t = self._t
        if t is None:
            raise NetworkError("not connected")
        got = self._handle_input(want_message)
        if got is not None:
            return got
        now = ticks_ms()
        timer = s.next_timeout(now)
        if timer == 0:
            self._on_timer()
            return _s.EV_NONE
        if timer > 0 and (wait_ms < 0 or timer < wait_ms):
            wait_ms = timer
        rd = s.reader
        try:
            n = t.readinto(rd.free(), None if wait_ms < 0 else wait_ms / 1000)
        except NetworkError:
            self._drop()
            raise
        if n is None:  # nothing in time
            if s.next_timeout(ticks_ms()) == 0:
                self._on_timer()
            return _s.EV_NONE
        if not n:
            self._drop()
            raise NetworkError("connection closed by the server")
        rd.wrote(n)
        got = self._handle_input(want_message)
        return _s.EV_NONE if got is None else got

    def _on_timer(self):
        s = self._session
        try:
            s.on_timer(ticks_ms())  # PINGREQ when due; MqttTimeout for a dead link
        except MqttTimeout:
            self._drop()
            raise
        if s.out_len or s.out_tail is not None:
            self._write()

    def _handle_input(self, want_message):
        """poll() until the buffer is used up (or a message is taken)."""
        s = self._session
        while True:
            try:
                ev = s.poll(ticks_ms())
            except ProtocolError:
                try:
                    self._write()  # the DISCONNECT the session queued
                except NetworkError:
                    pass
                self._drop()
                raise
            if s.out_len or s.out_tail is not None:
                self._write()
            if ev == _s.EV_NONE:
                return None
            if ev == _s.EV_MESSAGE:
                msg = Message()  # detached: it stays valid
                msg._bind(s)
                msg._detach()
                if self._cb is not None:
                    self._cb(msg)
                elif not want_message:
                    if len(self._messages) >= self.max_messages:
                        self._messages.pop(0)
                    self._messages.append(msg)
                if want_message:
                    # One message per call: what follows stays buffered for the next.
                    self._ack_pending()
                    return msg
            elif ev == _s.EV_PUBLISH_DONE or ev == _s.EV_PUBLISH_FAILED:
                op = s.ev_token
                if op is not None:
                    op.pid = s.ev_pid
                    op.rc = s.ev_rc
                    op.done = True
                self._pump()
            elif ev == _s.EV_SUBACK or ev == _s.EV_UNSUBACK:
                op = s.ev_token
                if op is not None:
                    op.codes = s.ev_codes
                    op.done = True
            elif ev == _s.EV_DISCONNECT:
                rc = s.ev_rc
                reason = s.ev_props.get(_p.PROP_REASON_STRING) if s.ev_props else None
                self._drop()
                raise NetworkError("server disconnected: %s" % (reason or "reason code"), rc)
            elif ev == _s.EV_CONNACK:
                return ev
            elif ev == _s.EV_AUTH:
                self._drop()
                raise ProtocolError("enhanced authentication (AUTH) is not supported here",
                                    0x8C)

    def _ack_pending(self):
        """Send the acknowledgement of the message just taken (the session
        queues it on the next poll), without handling the packets after it."""
        s = self._session
        if s.owes_ack():
            s.poll(ticks_ms())  # only acknowledges: returns EV_CONTINUE
            if s.out_len or s.out_tail is not None:
                self._write()

    def _pump(self):
        """Send resends and queued messages while the server's window allows."""
        s = self._session
        while True:
            tok = s.pump()
            if tok is None:
                return
            if tok is False:
                op = s.ev_token
                if op is not None:
                    op.rc = s.ev_rc
                    op.done = True
                continue
            self._write()

    def _write(self):
        s = self._session
        t = self._t
        try:
            if s.out_len:
                t.write(self._out_mv[:s.out_len])
            if s.out_tail is not None:
                t.write(s.out_tail)
        except NetworkError:
            s.flushed(ticks_ms())
            self._drop()
            raise
        s.flushed(ticks_ms())

    def _drop(self):
        """Forget the transport (closed); the session keeps what is unacknowledged."""
        t = self._t
        self._t = None
        s = self._session
        s.connection_lost()
        if t is not None:
            try:
                t.close()
            except Exception:
                pass
