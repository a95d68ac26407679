"""Connecting to AWS IoT Core, and AWS IoT's limits checked before anything is sent.

    from mqtt_v5.aws.connect import aws_client
    client = aws_client("abc123-ats.iot.eu-west-1.amazonaws.com", "weather-sensor-001",
                        cert="cert.pem.crt", key="private.pem.key", ca="AmazonRootCA1.pem")
    await client.connect()

``aws_client`` builds an ``AwsClient``: an ``MqttClient`` (same API) with AWS's session
defaults whose ``publish`` / ``subscribe`` raise ``UsageError`` for what AWS IoT Core
would refuse, or answer by dropping the connection, before a byte leaves:

- QoS 2 (AWS: Maximum QoS 1; a QoS 2 PUBLISH gets DISCONNECT 0x9B) [aws-iot-spec 1.6];
- a payload over 128 KiB = 131072 bytes (AWS drops the connection) [1.9];
- a topic or filter over 256 bytes, or with more than 7 "/" (8 levels), not counting
  a ``$aws/rules/<rule>/`` or ``$share/<group>/`` prefix [1.7];
- a client id over 128 bytes (or none: AWS's assigned ``$GEN/`` ids cannot reconnect) [1.5];
- more than 50 subscriptions on one connection (AWS: SUBACK 0x80 or closes) [1.7].
  The 8-filters-per-SUBSCRIBE rule holds by construction (the client sends one filter
  per SUBSCRIBE); ``check_filters`` is there for code that batches.
The 100-messages-in-flight limit needs nothing here: AWS's CONNACK says Receive Maximum
100 and the client never exceeds the server's window.

The pure checks (``check_topic``, ``check_publish``, ``check_filters``,
``check_client_id``) are usable without a client.
"""

from mqtt_v5._compat import const
from mqtt_v5.client import ConnectOptions, MqttClient, _raise
from mqtt_v5.errors import UsageError
from mqtt_v5.tls import TlsConfig

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Optional, Union  # noqa: F401

# AWS IoT Core's limits [aws-iot-spec 0]. Private constants: they cost no RAM.
_MAX_PAYLOAD = const(131072)
_MAX_TOPIC_BYTES = const(256)
_MAX_TOPIC_SLASHES = const(7)
_MAX_CLIENT_ID_BYTES = const(128)
_MAX_FILTERS_PER_SUBSCRIBE = const(8)
_MAX_SUBSCRIPTIONS = const(50)
_KEEP_ALIVE_MIN_S = const(30)
_KEEP_ALIVE_MAX_S = const(1200)
_MAX_QOS = const(1)


def _strip_prefix(t):
    """``t`` (bytes) without a leading ``$share/<group>/`` and then ``$aws/rules/<rule>/``:
    AWS counts neither in a topic's length or slashes [aws-iot-spec 1.7]."""
    if t.startswith(b"$share/"):
        i = t.find(b"/", 7)
        if i > 0:
            t = t[i + 1:]
    if t.startswith(b"$aws/rules/"):
        i = t.find(b"/", 11)
        if i > 0:
            t = t[i + 1:]
    return t


def check_topic(topic, what="topic"):
    # type: (Union[str, bytes], str) -> None
    """Raise ``UsageError`` (reason code 0x90 for a topic, 0x8F for a filter) if AWS IoT
    Core would refuse ``topic``: over 256 bytes or over 7 slashes, prefixes excepted."""
    t = topic.encode() if isinstance(topic, str) else bytes(topic)
    t = _strip_prefix(t)
    rc = 0x8F if what == "filter" else 0x90
    _over("%s %r: bytes" % (what, topic), len(t), _MAX_TOPIC_BYTES, rc)
    _over("%s %r: '/' (8 levels)" % (what, topic), t.count(b"/"), _MAX_TOPIC_SLASHES, rc)


def _over(what, n, limit, rc=None):
    if n > limit:
        raise UsageError("AWS IoT: %s %d, over the limit of %d" % (what, n, limit), rc)


