"""MqttClient's rarely used MQTT 5 features, imported on first use (a device that
uses neither loads none of this): enhanced authentication (AUTH exchanges, at
connect and re-authentication) and server redirection (Server Reference)."""

from . import properties as _p
from .errors import ProtocolError

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
    session's ``out``. Returns the AUTH reason code (0: authentication succeeded)."""
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


def reauthenticate(client, data):
    """Encode AUTH "re-authenticate" (the caller writes it)."""
    client._session.auth(_REAUTHENTICATE, auth_props(client.options, data))


def redirected(target, reference):
    """The URL to connect to instead of ``target`` (a URL), from a Server Reference
    ("host[:port]", the first of a space-separated list), keeping the scheme."""
    ref = reference.split(" ")[0]
    i = target.find("://")
    return (target[:i + 3] if i >= 0 else "") + ref
