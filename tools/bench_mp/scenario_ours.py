# tools/bench_mp/scenario.py's program for mqtt_v5.
TOPIC = "bench/heap"


def run(host, port, sni, ca, cert, key, ctx, read):
    import asyncio

    from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig

    got = []

    async def main():
        o = ConnectOptions("heap-ours", keep_alive=60)
        o.tls = TlsConfig(ca=ca, cert=cert, key=key, server_hostname=sni)
        c = MqttClient(o)
        await c.connect("mqtts://%s:%d" % (host, port))
        ev = asyncio.Event()

        def on(msg):
            got.append(len(msg.payload))
            ev.set()

        await c.subscribe(TOPIC, on, qos=1)
        await c.publish(TOPIC, bytes(64), qos=1)
        await asyncio.wait_for(ev.wait(), 5)
        await c.disconnect()
        return got[0] == 64

    return asyncio.run(main())
