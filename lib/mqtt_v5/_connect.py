"""CONNECT: the session's part of connecting, and the packet's encoder (cold: loaded for
each connect by ``Session.connect`` and dropped again at once; ``codec.encode_connect``
gives the encoder too). On MicroPython the TLS handshake runs inside the CONNECT's
write: code kept only for connecting would sit under its peak, then stay in the heap
unused while connected."""

from . import properties as _p
from ._compat import const
from .codec import _check_str, _err, _header

# codec's and session's numbers (const() folds per module on MicroPython;
# host_tests/test_unix_lazy.py checks they match).
_DISCONNECTED = const(0)
_CONNECTING = const(1)
_C_RECEIVE_MAXIMUM = const(4)
_C_TOPIC_ALIAS_MAXIMUM = const(5)
_CF_AUTO_ALIAS = const(1)
_CF_CLEAN_START = const(2)
_CF_EXPIRY_ZERO = const(4)
_PROP_SESSION_EXPIRY_INTERVAL = const(0x11)
_PROP_RECEIVE_MAXIMUM = const(0x21)
_PROP_TOPIC_ALIAS_MAXIMUM = const(0x22)
_PROP_MAXIMUM_PACKET_SIZE = const(0x27)
_E_ALREADY = const(66)
_CONNECT = const(1)
_PROTOCOL_LEVEL = const(5)
_E_KEEP_ALIVE = const(6)
_W_CLIENT_ID = const(0)
_W_USERNAME = const(2)
_W_PASSWORD = const(5)


def connect(s, now_ms, clean_start, keep_alive_s, username, password, will, props,
            session_expiry_s, auto_alias):
    """``Session.connect`` for session ``s``: encode CONNECT, set the state for it; then
    this module is unloaded (``_drop``)."""
    try:
        _prepare(s, now_ms, clean_start, keep_alive_s, username, password, will, props,
                 session_expiry_s, auto_alias)
    finally:
        _drop()


def _drop():
    """Unload this module (the lines of ``_clienterr._drop``: see there)."""
    import sys

    sys.modules.pop(__name__, None)  # "mqtt_v5._connect"
    try:
        delattr(sys.modules["mqtt_v5"], "_connect")  # as the import set it on the package
    except (AttributeError, KeyError):
        pass


def _prepare(s, now_ms, clean_start, keep_alive_s, username, password, will, props,
              session_expiry_s, auto_alias):
    if s.state != _DISCONNECTED:
        raise _err(_E_ALREADY)
    p = {} if props is None else dict(props)
    p[_PROP_RECEIVE_MAXIMUM] = s._conf[_C_RECEIVE_MAXIMUM]
    p[_PROP_MAXIMUM_PACKET_SIZE] = s.reader.max_packet_size
    if s._conf[_C_TOPIC_ALIAS_MAXIMUM] > 0:
        p[_PROP_TOPIC_ALIAS_MAXIMUM] = s._conf[_C_TOPIC_ALIAS_MAXIMUM]
    if session_expiry_s:
        p[_PROP_SESSION_EXPIRY_INTERVAL] = session_expiry_s
    s._encode_cold(encode_connect, s.client_id, clean_start, keep_alive_s, username,
                   password, will, p)
    s.keep_alive_ms = keep_alive_s * 1000
    s._connect_flags = ((_CF_AUTO_ALIAS if auto_alias else 0)
                        | (_CF_CLEAN_START if clean_start else 0)
                        | (0 if p.get(_PROP_SESSION_EXPIRY_INTERVAL) else _CF_EXPIRY_ZERO))
    s._mark_resend()  # also when the driver skipped connection_lost()
    s._msg_unacked = 0
    s.reader.reset()
    s.limits.reset()
    s.state = _CONNECTING
    s._connect_started = now_ms
    s._last_recv = now_ms
    s._ping_sent = -1
    if clean_start:
        s._in_qos2 = None


def encode_connect(buf, client_id, clean_start=True, keep_alive=0, username=None,
                   password=None, will=None, props=None):
    """CONNECT (3.1). ``will`` is a ``Will`` (``_codec_rare``'s) or None. Returns the
    length."""
    cid = _check_str(client_id, _W_CLIENT_ID)
    if not 0 <= keep_alive <= 0xFFFF:
        raise _err(_E_KEEP_ALIVE)
    flags = 0x02 if clean_start else 0
    psize = _p.size(props, 1 << _CONNECT)
    rem = 6 + 1 + 1 + 2 + _p.vbi_size(psize) + psize + 2 + len(cid)
    if will is not None:
        from . import _codec_rare  # the Will's checks and encoding: cold

        wblock = _codec_rare.encode_will(will)
        rem += len(wblock)
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        user = _check_str(username, _W_USERNAME)
        rem += 2 + len(user)
        flags |= 0x80
    if password is not None:
        pw = _check_str(password, _W_PASSWORD)
        rem += 2 + len(pw)
        flags |= 0x40
    pos = _header(buf, 0x10, rem, 0)
    buf[pos:pos + 6] = b"\x00\x04MQTT"  # the protocol name
    buf[pos + 6] = _PROTOCOL_LEVEL
    buf[pos + 7] = flags
    pos = _p.write_u16(buf, pos + 8, keep_alive)
    pos = _p.write(buf, pos, props, psize)
    pos = _p.write_bin(buf, pos, cid)
    if will is not None:
        buf[pos:pos + len(wblock)] = wblock
        pos += len(wblock)
    if username is not None:
        pos = _p.write_bin(buf, pos, user)
    if password is not None:
        pos = _p.write_bin(buf, pos, pw)
    return pos
