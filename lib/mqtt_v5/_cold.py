"""MqttClient's cold paths, imported on first use: a device that connects, publishes,
receives and disconnects never loads this module (host_tests/test_unix_lazy.py checks
it on the unix port). Here: what a lost link needs -- the reconnect supervisor's work
(backoff, redirection, giving up), a failed write.
The error texts are in ``_clienterr`` (unloaded after use), the debug lines' in ``_rare``:
neither is heap while a lost link's TLS handshake runs again. The client keeps
one-line hooks (see client.py). The API extras (``status()`` / ``repr()``,
``unsubscribe``, the ``messages()`` iterator, coroutine callbacks, the debug log's
hooks) and the rare outcomes a lost link does not meet (a transport given rather than
a URL, a refused CONNACK, a failed subscribe) are in ``_client_extras``, handed out as
this module's own names (see ``__getattr__`` below): a device that reconnected holds
this module, not those.
``_rare`` holds enhanced AUTH, redirection and the debug log's text."""

import asyncio

from . import properties as _p
from ._compat import const, heap_collect, random_ms, sleep_ms, ticks_diff, ticks_ms
from .errors import (
    ConnectRefused,
    MqttError,
    NetworkError,
    ProtocolError,
)

if 0:  # (the type checker's alone: MicroPython compiles no code for it)
    from typing import Any  # noqa: F401 (type comments)

# CONNACK codes that retrying cannot fix: stop instead of hammering the server.
# (0x95 packet too large, 0x99 payload format, 0x9A retain, 0x9B QoS: our CONNECT or
# its Will asks what the server refuses, and will ask it again.)
_PERMANENT_REFUSALS = b"\x84\x85\x86\x87\x8a\x8c\x95\x99\x9a\x9b"

# mbedTLS' input buffer under MicroPython's configuration (extmod/mbedtls: 16 KiB of
# record content and 333 B of record overhead; plus the 8 B header of MicroPython's
# tracked allocations), the one block of 16 KiB a TLS session needs
_TLS_IN_BUFFER = const(16725)

# This module's debug lines, by number: their texts are in _rare.NOTES, after client.py's
# (no text in RAM unless debugging).
_N_SERVER_DISCONNECT = const(11)
_N_LOST = const(12)
_N_REFUSED_FOR_GOOD = const(13)
_N_ATTEMPT_FAILED = const(14)
_N_RESUBSCRIBE_FAILED = const(15)
_N_PROTOCOL_ERROR = const(16)


def log(msg):
    """A debug line (``set_debug``), if debugging is on."""
    from . import client

    f = client._log_fn
    if f is not None:
        f("mqtt_v5: " + msg)


def _note(n, *values):
    """Debug line ``n`` (``_rare.NOTES``) with its values, if debugging is on."""
    from . import client

    if client._log_fn is not None:
        from . import _rare

        _rare.note(n, values)


def error(n, value, rc, more):
    """client.py's error ``n`` (its text in ``_clienterr``, loaded for it)."""
    from ._clienterr import error

    return error(n, value, rc, more)


async def close_quietly(transport):
    if transport is None:
        return
    try:
        await transport.close()
    except Exception:
        pass


async def connect_failed(self, e, limit):
    """A connect attempt (MqttClient._connect_once) failed with ``e``, within
    ``limit`` s: after a protocol error the goodbye is written, the transport closed;
    a timeout raises MqttTimeout, anything else ``e`` (the caller re-raises it)."""
    if isinstance(e, ProtocolError):
        goodbye(self, e)
    await close_quietly(self._transport)  # the one this attempt opened, if any
    if isinstance(e, asyncio.TimeoutError):
        self._session.connection_lost()
        self._drop_writes()
        raise error(1, limit, None, None)  # _E_CONNECT_TIMEOUT


