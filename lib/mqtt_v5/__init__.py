"""mqtt_v5: an MQTT v5 client for MicroPython and CPython.

Names are imported lazily, so ``import mqtt_v5`` costs little heap and a
device pays only for the parts it uses (their types, for type checkers: ``__init__.pyi``).
"""

__version__ = "0.1.0"

# Where each public name lives: "module name name ...", modules apart by "|"; a module
# alone (client, last) for the public names in its globals, all capitalized. The error
# classes are named: ``MqttClient`` must not load ``errors`` (not on a device's everyday
# path), ``NetworkError`` not ``client``. One string constant, read only when a name is
# first asked for: loaded from a .mpy it is one object in RAM (frozen, it stays in flash),
# where a dict or tuples of the names cost a qstr or a str object per name at import.
_NAMES = ("tls TlsConfig|sync_client SyncClient|codec Will|session Message|"
          "_publish_options PublishOptions|_client_extras set_debug|errors MqttError "
          "UsageError ProtocolError NetworkError ConnectRefused PublishFailed SubscribeFailed "
          "MqttTimeout QueueFull|client")


def __getattr__(name):
    for group in _NAMES.split("|"):
        words = group.split(" ")
        if name in words[1:] or (len(words) == 1 and "A" <= name[0] <= "Z"):
            module = __import__("mqtt_v5." + words[0], None, None, (name,))
            # (a module alone: its globals, not its __getattr__, which may ask here)
            value = getattr(module, name) if len(words) > 1 else module.__dict__.get(name)
            if value is not None:
                globals()[name] = value  # found by plain lookup from now on
                return value
    # MicroPython asks here before it imports a submodule by
    # ``from mqtt_v5 import codec``: import it for it (``_server_codec`` too).
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        __import__("mqtt_v5." + name)
    except ImportError:
        raise AttributeError(name) from None
    return globals()[name]
