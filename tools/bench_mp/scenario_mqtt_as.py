# tools/bench_mp/scenario.py's program for mqtt_as.
import sys

TOPIC = "bench/heap"


class _Machine:  # mqtt_as imports machine.unique_id
    @staticmethod
    def unique_id():
        return b"heap-as"


def run(host, port, sni, ca, cert, key, ctx, read):
    import asyncio

    sys.modules["machine"] = _Machine
    import ssl

    from mqtt_as import MQTTClient, config

    got = []
    config["server"] = host
    config["port"] = port
    config["ssl"] = True
    config["ssl_params"] = {"cadata": read(ca), "cert": read(cert), "key": read(key),
                            "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": sni}
    config["subs_cb"] = lambda t, m, r: got.append(len(m))
    config["queue_len"] = 0

    async def main():
        c = MQTTClient(config)
        await c.connect(quick=True)
        await c.subscribe(TOPIC, 1)
        await c.publish(TOPIC, bytes(64), qos=1)
        for _ in range(500):
            if got:
                break
            await asyncio.sleep_ms(10)
        await c.disconnect()
        return bool(got) and got[0] == 64

    return asyncio.run(main())
