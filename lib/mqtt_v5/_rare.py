"""MqttClient's rarely used features, imported on first use (a device that uses
none loads none of this): enhanced authentication (AUTH exchanges at connect and
re-authentication, MQTT 5 section 4.12), server redirection (Server Reference, 4.11)
and the debug log's text (``set_debug``: not even a reconnecting device needs it).
The client keeps only the hooks: ``step`` when AUTH arrives, ``reauthenticate``,
``follow`` when a CONNACK or DISCONNECT says 0x9C / 0x9D; ``_cold`` forwards the
debug lines."""

import asyncio

from . import codec as _c
from . import properties as _p
from ._compat import is_awaitable
from .errors import ConnectRefused, MqttError, MqttTimeout, NetworkError, ProtocolError, UsageError

_CONTINUE = 0x18
_REAUTHENTICATE = 0x19
# Redirections followed in a row without a connection coming up: two servers that
# send a client to each other must not keep it busy forever.
MAX_HOPS = 3


def auth_props(options, data, props=None):
    """The Authentication Method (and Data) for CONNECT or AUTH, added to ``props``."""
    p = props if props is not None else {}
    p[_p.PROP_AUTHENTICATION_METHOD] = options.auth_method
    if data is not None:
        p[_p.PROP_AUTHENTICATION_DATA] = data
    return p


async def step(client):
    """The server sent AUTH (the session's ``ev_rc`` / ``ev_props``). "Continue
    authentication" (0x18): ``on_auth(data)`` (a function or a coroutine function)
    gives our answer, written here;
    "success" (0x00) ends a re-authentication. Anything else the spec forbids: the
    DISCONNECT is queued (and written) and a ProtocolError raised; ``on_auth``
    failing: DISCONNECT 0x80 and an MqttError naming what it raised."""
    s = client._session
    o = client.options
    rc = s.ev_rc
    props = s.ev_props or {}
    waiter = client._reauth
    connected = client._connected
    try:
        if o.auth_method is None:
            # [MQTT-4.12.0-6] no AUTH to a client that asked for no enhanced authentication
            raise ProtocolError("AUTH from the server, but we use no authentication method", 0x82)
        if props.get(_p.PROP_AUTHENTICATION_METHOD) != o.auth_method:
            # [MQTT-4.12.0-5] the same method throughout
            raise ProtocolError("AUTH with another authentication method", 0x82)
        if connected and waiter is None:
            # 4.12.1: only the client starts a re-authentication
            raise ProtocolError("AUTH 0x%02X from the server, but no re-authentication is "
                                "under way" % rc, 0x82)
        if rc == 0 and connected:
            # re-authentication succeeded; its data (a SCRAM server's proof) for the caller
            client._auth_final = [props.get(_p.PROP_AUTHENTICATION_DATA)]
            waiter.set()
            return
        if rc != _CONTINUE:
            # at connect, success comes as CONNACK; 0x19 is the client's to send
            raise ProtocolError("AUTH 0x%02X from the server %s" % (
                rc, "during re-authentication" if connected else "before CONNACK"), 0x82)
        cb = o.on_auth
        try:
            reply = cb(props.get(_p.PROP_AUTHENTICATION_DATA)) if cb is not None else None
            if is_awaitable(reply):
                reply = await reply  # type: ignore[misc]
        except Exception as e:
            raise MqttError("authentication abandoned: on_auth raised %r" % (e,), 0x80)
        if connected:
            await client._wait_room()  # others may have written while on_auth ran
        s.auth(_CONTINUE, auth_props(o, reply))
        if not client._put() and not connected:
            await client._finish()  # (before CONNACK: no writer task to finish it)
    except MqttError as e:
        if connected:
            await client._wait_room()  # out may still be on its way (bounded: keep-alive)
        s.abort(e.reason_code or 0x80)  # DISCONNECT; the session is over
        try:
            client._put()
        except Exception:
            pass
        raise


async def reauthenticate(client, data):
    """MqttClient.reauthenticate (see there)."""
    o = client.options
    if o.auth_method is None:
        raise UsageError("re-authentication needs ConnectOptions(auth_method=...)")
    if client._reauth is not None:
        raise UsageError("a re-authentication is already under way")
    if not client._connected:
        raise NetworkError("not connected")
    client._auth_final = None
    client._reauth = done = asyncio.Event()
    try:
        await client._wait_room()
        if client._connected:
            client._session.auth(_REAUTHENTICATE, auth_props(o, data))
            client._put()
            try:
                await asyncio.wait_for(done.wait(), o.connect_timeout)
            except asyncio.TimeoutError:
                # The exchange is in an unknown state: a new connection (which
                # authenticates from the start) is the way out.
                late = MqttTimeout("re-authentication: no answer within %s s"
                                   % o.connect_timeout)
                from . import _cold

                _cold.link_failed(client, late)
                raise late
    finally:
        client._reauth = None
    if client._auth_final is not None:
        return client._auth_final[0]
    e = client._lost  # (False: the link is still up)
    if not e:
        raise NetworkError("re-authentication: the client disconnected")
    rc = getattr(e, "reason_code", None)
    if type(e) is NetworkError and rc is not None and rc >= 0x80:
        # the server's DISCONNECT: how it refuses a re-authentication [MQTT-4.12.1-2]
        raise ConnectRefused("re-authentication refused by the server", rc)
    if isinstance(e, MqttError):
        raise e
    raise NetworkError("re-authentication: connection lost (%r)" % (e,))