def check_publish(topic, payload, qos):
    # type: (Union[str, bytes], Union[bytes, str], int) -> None
    """Raise ``UsageError`` for what AWS would refuse in a PUBLISH: QoS 2, a payload over
    131072 bytes, a topic over the limits."""
    if qos > _MAX_QOS:
        raise UsageError("AWS IoT Core supports QoS 0 and 1 only (its CONNACK says "
                         "Maximum QoS 1); use QoS 1 with idempotent handling", 0x9B)
    n = len(payload)
    if n > _MAX_PAYLOAD // 4 and isinstance(payload, str):
        n = len(payload.encode())
    # AWS drops the connection over 128 KiB
    _over("payload bytes", n, _MAX_PAYLOAD, 0x95)
    check_topic(topic)


def check_filters(filters):
    # type: (list) -> None
    """Raise ``UsageError`` if a SUBSCRIBE of ``filters`` breaks AWS's rules: more than 8
    filters in one packet, a filter over the topic limits, QoS 2 asked."""
    # AWS closes the connection: subscribe in batches of 8
    _over("filters in one SUBSCRIBE", len(filters), _MAX_FILTERS_PER_SUBSCRIBE)
    for f in filters:
        check_topic(f, "filter")


def check_client_id(client_id):
    # type: (Union[str, bytes]) -> None
    """Raise ``UsageError`` (0x85) for a client id AWS refuses or cannot resume."""
    b = client_id.encode() if isinstance(client_id, str) else client_id
    if not b:
        raise UsageError("AWS IoT: give a client id (AWS-assigned $GEN/ ids cannot be used to "
                         "reconnect); the thing name is the usual choice", 0x85)
    _over("client id bytes", len(b), _MAX_CLIENT_ID_BYTES, 0x85)
    if b[0] == 0x24:  # "$"
        raise UsageError("AWS IoT: client ids starting with '$' are reserved", 0x85)


def has_alpn():
    # type: () -> bool
    """True if this runtime's TLS can offer ALPN (CPython yes; stock MicroPython no):
    asked of the module the SSL context is made from (``tls`` on MicroPython)."""
    from mqtt_v5 import _compat

    return _compat.has_alpn()


def metrics_username(username=None, sdk="mqtt_v5", version=None):
    # type: (Optional[str], str, Optional[str]) -> str
    """The CONNECT username with AWS's SDK-metrics query (``?SDK=..&Version=..``) added
    after a ``?`` or, if the username already has a query, an ``&`` [aws-iot-spec 2.2]."""
    if version is None:
        from mqtt_v5 import __version__ as version
    u = username or ""
    return "%s%sSDK=%s&Version=%s" % (u, "&" if "?" in u else "?", sdk, version)


class AwsClient(MqttClient):
    """An ``MqttClient`` that checks AWS IoT Core's limits before sending, and knows
    where it connects (``url``, or ``target``: an async callable opening the link).
    ``connect()`` with no argument goes there."""

    def __init__(self, options, url=None):
        check_client_id(options.client_id)
        if not _KEEP_ALIVE_MIN_S <= options.keep_alive <= _KEEP_ALIVE_MAX_S:
            # AWS would silently change it (0 becomes 1200)
            raise UsageError("AWS IoT: keep-alive must be 30..1200 s")
        w = options.will
        if w is not None:
            check_publish(w.topic, w.payload, w.qos)
        MqttClient.__init__(self, options)
        self.url = url
        self.thing_name = options.client_id
        self._aws_filters = []
        self._aws_ok = []  # topics already checked (a few, for the publish path)

    def connect(self, target=None):
        return MqttClient.connect(self, self.url if target is None else target)

    def _check(self, topic, payload, qos):
        if qos > _MAX_QOS or len(payload) > _MAX_PAYLOAD // 4:
            check_publish(topic, payload, qos)
        elif topic not in self._aws_ok:
            check_topic(topic)
            ok = self._aws_ok
            if len(ok) >= 16:
                ok.pop(0)
            ok.append(topic)

    def publish(self, topic, payload, qos=0, retain=False, options=None):
        """``MqttClient.publish`` after AWS's checks (``UsageError`` before sending)."""
        try:
            self._check(topic, payload, qos)
        except UsageError as e:
            return _raise(e)
        return MqttClient.publish(self, topic, payload, qos, retain, options)

    async def begin_publish(self, topic, payload, qos=1, retain=False, options=None):
        self._check(topic, payload, qos)
        return await MqttClient.begin_publish(self, topic, payload, qos, retain, options)

    async def subscribe(self, topic_filter, callback=None, qos=0, no_local=False,
                        retain_as_published=False, retain_handling=0, properties=None):
        """``MqttClient.subscribe`` after AWS's checks: QoS <= 1, the filter's length and
        levels, at most 50 subscriptions on the connection."""
        if qos > _MAX_QOS:
            raise UsageError("AWS IoT Core grants QoS 0 and 1 only: subscribe with qos=1", 0x9B)
        check_topic(topic_filter, "filter")
        subs = self._aws_filters
        new = topic_filter not in subs
        if new:
            _over("subscriptions on one connection", len(subs) + 1, _MAX_SUBSCRIPTIONS, 0x97)
            subs.append(topic_filter)
        try:
            return await MqttClient.subscribe(self, topic_filter, callback, qos, no_local,
                                              retain_as_published, retain_handling, properties)
        except BaseException:
            if new:
                subs.remove(topic_filter)
            raise

    async def unsubscribe(self, topic_filter, properties=None):
        if topic_filter in self._aws_filters:
            self._aws_filters.remove(topic_filter)
        return await MqttClient.unsubscribe(self, topic_filter, properties)