def server_disconnect(self):
    """The server's DISCONNECT (the session's ``ev_rc`` / ``ev_props``): returns the
    NetworkError the reader raises, which keeps them for the supervisor's Disconnected
    event (``server``)."""
    s = self._session
    reason = s.ev_props.get(_p.PROP_REASON_STRING) if s.ev_props else None
    _note(_N_SERVER_DISCONNECT, s.ev_rc, reason or "")
    e = NetworkError("server disconnected: %s" % (reason or "reason code"), s.ev_rc)
    e.server = (s.ev_rc, reason, s.ev_props)  # type: ignore[attr-defined]
    return e


def delay(cfg, attempt):
    """ReconnectConfig.delay (see there)."""
    d = cfg.initial_delay
    for _ in range(attempt - 1):
        d *= 2
        if d >= cfg.max_delay:
            d = cfg.max_delay
            break
    if cfg.jitter:
        d += d * cfg.jitter * random_ms(1000) / 1000
    return d


def hold_tls_heap(self, hold):
    """While reconnecting, keep the block the lost TLS session's input buffer had (``hold``),
    or let it go.

    Where mbedTLS allocates from MicroPython's heap (``_Stream.tls_heap``: the unix port,
    rp2, stm32; not ESP32), a session needs one free block for its input buffer, 16 KiB of
    records and their overhead. Closing the lost session frees one; left free through the
    backoff, what reconnecting and the application allocate meanwhile lands in it, and the
    next session may find no such block while tens of KB are free: every attempt then
    fails. A bytearray of that size takes it at once (first fit: that block, or a lower one
    as good), and ``_Stream.start`` lets it go just before the next session is made."""
    m = __import__("sys").modules.get("mqtt_v5._compat_micropython")
    cls = getattr(m, "_Stream", 0)  # type: Any
    if not cls:  # (CPython, or no connection made yet)
        return
    if not hold or cls.tls_heap < _TLS_IN_BUFFER:
        cls.tls_room = None
    elif cls.tls_room is None:
        try:
            cls.tls_room = bytearray(_TLS_IN_BUFFER)
        except MemoryError:  # (no such block now: as without it)
            pass


async def supervise(self):
    """The supervisor, a task ``link_failed`` starts (``self._lost``: the error): reconnect
    with backoff, until connected again (a link lost again meanwhile, as it re-subscribed:
    again), the client closes or gives up. No task waits for a loss while the link is up.
    Meanwhile it holds the heap of the TLS session lost (see ``hold_tls_heap``)."""
    try:
        await _supervise(self)
    finally:
        hold_tls_heap(self, False)


async def _supervise(self):
    from .client import Disconnected, Reconnecting

    rc_cfg = self.options.reconnect_config
    while not self._closing:
        if self._lost is False:  # connected again, and still up
            self._supervisor = True  # (the next loss starts a supervisor again)
            return
        error = self._lost
        self._connected = False
        await self._stop_tasks()
        self._fail_waiters(NetworkError("connection lost"), self._session.connection_lost())
        by_server = isinstance(error, NetworkError) and error.reason_code is not None
        reason = getattr(error, "server", None) or (None, None, None)  # (server_disconnect)
        _note(_N_LOST, error)
        code = reason[0] if by_server else getattr(error, "reason_code", None)
        ref = reason[2].get(_p.PROP_SERVER_REFERENCE) if by_server and reason[2] else None
        await self._emit(Disconnected(code, reason[1], by_server, error, ref))
        redirect(self, code, ref)
        # Closed after telling: a close may wait (bounded) to flush a stalled link.
        await close_quietly(self._transport)
        heap_collect()
        hold_tls_heap(self, True)  # (before anything else takes a piece of it)
        self._room.set()
        if not rc_cfg.enabled:
            give_up(self, NetworkError("connection lost and reconnect is disabled"))
            return
        # A link that keeps dying right after it came up (e.g. two devices with one
        # client id taking the session from each other) must not be retried at the
        # initial delay forever: the backoff is only reset by a connection that
        # outlived max_delay.
        # (_short_links: connections in a row that died young)
        streak = getattr(self, "_short_links", 0)
        if ticks_diff(ticks_ms(), self._up_since) < rc_cfg.max_delay * 1000:
            self._short_links = streak + 1
        else:
            streak = self._short_links = 0
        attempt = 0
        while not self._closing:
            attempt += 1
            if rc_cfg.max_attempts is not None and attempt > rc_cfg.max_attempts:
                give_up(self, NetworkError("gave up after %d reconnect attempts"
                                           % rc_cfg.max_attempts))
                return
            d = rc_cfg.delay(attempt + streak)
            await self._emit(Reconnecting(attempt, d))
            await sleep_ms(int(d * 1000))
            if self._closing:
                return
            try:
                event = await self._connect_once()
            except ConnectRefused as e:
                if redirect(self, e.reason_code, e.server_reference):
                    continue
                self._target = self._home  # a redirection (0x9C) lasts one attempt
                if e.reason_code in _PERMANENT_REFUSALS:
                    _note(_N_REFUSED_FOR_GOOD, e)
                    give_up(self, e)
                    await self._emit(Disconnected(e.reason_code, str(e), True, e))
                    return
                continue
            except (MqttError, OSError, MemoryError) as e:  # (no heap now: maybe later)
                hold_tls_heap(self, True)  # (the failed attempt's session is closed)
                _note(_N_ATTEMPT_FAILED, attempt, e)
                self._target = self._home
                continue
            await self._after_connect(event)
            break