def follow(client, rc, reference):
    """A CONNACK or DISCONNECT said 0x9C (use another server: for now) or 0x9D (server
    moved: for good) with Server Reference ``reference``: point the client's target
    there. False when it cannot be followed (no reference, not a URL target, too many
    hops in a row); the client then goes back to where the user pointed it."""
    t = client._target
    new = redirected(t, reference) if reference and isinstance(t, str) else None
    if new is not None and not new.startswith("ws"):
        from .transport import parse_url

        try:  # a server's garbage is no reason for a UsageError
            if not parse_url(new)[0]:
                new = None
        except Exception:
            new = None
    if new is None or client._hops >= MAX_HOPS:
        client._target = client._home
        return False
    client._hops += 1
    client._target = new
    from ._cold import log

    log("redirected to %s" % new)
    if rc == 0x9D:
        client._home = new
    return True


def redirected(target, reference):
    """The URL to connect to instead of ``target`` (a URL), from a Server Reference:
    "host[:port]" (IPv6 in brackets), the first of a space-separated list. The
    target's scheme is kept (a redirection never turns TLS off), and its path (a
    WebSocket URL's) unless the reference has one. None if there is no host."""
    ref = reference.strip().split(" ")[0]
    i = ref.find("://")
    if i >= 0:
        ref = ref[i + 3:]
    if not ref or ref[0] == "/" or ref[0] == ":":
        return None
    i = target.find("://")
    scheme = target[:i + 3] if i >= 0 else ""
    rest = target[i + 3:] if i >= 0 else target
    j = rest.find("/")
    if j >= 0 and ref.find("/") < 0:
        ref += rest[j:]
    return scheme + ref


# ---------------------------------------------------------------- debug text --

# client.py's debug lines, by its _N_ codes (in order), then _cold's: each takes as many
# values as it has % formats.
NOTES = (
    "connecting to %s",
    "CONNECT client_id=%r clean_start=%r keep_alive=%d",
    "<- CONNACK rc=0x%02X session_present=%r %r",
    "resend after connect failed: %r",
    "connection event callback raised %r",
    "PUBLISH topic=%r qos=%d connected=%r",
    "SUBSCRIBE %r pid=%d",
    "DISCONNECT 0x%02X",
    "DISCONNECT not sent: %r",
    "message callback raised %r",
    "PINGREQ",
    # _cold's, by its _N_ codes
    "DISCONNECT from server 0x%02X %s",
    "connection lost: %r",
    "reconnect refused for good: %s",
    "reconnect attempt %d failed: %r",
    "re-subscribe %r failed: %r",
    "protocol error from server: %s",
)


def note(n, values):
    """client.py's debug line ``n`` with its values (a tuple)."""
    from ._cold import log

    log(NOTES[n] % values)


def log_incoming(s):
    """Log the packet the session just handled (debug only)."""
    from ._cold import log

    t = s.reader.first >> 4
    name = _c.PACKET_NAMES[t]
    if _c.PUBACK <= t <= _c.PUBCOMP:
        a = s.last_ack()
        log("<- %s pid=%d rc=0x%02X" % (name, a.packet_id, a.reason_code))
    elif t == _c.PUBLISH:
        m = s.msg
        log("<- PUBLISH topic=%r qos=%d pid=%d%s%s (%d bytes payload)" % (
            bytes(s.topic_buf[s.topic_start:s.topic_end]), m.qos, m.packet_id,
            " dup" if m.dup else "", " retain" if m.retain else "",
            m.payload_end - m.payload_start))
    elif t == _c.SUBACK or t == _c.UNSUBACK:
        log("<- %s pid=%d codes=%r" % (name, s.ev_pid, s.ev_codes))
    elif t == _c.DISCONNECT or t == _c.AUTH:
        log("<- %s rc=0x%02X" % (name, s.ev_rc))
    else:
        log("<- " + name)


def log_packet(buf, n):
    """Log the packet the client is about to write (debug only)."""
    from ._cold import log

    first = buf[0]
    t = first >> 4
    detail = ""
    if t == _c.PUBLISH or _c.PUBACK <= t <= _c.PUBCOMP or t in (
            _c.SUBSCRIBE, _c.SUBACK, _c.UNSUBSCRIBE, _c.UNSUBACK, _c.DISCONNECT):
        try:
            from . import _server_codec  # debug text only: a device never loads it otherwise

            pkt = _server_codec.decode(bytes(buf[:n]))
            pid = getattr(pkt, "packet_id", 0)
            if pid:
                detail = " pid=%d" % pid
            rc = getattr(pkt, "reason_code", None)
            if rc:
                detail += " rc=0x%02X" % rc
        except MqttError:
            pass
    log("-> %s (%d bytes)%s" % (_c.PACKET_NAMES[t], n, detail))
