"""AWS IoT Device Shadow (classic and named) over MQTT.

    from mqtt_v5.aws.shadow import Shadow
    shadow = Shadow(client, "weather-sensor-001")          # name="config" for a named shadow
    doc = await shadow.get()                               # AwsRejected(code=404) if none
    await shadow.update(reported={"temperature": 21.5})
    await shadow.on_delta(apply)                           # apply(state, version) -> reported

Topic layout and documents: aws-iot-spec section 3. The pure functions
(``shadow_topic``, ``match_shadow_topic``, ``update_request``) do no I/O; ``Shadow``
does the I/O through the client's ``subscribe`` / ``publish_qos1``:

- every request carries a ``clientToken``; its answer (``/accepted`` or ``/rejected``,
  whichever comes) is matched by it, with a timeout (a lost answer never parks the
  caller); ``/rejected`` raises ``AwsRejected`` with AWS's code (400, 404, 409 version
  conflict, 413, 429...) and message;
- an operation's ``/accepted`` and ``/rejected`` are subscribed before its first
  request (AWS publishes answers once, to subscribers only); after a reconnect that
  lost the session the client subscribes them again itself;
- ``on_delta``: the callback gets only the changed desired state and its version, in
  version order (older or repeated deltas are dropped: ``/update/accepted`` and
  ``/update/delta`` may arrive in either order); what it returns is reported back in
  the same step. After a reconnect without a session the shadow is fetched again and
  a delta missed while offline is applied.
"""

import asyncio
import json
import random

from mqtt_v5._compat import const
from mqtt_v5.aws import AwsRejected, _bounded, _Request, _send_wait, _spawn
from mqtt_v5.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Optional, Union  # noqa: F401

# Suffixes AWS answers on (embedded-C Shadow_MatchTopicString's list).
_ANSWERS = ("/get/accepted", "/get/rejected", "/update/accepted", "/update/rejected",
            "/update/delta", "/update/documents", "/delete/accepted", "/delete/rejected")
_MAX_THING_NAME = const(128)
_MAX_SHADOW_NAME = const(64)


def shadow_prefix(thing, name=None):
    """``$aws/things/<thing>/shadow`` or ``.../shadow/name/<name>`` (a named shadow)."""
    if not thing or len(thing) > _MAX_THING_NAME or "/" in thing or "+" in thing or "#" in thing:
        raise UsageError("invalid thing name %r (1..128 of [a-zA-Z0-9:_-])" % (thing,))
    if name is None:
        return "$aws/things/%s/shadow" % thing
    if not name or len(name) > _MAX_SHADOW_NAME or "/" in name or "+" in name or "#" in name:
        raise UsageError("invalid shadow name %r (1..64 of [a-zA-Z0-9:_-])" % (name,))
    return "$aws/things/%s/shadow/name/%s" % (thing, name)


def shadow_topic(thing, op, name=None):
    # type: (str, str, Optional[str]) -> str
    """The topic of ``op``: "get", "update", "delete", or an answer such as
    "update/accepted", "update/delta", "get/rejected"."""
    return shadow_prefix(thing, name) + "/" + op


def match_shadow_topic(topic):
    # type: (str) -> Optional[tuple]
    """``(thing, shadow name or None, answer)`` for a Shadow answer topic, e.g.
    ``("t1", None, "update/delta")``; None for any other topic."""
    if not topic.startswith("$aws/things/"):
        return None
    i = topic.find("/", 12)
    if i < 0:
        return None
    thing = topic[12:i]
    rest = topic[i:]
    name = None
    if rest.startswith("/shadow/name/"):
        j = rest.find("/", 13)
        if j < 0:
            return None
        name = rest[13:j]
        rest = rest[j:]
        if not name:
            return None
    elif rest.startswith("/shadow/"):
        rest = rest[7:]
    else:
        return None
    if not thing or rest not in _ANSWERS:
        return None
    return thing, name, rest[1:]


def update_request(reported=None, desired=None, version=None, client_token=None, state=None):
    # type: (Optional[dict], Optional[dict], Optional[int], Optional[str], Optional[dict]) -> bytes
    """The ``/update`` payload (bytes). ``state`` overrides ``reported``/``desired``
    (e.g. ``{"desired": None}`` to clear the desired section). ``version``: update only
    if the shadow still has that version (409 otherwise)."""
    if state is None:
        state = {}
        if reported is not None:
            state["reported"] = reported
        if desired is not None:
            state["desired"] = desired
        if not state:
            raise UsageError("a shadow update needs reported and/or desired state")
    body = {"state": state}  # type: dict
    if version is not None:
        body["version"] = version
    if client_token is not None:
        body["clientToken"] = client_token
    return json.dumps(body).encode()