async def resubscribe(self):
    """After a connection whose server kept no session: subscribe again ourselves."""
    for sub in list(self._subs):
        try:
            await self._subscribe_one(sub)
        except MqttError as e:
            _note(_N_RESUBSCRIBE_FAILED, sub[0], e)  # (sub[0]: the filter)


def link_failed(self, e):
    """The I/O tasks' hook (and write_failed's): the first failure of this link (``e``) starts the
    supervisor (unless one runs: it sees the loss when its reconnect is done, or the
    client is closing); publish() queues from now on (the session is disconnected) and
    nobody waits for room behind a write on a dead link."""
    if self._lost is False:
        self._lost = e
        if self._supervisor is True and not self._closing:
            self._supervisor = asyncio.create_task(supervise(self))
        if self._reauth is not None:
            self._reauth.set()
        self._connected = False
        # A SUBACK will not come: release its waiter now (the supervisor may be the
        # one waiting, re-subscribing in _after_connect).
        self._fail_waiters(NetworkError("connection lost"),  # (_E_CONNECTION_LOST's)
                           self._session.connection_lost())
        self._drop_writes()  # (sets _room: publish() queues from now on)


def write_failed(self, e):
    """A write failed: the link is gone. Returns the NetworkError to raise."""
    self._session.flushed(ticks_ms())
    link_failed(self, e)
    if isinstance(e, NetworkError):
        return e
    return NetworkError("write failed: %r" % (e,))


def redirect(self, rc, reference):
    """Follow a Server Reference (0x9C use another server, 0x9D server moved) when the
    options say so (see ``_rare.follow``); True if the next connection goes elsewhere."""
    if self.options.follow_redirects and (rc == 0x9C or rc == 0x9D):
        from . import _rare

        return _rare.follow(self, rc, reference)
    return False


def give_up(self, error):
    """Reconnecting stopped: what waits fails with ``error``, the offline queue
    is emptied, and publish() raises it at once until connect() is called."""
    self._gave_up = error
    self._fail_waiters(error, None)
    self._supervisor = None
    self._room.set()
    if self._queue is not None:
        self._queue_event.set()


def goodbye(self, e):
    """The server broke the protocol (ProtocolError ``e``): write what the session
    queued (the acks before, then its DISCONNECT), if the link takes it."""
    _note(_N_PROTOCOL_ERROR, e)
    try:
        self._put()
    except Exception:
        pass


def __getattr__(name):
    # The client's API extras (_client_extras) are reached as _cold's own: loaded when
    # first asked for, then found here by plain lookup.
    if name[0] == "_":
        raise AttributeError(name)
    from . import _client_extras

    value = getattr(_client_extras, name)
    globals()[name] = value
    return value
