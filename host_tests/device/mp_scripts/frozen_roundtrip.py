# On the unix port with mqtt_v5 FROZEN (no lib/ on the path): connect to Mosquitto, subscribe,
# publish at QoS 0 and 1, receive both, disconnect. Prints one JSON report as its last line.
# argv: host port [ca.der cert.der key.der]  (with the three files: mutual TLS)
import asyncio
import json
import sys

import mqtt_v5
from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig


async def main(host, port, tls_files):
    opts = ConnectOptions(f"frozen-{port}", clean_start=True, keep_alive=30)
    scheme = "mqtt"
    if tls_files:
        ca, cert, key = tls_files
        opts.tls = TlsConfig(ca=ca, cert=cert, key=key, server_hostname="localhost")
        scheme = "mqtts"
    c = MqttClient(opts)
    got = []
    done = asyncio.Event()

    def on_msg(msg):
        got.append([msg.topic, bytes(msg.payload).decode()])
        if len(got) == 2:
            done.set()

    await c.connect(f"{scheme}://{host}:{port}")
    await c.subscribe("frozen/t", on_msg, qos=1)
    await c.publish("frozen/t", b"zero", qos=0)
    await c.publish("frozen/t", b"one", qos=1)
    await asyncio.wait_for(done.wait(), 10)
    await c.disconnect()
    return got


args = sys.argv[1:]
got = asyncio.run(main(args[0], int(args[1]), args[2:5]))
client_mod = sys.modules["mqtt_v5.client"]
print(json.dumps({"got": got, "path": sys.path, "version": mqtt_v5.__version__,
                  "client_file": getattr(client_mod, "__file__", None)}))
