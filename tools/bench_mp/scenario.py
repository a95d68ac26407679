# The heap scenario, run under MicroPython's unix port (tools/bench_unix.py finds the smallest
# -X heapsize with which it prints {"ok": true}): mutual-TLS connect to Mosquitto, subscribe
# QoS 1, publish 64 B QoS 1, receive it, disconnect.
#   micropython scenario.py LIB PORT CA_DER CERT_DER KEY_DER
# LIB: ours | umqtt | mqtt_as | bare (a TLS connect + MQTT CONNECT/CONNACK, no library).
# Each library's program is its own module, scenario_LIB.py, imported for its run only: the
# heap holds this small driver and the measured library's program, as a device's main.py
# would, and no other library's code (one script with all four cost each about 4 KiB).
import json
import sys

LIB, PORT, CA, CERT, KEY = sys.argv[1:6]
PORT = int(PORT)
HOST = "127.0.0.1"
SNI = "localhost"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def ctx():
    # The SSL context of the peers and the bare connect (ours reads the files: TlsConfig).
    import ssl

    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.verify_mode = ssl.CERT_REQUIRED
    c.load_verify_locations(cadata=read(CA))
    c.load_cert_chain(read(CERT), read(KEY))
    return c


def report(ok, **kw):
    kw["ok"] = ok
    print(json.dumps(kw))


try:
    report(__import__("scenario_" + LIB).run(HOST, PORT, SNI, CA, CERT, KEY, ctx, read))
except MemoryError as e:
    report(False, error="MemoryError %s" % e)
except Exception as e:
    report(False, error="%s: %s" % (type(e).__name__, e))
