"""``PublishOptions``, loaded when first asked for (``client.PublishOptions`` through
client's module ``__getattr__``): the publish path only reads its two attributes, and a
device that publishes without properties never makes one, so its class, code and the
names of its arguments cost that device no RAM."""

from . import properties as _p


class PublishOptions:
    """Per-message PUBLISH properties. ``topic_alias`` asks for that alias
    (bounded by the server's Topic Alias Maximum)."""

    def __init__(self, topic_alias=0, message_expiry_interval=None, content_type=None,
                 response_topic=None, correlation_data=None, user_properties=None,
                 payload_format_indicator=None, properties=None):
        props = dict(properties) if properties else {}
        # A raw Topic Alias would skip the server's Topic Alias Maximum: it is the alias.
        self.topic_alias = props.pop(_p.PROP_TOPIC_ALIAS, 0) or topic_alias
        if message_expiry_interval is not None:
            props[_p.PROP_MESSAGE_EXPIRY_INTERVAL] = message_expiry_interval
        if content_type is not None:
            props[_p.PROP_CONTENT_TYPE] = content_type
        if response_topic is not None:
            props[_p.PROP_RESPONSE_TOPIC] = response_topic
        if correlation_data is not None:
            props[_p.PROP_CORRELATION_DATA] = correlation_data
        if user_properties:
            props[_p.PROP_USER_PROPERTY] = list(user_properties)
        if payload_format_indicator is not None:
            props[_p.PROP_PAYLOAD_FORMAT_INDICATOR] = payload_format_indicator
        self.properties = props or None
