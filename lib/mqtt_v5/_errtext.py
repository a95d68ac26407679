"""The error texts of ``codec`` and ``session``, loaded when the first error is raised: a
device keeps no error text in RAM until then. Both raise by number (``_E_X = const(n)``;
session's from 64), and ``error`` makes the exception: the class, the reason code and the
text of each number are here, one a line: the constant's name, the reason code in hex (--
for none), the class (U UsageError, P ProtocolError, T MqttTimeout), the text.
test_unix_lazy checks that the numbers and the lines agree. One str per module rather
than a tuple per error: a fraction of the heap when loaded from .mpy."""

from .errors import MqttTimeout, ProtocolError, UsageError

CODEC = (
    "_E_TOO_LARGE 95U packet too large for MQTT\n"
    "_E_NO_ROOM 95U %d-byte packet does not fit the %d-byte buffer\n"
    "_E_QOS --U QoS must be 0, 1 or 2\n"
    "_E_PACKET_ID --U packet identifier must be 1..65535\n"
    "_E_NOT_BYTES --U %s must be str or bytes\n"
    "_E_BAD_STRING --U %s is not a valid MQTT UTF-8 string\n"
    "_E_KEEP_ALIVE --U keep alive must be 0..65535 seconds\n"
    "_E_WILL_TOPIC --U will topic must be a valid topic name\n"
    "_E_TOPIC 90U invalid topic name (wildcard, U+0000 or bad UTF-8)\n"
    "_E_EMPTY_TOPIC 90U empty topic needs a topic alias [MQTT-3.3.2-1]\n"
    "_E_DUP_QOS0 --U DUP must be 0 for QoS 0 [MQTT-3.3.1-2]\n"
    "_E_ALIAS_RANGE --U topic alias must be 1..65535\n"
    "_E_ALIAS_TWICE --U topic alias given twice\n"
    "_E_RC_HERE --U reason code 0x%02X not allowed here\n"
    "_E_NO_FILTERS --U SUBSCRIBE needs at least one filter [MQTT-3.8.3-2]\n"
    "_E_ONE_SID --U SUBSCRIBE takes one subscription identifier\n"
    "_E_FILTER 8fU invalid topic filter %r\n"
    "_E_SUB_OPTIONS --U invalid subscription options %r\n"
    "_E_NO_LOCAL_SHARED --U no local on a shared subscription [MQTT-3.8.3-4]\n"
    "_E_AUTH_METHOD --U AUTH needs an Authentication Method\n"
    "_E_MAX_PACKET_SIZE --U maximum packet size must be at least 16 bytes\n"
    "_E_VBI_LONG 81P remaining length longer than 4 bytes\n"
    "_E_VBI_NOT_MINIMAL 81P remaining length not minimally encoded\n"
    "_E_TYPE_0 81P reserved packet type 0\n"
    "_E_OVER_OUR_MAX 95P packet of %d bytes exceeds our maximum of %d\n"
    "_E_FLAGS_0010 81P reserved flags of %s must be 0010 [MQTT-2.1.3-1]\n"
    "_E_FLAGS_0 81P reserved flags of %s must be 0 [MQTT-2.1.3-1]\n"
    "_E_QOS_3 81P QoS 3 [MQTT-3.3.1-4]\n"
    "_E_DUP_ON_QOS0 81P DUP set on QoS 0 [MQTT-3.3.1-2]\n"
    "_E_WILDCARD 90P wildcard in a topic name [MQTT-3.3.2-2]\n"
    "_E_PID_0 82P packet identifier 0 [MQTT-2.2.1-3]\n"
    "_E_EMPTY_NO_ALIAS 82P empty topic without a topic alias [MQTT-3.3.2-1]\n"
    "_E_RC_IN 82P reason code 0x%02X not allowed in %s\n"
    "_E_LEFT_OVER 81P bytes left over after the packet's contents\n"
    "_E_CONNACK_FLAGS 81P reserved CONNACK flags set [MQTT-3.2.2-1]\n"
    "_E_PRESENT_FAILED 82P session present with a failure code [MQTT-3.2.2-6]\n"
    "_E_NO_CODES 82P %s without reason codes\n"
    "_E_NOT_FOR_CLIENT 82P %s is not decoded by a client"
)
SESSION = (
    "_E_SIZES --U max_inflight and receive_maximum must be >= 1, out_size >= 64\n"
    "_E_NOT_FLUSHED --U previous packet not flushed: the driver must write out first\n"
    "_E_ALREADY --U already connected or connecting\n"
    "_E_NOT_CONNECTED --U not connected\n"
    "_E_NO_SHARED 9eU the server does not support shared subscriptions\n"
    "_E_NO_WILDCARD a2U the server does not support wildcard subscriptions\n"
    "_E_NO_SID a1U the server does not support subscription identifiers\n"
    "_E_REQUEST_TOO_BIG 95U %d-byte packet exceeds the server's Maximum Packet Size %d\n"
    "_E_EXPIRY_ON_DISCONNECT 82U CONNECT set no Session Expiry Interval: DISCONNECT "
    "cannot set one\n"
    "_E_NO_CONNACK --T no CONNACK within %d ms\n"
    "_E_NO_PINGRESP --T no PINGRESP within %d ms: the link is dead\n"
    "_E_QOS --U QoS must be 0, 1 or 2\n"
    "_E_SID_ON_PUBLISH 82U a client's PUBLISH carries no Subscription Identifier\n"
    "_E_ALIAS_PROPERTY 94U give the Topic Alias as topic_alias (PublishOptions), not as a "
    "raw property\n"
    "_E_QOS_ABOVE_MAX 9bU the server supports QoS <= %d only\n"
    "_E_NO_RETAIN 9aU the server does not support retained messages [MQTT-3.2.2-14]\n"
    "_E_PUBLISH_TOO_BIG 95U PUBLISH of %d bytes exceeds the server's Maximum Packet Size %d\n"
    "_E_NO_SLOT --U no free in-flight slot\n"
    "_E_BEFORE_CONNACK 82P %s before CONNACK\n"
    "_E_BAD_PINGRESP 81P malformed PINGRESP\n"
    "_E_UNKNOWN_REQUEST 82P %s for unknown packet id %d\n"
    "_E_CODE_COUNT 82P %s has %d reason codes for %d filters\n"
    "_E_GRANTS_MORE 82P SUBACK grants QoS %d where %d was asked\n"
    "_E_ALIAS_ABOVE_MAX 94P topic alias %d above our maximum %d\n"
    "_E_UNKNOWN_ALIAS 82P unknown topic alias %d\n"
    "_E_UNKNOWN_PUBACK 82P PUBACK for unknown packet id %d\n"
    "_E_PRESENT_AFTER_CLEAN 82P Session Present after Clean Start"
)
# "%s" of a packet type in a text takes its name (codec.PACKET_NAMES, a str here: the
# tuple is in _codec_rare, which an error need not load); of a _W_* field (codec's
# _E_NOT_BYTES and _E_BAD_STRING), the field's name.
PACKET_NAMES = ("RESERVED CONNECT CONNACK PUBLISH PUBACK PUBREC PUBREL PUBCOMP SUBSCRIBE SUBACK "
                "UNSUBSCRIBE UNSUBACK PINGREQ PINGRESP DISCONNECT AUTH")
_FIELDS = "client id,will topic,username,topic filter,will payload,password"


def error(n, a):
    """The exception for error ``n`` (codec's ``_E_*``, or session's from 64) with the
    arguments ``a`` (a tuple)."""
    line = (CODEC if n < 64 else SESSION).split("\n")[n & 63]
    _name, rc, text = line.split(" ", 2)
    if n < 64 and (n == 4 or n == 5):  # _E_NOT_BYTES, _E_BAD_STRING: a = (what,)
        if a[0] >= 4:  # _W_WILL_PAYLOAD and after: binary fields
            text = "%s must be bytes of at most 65535"
        a = (_FIELDS.split(",")[a[0]],)
    elif "%s" in text:  # a packet type: codec's last, session's first
        t = PACKET_NAMES.split()[a[-1] if n < 64 else a[0]]
        a = a[:-1] + (t,) if n < 64 else (t,) + a[1:]  # noqa: RUF005 (no *a in a display on MicroPython)
    cls = UsageError if rc[2] == "U" else ProtocolError if rc[2] == "P" else MqttTimeout
    return cls(text % a if a else text, None if rc[0] == "-" else int(rc[:2], 16))
