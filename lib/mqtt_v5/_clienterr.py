"""client.py's error texts (cold path): loaded to build one exception, then unloaded
(``_drop``), as ``_tls_ctx`` is: a device whose link was lost builds two of them (the
read loop's, the waiters'), and the reconnect's TLS handshake then has this module's
heap (unix port, 32-bit, .mpy: about 0.9 KB) for its own buffers."""

from . import errors as _errors

# client.py's errors, one a line in the order of its _E_ codes (test_unix_lazy checks the
# count): the class (errors'), the text, which takes the value given (if it has a %
# format). One str rather than a tuple per error: a fraction of the heap from .mpy.
ERRORS = (
    "UsageError already connected; call disconnect() first\n"
    "MqttTimeout connect: no CONNACK within %s s (TCP connect, TLS handshake or the server's "
    "answer)\n"
    "NetworkError the given transport is closed and cannot be reopened\n"
    "NetworkError connection closed before CONNACK\n"
    "ProtocolError unexpected packet before CONNACK\n"
    "UsageError begin_publish is for QoS 1 and 2\n"
    "PublishFailed queued message refused by the server's limits: %s\n"
    "UsageError invalid topic filter %r\n"
    "NetworkError not connected\n"
    "SubscribeFailed subscription to %r refused\n"
    "NetworkError connection lost\n"
    "PublishFailed publish refused by the server\n"
    "NetworkError connection closed by the server\n"
    "MqttTimeout a write waited %d ms for room to send: the link is dead\n"
    "NetworkError client disconnected"
)


def error(n, value=None, rc=None, more=None):
    """client.py's error ``n``: its text with ``value``, its reason code ``rc`` and
    the third argument ``more`` of PublishFailed / SubscribeFailed."""
    try:
        kind, text = ERRORS.split("\n")[n].split(" ", 1)
        cls = getattr(_errors, kind)
        if "%" in text:
            text = text % (value,)
        if cls is _errors.ProtocolError:
            rc = 0x82
        return cls(text, rc) if more is None else cls(text, rc, more)
    finally:
        _drop()


def _drop():
    """Unload this module (the next error loads it again). The same lines as
    ``_tls_ctx._drop`` and ``_neterr._unloaded``, on purpose: one helper in the package
    would be heap on every device (measured: a dropped link's smallest heap 109 -> 110
    KiB from .mpy)."""
    import sys

    sys.modules.pop(__name__, None)  # "mqtt_v5._clienterr"
    try:
        delattr(sys.modules["mqtt_v5"], "_clienterr")  # as the import set it on the package
    except (AttributeError, KeyError):
        pass
