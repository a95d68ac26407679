"""MqttClient's rarely used MQTT 5 features, imported on first use (a device that
uses neither loads none of this): enhanced authentication (AUTH exchanges, at
connect and re-authentication) and server redirection (Server Reference)."""

from . import properties as _p
from .errors import NetworkError, ProtocolError, UsageError

_CONTINUE = 0x18
_REAUTHENTICATE = 0x19


def auth_props(options, data, props=None):
    """The Authentication Method (and Data) for CONNECT or AUTH, added to ``props``."""
    p = props if props is not None else {}
    p[_p.PROP_AUTHENTICATION_METHOD] = options.auth_method
    if data is not None:
        p[_p.PROP_AUTHENTICATION_DATA] = data
    return p


def answer(client):
    """The server sent AUTH (the session's ev_rc / ev_props): check it, and for
    "continue authentication" encode our answer from ``on_auth(data)`` into the
    session's ``out``. Returns the AUTH reason code (0: authentication succeeded).
    An AUTH we cannot accept: DISCONNECT 0x82 written, ProtocolError raised."""
    try:
        return _answer(client)
    except ProtocolError as e:
        client._session.abort(e.reason_code)  # DISCONNECT, and the session is over
        try:
            client._put()
        except Exception:
            pass
        raise


def _answer(client):
    s = client._session
    o = client.options
    rc = s.ev_rc
    props = s.ev_props or {}
    if o.auth_method is None:
        # [MQTT-4.12.0-6] no AUTH to a client that asked for no enhanced authentication
        raise ProtocolError("AUTH from the server, but we use no authentication method", 0x82)
    if props.get(_p.PROP_AUTHENTICATION_METHOD) != o.auth_method:
        # [MQTT-4.12.0-5] the same method throughout
        raise ProtocolError("AUTH with another authentication method", 0x82)
    if rc == _CONTINUE:
        cb = o.on_auth
        reply = cb(props.get(_p.PROP_AUTHENTICATION_DATA)) if cb is not None else None
        s.auth(_CONTINUE, auth_props(o, reply))
    elif rc != 0:
        raise ProtocolError("AUTH with reason code 0x%02X from the server" % rc, 0x82)
    return rc


async def reauthenticate(client, data):
    """MqttClient.reauthenticate."""
    import asyncio

    if client.options.auth_method is None:
        raise UsageError("re-authentication needs ConnectOptions(auth_method=...)")
    if not client._connected:
        raise NetworkError("not connected")
    await client._wait_room()
    client._reauth = done = asyncio.Event()
    lost = client._lost
    try:
        client._session.auth(_REAUTHENTICATE, auth_props(client.options, data))
        client._put()
        await done.wait()  # set by the success, or by the link's loss
    finally:
        client._reauth = None
    if lost.is_set():
        e = getattr(client, "_lost_error", None)
        raise NetworkError("re-authentication failed: %s" % (e,),
                           getattr(e, "reason_code", None))


def redirect(client, rc, props):
    """Follow a Server Reference (0x9C use another server, 0x9D server moved) of a
    URL target: True if the next connection goes elsewhere."""
    if not ((rc == 0x9C or rc == 0x9D) and props and isinstance(client._target, str)):
        return False
    ref = props.get(_p.PROP_SERVER_REFERENCE)
    if not ref:
        return False
    client._target = redirected(client._target, ref)
    return True


def redirected(target, reference):
    """The URL to connect to instead of ``target`` (a URL), from a Server Reference
    ("host[:port]", the first of a space-separated list), keeping the scheme."""
    ref = reference.split(" ")[0]
    i = target.find("://")
    return (target[:i + 3] if i >= 0 else "") + ref