class Shadow:
    """One shadow of a thing (``name=None``: the classic shadow). ``timeout_s`` bounds
    each request. ``version`` is the last version seen in an answer."""

    def __init__(self, client, thing=None, name=None, timeout_s=10.0):
        if thing is None:
            thing = getattr(client, "thing_name", None) or client.options.client_id
        self.client = client
        self.thing = thing
        self.name = name
        self.prefix = shadow_prefix(thing, name)
        self.timeout_s = timeout_s
        self.version = None
        self._pending = {}
        self._subscribed = []
        self._tag = "%08x" % random.getrandbits(32)
        self._n = 0
        self._delta_cb = None  # type: Any
        self._delta_version = -1
        self._delta_state = None  # type: Any
        self._delta_lock = None  # type: Any
        self._docs_cb = None  # type: Any

    # ------------------------------------------------------------- requests --

    async def get(self):
        # type: () -> dict
        """The shadow document (``state``, ``metadata``, ``version``...); raises
        ``AwsRejected`` (code 404) when the shadow does not exist."""
        return await self._request("get", {})

    async def update(self, reported=None, desired=None, version=None, state=None):
        # type: (Optional[dict], Optional[dict], Optional[int], Optional[dict]) -> dict
        """Update ``reported`` and/or ``desired`` (a ``None`` value inside deletes that
        key); returns the ``/update/accepted`` document. With ``version``, only if the
        shadow still has that version (else ``AwsRejected``, code 409)."""
        body = update_request(reported, desired, version, None, state)
        return await self._request("update", body)

    async def delete(self):
        # type: () -> dict
        """Delete the shadow; returns ``{"version": ..., "timestamp": ...}``."""
        return await self._request("delete", {})

    async def _subscribe(self, op, cb):
        if op not in self._subscribed:
            await self.client.subscribe(self.prefix + "/" + op, cb, qos=1)
            self._subscribed.append(op)

    async def _request(self, op, body):
        # Answers first: AWS publishes them once, to whoever is subscribed then.
        for answer in ("/accepted", "/rejected"):
            if op + answer not in self._subscribed:
                await _bounded(self._subscribe(op + answer, self._on_answer), self.timeout_s,
                               "SUBACK")
        self._n += 1
        token = "%s-%d" % (self._tag, self._n)
        if isinstance(body, dict):
            body["clientToken"] = token
            payload = json.dumps(body).encode()
        else:  # update_request's bytes: add the token without parsing it again
            payload = body[:-1] + (', "clientToken": "%s"}' % token).encode()
        req = _Request()
        self._pending[token] = req
        try:
            # An answer over our Maximum Packet Size is dropped by AWS, never sent: say so.
            await _bounded(_send_wait(self.client, self.prefix + "/" + op, payload, req.event),
                           self.timeout_s, "shadow %s of %s (answers over maximum_packet_size="
                           "%d bytes are dropped by AWS)"
                           % (op, self.prefix, self.client.options.maximum_packet_size))
        finally:
            self._pending.pop(token, None)
        if req.error is not None:
            raise req.error
        return req.body

    def _on_answer(self, msg):
        topic = msg.topic
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return  # not ours to judge: a request with that token times out
        req = self._pending.get(body.get("clientToken")) if isinstance(body, dict) else None
        if req is None:
            return  # someone else's request on the same shadow
        if topic.endswith("/rejected"):
            req.error = AwsRejected("shadow " + topic[len(self.prefix) + 1:-9], body)
        else:
            v = body.get("version")
            if v is not None:
                self.version = v
            req.body = body
        req.event.set()

    # ---------------------------------------------------------------- delta --

    async def on_delta(self, handler, resync=True):
        # type: (Callable, bool) -> None
        """Call ``handler(state, version)`` with the desired state that differs from the
        reported one (only the differing keys) whenever it changes. ``handler`` may be
        a plain or an async function; it applies the change and returns what to report:
        a dict (reported as is), None (the delta is reported as given), or False (nothing
        is reported). Deltas come in version order; older or repeated ones are dropped.

        With ``resync`` (default), the shadow is fetched now and after each reconnect
        that lost the session, and a pending delta is applied: deltas published while
        the device was away are not lost."""
        self._delta_cb = handler
        self._delta_lock = asyncio.Lock()
        await self._subscribe("update/delta", self._on_delta_msg)
        if resync:
            self.client.on_connection_event(self._on_event)
            await self._resync()

    def _on_delta_msg(self, msg):
        try:
            body = json.loads(msg.payload)
            state = body["state"]
            version = body["version"]
        except (ValueError, KeyError, TypeError):
            return
        _spawn(self._apply(state, version))

    def _on_event(self, event):
        if getattr(event, "session_present", True) is False:
            _spawn(self._resync())

    async def _resync(self):
        try:
            doc = await self.get()
        except AwsRejected:
            return  # no shadow yet: nothing desired
        except Exception:
            return  # the link dropped again: the next Connected resyncs
        delta = doc.get("state", {}).get("delta")
        if delta:
            await self._apply(delta, doc.get("version", 0))

    async def _apply(self, state, version):
        async with self._delta_lock:
            if version <= self._delta_version:
                return
            self._delta_version = version
            # AWS also publishes a delta after a reported-only update that leaves a
            # difference: our own report of a partly applied delta would bring back the
            # same delta, again and again. The same difference is not handled twice.
            if state == self._delta_state:
                return
            self._delta_state = state
            r = self._delta_cb(state, version)
            if hasattr(r, "send"):  # a coroutine (MicroPython's are generators)
                r = await r
            if r is False or r == {}:
                return
            try:
                await self.update(reported=state if r is None else r)
            except Exception as e:  # the next delta or resync reports again
                print("mqtt_v5.aws.shadow: reporting the applied delta failed:", repr(e))

    # ------------------------------------------------------------ documents --

    async def on_documents(self, handler):
        # type: (Callable) -> None
        """Call ``handler(document)`` with each ``/update/documents`` message:
        ``{"previous": {...}, "current": {...}, "timestamp": ...}``."""
        self._docs_cb = handler
        await self._subscribe("update/documents", self._on_docs)

    def _on_docs(self, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        r = self._docs_cb(body)
        if hasattr(r, "send"):
            _spawn(r)
