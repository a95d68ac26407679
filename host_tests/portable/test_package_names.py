"""``import mqtt_v5`` gives its public names lazily (mqtt_v5/__init__.py), both runtimes:
each name is the object of the module that defines it; a submodule is imported by name;
anything else is an AttributeError."""

import sys

from _check import raises

import mqtt_v5

PUBLIC = {
    "errors": ("MqttError", "UsageError", "ProtocolError", "NetworkError", "ConnectRefused",
               "PublishFailed", "SubscribeFailed", "MqttTimeout", "QueueFull"),
    "client": ("MqttClient", "ConnectOptions", "ReconnectConfig", "PublishOptions", "Will",
               "Message", "Delivery", "ConnectionEvent", "Connected", "Disconnected",
               "Reconnecting", "set_debug"),
    "tls": ("TlsConfig",),
    "sync_client": ("SyncClient",),
}


def test_public_names_come_from_their_modules():
    for module, names in PUBLIC.items():
        for name in names:
            value = getattr(mqtt_v5, name)
            mod = sys.modules["mqtt_v5." + module]
            assert value is getattr(mod, name), (module, name)
            assert getattr(mqtt_v5, name) is value  # again (cached by then)
    from mqtt_v5 import MqttClient, QueueFull  # noqa: F401
    from mqtt_v5.transport import TlsConfig  # still given there too

    assert TlsConfig is mqtt_v5.TlsConfig


def test_submodules_by_name_and_unknown_names():
    from mqtt_v5 import topic

    assert topic is sys.modules["mqtt_v5.topic"]
    assert mqtt_v5.__version__
    for name in ("NoSuchThing", "_private", "codec_"):
        raises(AttributeError, getattr, mqtt_v5, name)
