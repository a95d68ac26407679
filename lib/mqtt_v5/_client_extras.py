"""The client's API extras, loaded on first use through ``_cold`` (``_cold.X`` finds them
by its module ``__getattr__``): ``status()`` / ``repr()``, ``unsubscribe``, the
``messages()`` iterator, the runner of coroutine callbacks, and the debug log's hooks;
and the rare outcomes a lost link does not meet: a transport given rather than a URL,
a refused CONNACK, a failed subscribe. Apart from ``_cold`` so that a device whose link
was lost (which loads ``_cold`` to reconnect) does not hold them too."""

import asyncio

from . import properties as _p
from ._cold import error, log
from ._compat import is_awaitable
from .errors import ConnectRefused, NetworkError, PublishFailed, SubscribeFailed


def set_debug(enabled=True, log=None):
    """Turn debug logging on or off at run time. ``log`` is any callable
    taking one str (default ``print``). Costs one ``if`` per packet when off."""
    from . import client

    client._log_fn = (log or print) if enabled else None


def note(n, values):
    """client.py's debug line ``n`` with its values (the text: ``_rare.NOTES``)."""
    from . import _rare  # (debugging only: an import per line is no concern)

    _rare.note(n, values)


def status(self):
    """MqttClient.status (see there)."""
    s = self._session
    if self._connected:
        state = "connected"
    elif self._gave_up is not None:
        state = "gave up"
    elif self._supervisor is not None and not self._closing:
        state = "reconnecting"
    else:
        state = "disconnected"
    return {"state": state, "client_id": s.client_id,
            "server": self._target if isinstance(self._target, str) else None,
            "in_flight": s.inflight(), "queued": s.queued(),
            "subscriptions": len(self._subs), "limits": s.limits}


def client_repr(self):
    st = status(self)
    return "<MqttClient %r %s %s in_flight=%d queued=%d>" % (
        st["client_id"], st["state"], st["server"] or "", st["in_flight"], st["queued"])


def event_repr(ev):
    """repr() of a Connected / Disconnected / Reconnecting event."""
    from .client import Connected, Reconnecting

    if isinstance(ev, Connected):
        return "Connected(session_present=%r)" % ev.session_present
    if isinstance(ev, Reconnecting):
        return "Reconnecting(attempt=%d, delay=%.2f)" % (ev.attempt, ev.delay)
    return "Disconnected(reason_code=%r, reason_string=%r, by_server=%r, error=%r)" % (
        ev.reason_code, ev.reason_string, ev.by_server, ev.error)


async def unsubscribe(self, topic_filter, properties):
    """MqttClient.unsubscribe (see there)."""
    from .client import Delivery

    self._subs = [x for x in self._subs if x[0] != topic_filter]  # (x[0]: the filter)
    if not self._connected:
        raise NetworkError("not connected")
    waiter = Delivery()
    await self._wait_room()
    if not self._connected:
        raise NetworkError("not connected")
    self._session.unsubscribe([topic_filter], properties, waiter)
    self._put()
    await waiter.wait()  # raises the error that failed it
    codes = waiter.reason_code  # the UNSUBACK's
    rc = codes[0]
    if rc >= 0x80:
        raise SubscribeFailed("unsubscribe from %r refused" % (topic_filter,), rc, codes)
    return rc


def messages(self, maxsize):
    """MqttClient.messages (see there): the queue it reads, made on first use."""
    if self._queue is None:
        self._queue = []
        self._queue_max = maxsize
        self._queue_event = asyncio.Event()
    return self


async def next_message(self):
    """MqttClient.__anext__ (the messages() iterator)."""
    while not self._queue:
        if (self._closing or self._gave_up is not None) and self._supervisor is None:
            raise StopAsyncIteration
        self._queue_event.clear()
        await self._queue_event.wait()
    return self._queue.pop(0)


def queue_message(self, msg):
    """A message no callback took, for the messages() iterator."""
    if len(self._queue) >= self._queue_max:
        log("message queue full: oldest message dropped")
        self._queue.pop(0)
    self._queue.append(msg.copy())
    self._queue_event.set()


def log_incoming(s):
    """Log the packet the session just handled (debug only; see ``_rare``)."""
    from . import _rare

    _rare.log_incoming(s)


def log_packet(buf, n):
    """Log the packet the client is about to write (debug only; see ``_rare``)."""
    from . import _rare

    _rare.log_packet(buf, n)


async def start_callbacks(self, coros):
    """One task runs the message's coroutine callbacks (``coros``), one after the other, and
    only then acknowledges a QoS 1/2 message: the server's in-flight window
    (our Receive Maximum) bounds how many run at once. QoS 0 messages have no
    window, and a server may ignore ours: past ``receive_maximum`` running, the
    reader waits here until one ends (TCP pushes back). The running tasks
    (``_cb_tasks``: CPython keeps only weak refs to tasks) and the Event one ending
    sets (``_cb_done``) are made on first use."""
    tasks = getattr(self, "_cb_tasks", None)
    if tasks is None:
        tasks = self._cb_tasks = set()
        self._cb_done = asyncio.Event()
    key = self._session.defer_ack()
    tasks.add(asyncio.create_task(run_callbacks(self, coros, key, self._link_no)))
    while len(tasks) >= self.options.receive_maximum:
        self._cb_done.clear()
        await self._cb_done.wait()


async def run_callbacks(self, coros, key, link_no):
    try:
        for coro in coros:
            try:
                await coro
            except Exception as e:  # a user callback must not kill the client
                log("message callback raised %r" % (e,))
        if key and link_no == self._link_no and self._connected:
            await self._wait_room()
            if link_no == self._link_no and self._connected:
                self._session.ack(key)
                self._put()
    except Exception as e:
        log("acknowledgement after a callback not sent: %r" % (e,))
    finally:
        self._cb_tasks.discard(asyncio.current_task())
        self._cb_done.set()


async def open_given(self, t):
    """MqttClient._handshake's transport when the target is not a URL: the transport
    given (once: it cannot be reopened), or what the async callable given returns."""
    if hasattr(t, "readinto"):
        if self._link_no:
            raise error(2, None, None, None)  # _E_TRANSPORT_CLOSED
        return t
    t = t()
    if is_awaitable(t):
        t = await t
    return t


def subscribe_failed(self, sub, old):
    """MqttClient.subscribe failed: its subscription ``sub`` goes, the ones it replaced
    (``old``: the same filter's) come back."""
    subs = self._subs
    if sub in subs:
        subs.remove(sub)
    self._subs = subs + old


def refused_or_orphans(s):
    """A CONNACK with a reason code >= 0x80: raise its ConnectRefused. Otherwise QoS 2
    messages the server forgot after PUBREC (its session is gone) fail."""
    props = s.ev_props
    if s.ev_rc >= 0x80:
        reason = props.get(_p.PROP_REASON_STRING) if props else None
        e = ConnectRefused("connection refused%s" % (": " + reason if reason else ""), s.ev_rc)
        e.server_reference = props.get(_p.PROP_SERVER_REFERENCE) if props else None
        raise e
    o = s.ev_orphans
    s.ev_orphans = []
    for pid, tok in o:
        tok._done(pid, None, PublishFailed(
            "the server lost the session after PUBREC: QoS 2 delivery unconfirmed",
            None, pid))
