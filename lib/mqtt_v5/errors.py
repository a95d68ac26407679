"""The error hierarchy. Every error carries ``reason_code`` (an int, or None
where MQTT defines none). Names for reason codes live in ``mqtt_v5.reasons``,
which a device need not import."""


class MqttError(Exception):
    """Base of every error this library raises."""

    def __init__(self, message, reason_code=None):
        super().__init__(message)
        self.reason_code = reason_code

    def __str__(self):
        msg = self.args[0] if self.args else ""
        if self.reason_code is None:
            return msg
        return "%s (reason code 0x%02X)" % (msg, self.reason_code)


class UsageError(MqttError):
    """The caller asked for something illegal; nothing was changed or sent."""


class ProtocolError(MqttError):
    """The peer broke the protocol (malformed or illegal packet).

    ``reason_code`` is the DISCONNECT reason the spec calls for, e.g. 0x81
    Malformed Packet, 0x82 Protocol Error, 0x95 Packet Too Large.
    """


class NetworkError(MqttError):
    """Socket, DNS or TLS failure, or the connection closed unexpectedly."""


class ConnectRefused(MqttError):
    """The server answered CONNECT with a CONNACK reason code >= 0x80, or ended a
    re-authentication with a DISCONNECT (its reason code). ``server_reference``: the
    CONNACK's Server Reference (where 0x9C / 0x9D send the client), if any."""

    server_reference = None


class PublishFailed(MqttError):
    """A PUBACK or PUBREC carried a reason code >= 0x80. The connection stays up."""

    def __init__(self, message, reason_code=None, packet_id=0):
        super().__init__(message, reason_code)
        self.packet_id = packet_id


class SubscribeFailed(MqttError):
    """A SUBACK or UNSUBACK refused (some of) the filters.

    ``reason_codes`` holds one code per filter, in request order.
    """

    def __init__(self, message, reason_code=None, reason_codes=None):
        super().__init__(message, reason_code)
        self.reason_codes = reason_codes


class MqttTimeout(MqttError):
    """An operation did not complete in time."""


class QueueFull(MqttError):
    """The offline queue (or in-flight window) is full; the message was not accepted."""