def aws_client(endpoint, thing_name, cert=None, key=None, ca=None, port=8883, client_id=None,
               server_hostname=None, keep_alive=300, clean_start=False,
               session_expiry_interval=3600, metrics=False, username=None, **options):
    # type: (str, str, Any, Any, Any, int, Optional[str], Optional[str], int, bool, int, bool, Optional[str], **Any) -> AwsClient
    """An ``AwsClient`` for ``endpoint`` (the account's ``...-ats.iot.<region>.amazonaws.com``)
    as thing ``thing_name`` (also the client id unless ``client_id`` is given).

    Mutual TLS: ``cert`` and ``key`` (the thing's certificate and private key) and ``ca``
    (Amazon Root CA 1), each a path or bytes, PEM or DER. SNI and server verification
    use ``server_hostname`` (default: ``endpoint``). Port 8883, or 443 with ALPN
    ``x-amzn-mqtt-ca`` where the runtime has ALPN (CPython; stock MicroPython has none and
    gets a ``UsageError`` pointing to 8883 or WebSocket).

    Session defaults for AWS: a persistent session (``clean_start=False``,
    ``session_expiry_interval=3600``, AWS's default maximum), keep-alive 300 s (AWS allows
    30..1200). ``metrics=True`` adds AWS's SDK-metrics query to the username. Other
    keyword arguments go to ``ConnectOptions``; ``maximum_packet_size`` (default 2048)
    bounds what AWS will send us: raise it for big shadow documents or job documents.
    """
    if cert is None or key is None:
        raise UsageError("AWS IoT on port %d needs the thing's certificate and key (mutual TLS);"
                         " for a custom authorizer use mqtt_v5.aws.authorizer" % port)
    alpn = None
    if port == 443:
        if not has_alpn():
            raise UsageError("AWS IoT: X.509 on port 443 needs TLS ALPN (x-amzn-mqtt-ca), which "
                             "this MicroPython firmware's ssl lacks: use port 8883, or MQTT "
                             "over WebSocket (wss://, port 443, no ALPN needed)")
        alpn = ["x-amzn-mqtt-ca"]
    tls = TlsConfig(ca=ca, cert=cert, key=key, server_hostname=server_hostname or endpoint,
                    alpn=alpn)
    if metrics:
        username = metrics_username(username)
    o = ConnectOptions(client_id if client_id is not None else thing_name,
                       clean_start=clean_start, keep_alive=keep_alive,
                       session_expiry_interval=session_expiry_interval, username=username,
                       tls=tls, **options)
    host = "[%s]" % endpoint if ":" in endpoint else endpoint  # an IPv6 literal
    c = AwsClient(o, "mqtts://%s:%d" % (host, port))
    c.thing_name = thing_name
    return c
