# What a user sees at the REPL: repr() and status() of a client before, while and after it
# is connected. Prints one JSON report as its last line.
# argv: host port
import asyncio
import json
import sys

from mqtt_v5 import ConnectOptions, MqttClient, ReconnectConfig


async def main(host, port):
    c = MqttClient(ConnectOptions("repl-1", reconnect_config=ReconnectConfig(enabled=False)))
    out = {"before": repr(c)}
    await c.connect(f"mqtt://{host}:{port}")
    await c.subscribe("repl/#", qos=1)
    st = c.status()
    out["connected"] = {k: st[k] for k in st if k != "limits"}
    out["limits"] = repr(st["limits"])
    out["receive_maximum"] = st["limits"].receive_maximum
    out["repr"] = repr(c)
    await c.disconnect()
    out["after"] = c.status()["state"]
    return out


report = asyncio.run(main(sys.argv[1], int(sys.argv[2])))
print(json.dumps(report))
