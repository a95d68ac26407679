# Connect attempts that go wrong, for the README's troubleshooting table: each scenario of
# the JSON file in argv[1] ({"name", "url", "client_id", "ca", "cert", "key",
# "server_hostname", optionally "maximum_packet_size"}) is tried once; the report maps
# name -> [exception type, str(e)].
import asyncio
import json
import sys

from mqtt_v5 import ConnectOptions, MqttClient, ReconnectConfig, TlsConfig


async def attempt(s):
    try:
        opts = ConnectOptions(s["client_id"], connect_timeout=5,
                              reconnect_config=ReconnectConfig(enabled=False),
                              maximum_packet_size=s.get("maximum_packet_size", 2048))
        if s.get("ca"):
            opts.tls = TlsConfig(ca=s["ca"], cert=s.get("cert"), key=s.get("key"),
                                 server_hostname=s.get("server_hostname"))
        c = MqttClient(opts)
        await c.connect(s["url"])
        await c.disconnect()
        return ["ok", ""]
    except Exception as e:
        return [type(e).__name__, str(e)]


async def main(path):
    with open(path) as f:
        scenarios = json.load(f)
    out = {}
    for s in scenarios:  # (no await inside a comprehension on MicroPython)
        out[s["name"]] = await attempt(s)
    return out


print(json.dumps(asyncio.run(main(sys.argv[1]))))
