# The heap scenario, run under MicroPython's unix port (tools/bench_unix.py finds the smallest
# -X heapsize with which it prints {"ok": true}): mutual-TLS connect to Mosquitto, subscribe
# QoS 1, publish 64 B QoS 1, receive it, disconnect.
#   micropython scenario.py LIB PORT CA_DER CERT_DER KEY_DER
# LIB: ours | umqtt | mqtt_as | bare (a TLS connect + MQTT CONNECT/CONNACK, no library).
import json
import sys

LIB, PORT, CA, CERT, KEY = sys.argv[1:6]
PORT = int(PORT)
HOST = "127.0.0.1"
SNI = "localhost"
TOPIC = "bench/heap"
PAYLOAD = bytes(64)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def report(ok, **kw):
    kw["ok"] = ok
    print(json.dumps(kw))


def ctx():
    import ssl

    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.verify_mode = ssl.CERT_REQUIRED
    c.load_verify_locations(cadata=read(CA))
    c.load_cert_chain(read(CERT), read(KEY))
    return c


def bare():
    import socket

    s = socket.socket()
    s.connect(socket.getaddrinfo(HOST, PORT)[0][-1])
    s = ctx().wrap_socket(s, server_hostname=SNI)
    s.write(b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06bare-1")  # MQTT 3.1.1 CONNECT
    ack = s.read(4)
    s.write(b"\xe0\x00")
    s.close()
    return ack == b"\x20\x02\x00\x00"


def umqtt():
    from umqtt.simple import MQTTClient

    got = []
    c = MQTTClient("heap-umqtt", HOST, PORT, ssl=_Sni(ctx()))
    c.set_callback(lambda t, m: got.append(len(m)))
    c.connect()
    c.subscribe(TOPIC, 1)
    c.publish(TOPIC, PAYLOAD, qos=1)
    while not got:
        c.wait_msg()
    c.disconnect()
    return got[0] == 64


class _Sni:
    # umqtt passes its server address as server_hostname: verify the certificate's name.
    def __init__(self, c):
        self.c = c

    def wrap_socket(self, sock, server_hostname=None):
        return self.c.wrap_socket(sock, server_hostname=SNI)


class _Machine:  # mqtt_as imports machine.unique_id
    @staticmethod
    def unique_id():
        return b"heap-as"


def mqtt_as():
    import asyncio

    sys.modules["machine"] = _Machine
    import ssl

    from mqtt_as import MQTTClient, config

    got = []
    config["server"] = HOST
    config["port"] = PORT
    config["ssl"] = True
    config["ssl_params"] = {"cadata": read(CA), "cert": read(CERT), "key": read(KEY),
                            "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": SNI}
    config["subs_cb"] = lambda t, m, r: got.append(len(m))
    config["queue_len"] = 0

    async def main():
        c = MQTTClient(config)
        await c.connect(quick=True)
        await c.subscribe(TOPIC, 1)
        await c.publish(TOPIC, PAYLOAD, qos=1)
        for _ in range(500):
            if got:
                break
            await asyncio.sleep_ms(10)
        await c.disconnect()
        return bool(got) and got[0] == 64

    return asyncio.run(main())


def ours():
    import asyncio

    from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig

    got = []

    async def main():
        o = ConnectOptions("heap-ours", keep_alive=60)
        o.tls = TlsConfig(ca=CA, cert=CERT, key=KEY, server_hostname=SNI)
        c = MqttClient(o)
        await c.connect("mqtts://%s:%d" % (HOST, PORT))
        ev = asyncio.Event()

        def on(msg):
            got.append(len(msg.payload))
            ev.set()

        await c.subscribe(TOPIC, on, qos=1)
        await c.publish(TOPIC, PAYLOAD, qos=1)
        await asyncio.wait_for(ev.wait(), 5)
        await c.disconnect()
        return got[0] == 64

    return asyncio.run(main())


try:
    ok = {"bare": bare, "umqtt": umqtt, "mqtt_as": mqtt_as, "ours": ours}[LIB]()
    report(ok)
except MemoryError as e:
    report(False, error="MemoryError %s" % e)
except Exception as e:
    report(False, error="%s: %s" % (type(e).__name__, e))
