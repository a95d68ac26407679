"""mqtt_v5: an MQTT v5 client for MicroPython and CPython.

Names are imported lazily, so ``import mqtt_v5`` costs little heap and a
device pays only for the parts it uses.
"""

__version__ = "0.1.0"

_LAZY = {
    "MqttError": "errors",
    "UsageError": "errors",
    "ProtocolError": "errors",
    "NetworkError": "errors",
    "ConnectRefused": "errors",
    "PublishFailed": "errors",
    "SubscribeFailed": "errors",
    "MqttTimeout": "errors",
    "QueueFull": "errors",
    "MqttClient": "client",
    "ConnectOptions": "client",
    "ReconnectConfig": "client",
    "PublishOptions": "client",
    "Will": "client",
    "Message": "client",
    "Delivery": "client",
    "ConnectionEvent": "client",
    "Connected": "client",
    "Disconnected": "client",
    "Reconnecting": "client",
    "set_debug": "client",
    "TlsConfig": "transport",
    "SyncClient": "sync",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        # MicroPython asks here before it imports a submodule by
        # ``from mqtt_v5 import codec``: import it for it.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            __import__("mqtt_v5." + name)
        except ImportError:
            raise AttributeError(name) from None
        return globals()[name]
    mod = __import__("mqtt_v5." + module, None, None, (name,))
    return getattr(mod, name)
