# TCP_NODELAY follows the packet kind: off (Nagle) while QoS 0 PUBLISHes are written, on
# for anything that is waited for. The unix port's socket has no getsockopt, so the test
# reads the kernel's option itself: at each step this script tells it, over a blocking
# control connection on loopback, its pid, the fd of the client's TCP socket (under TLS
# too) and the step's name, and waits for its answer (the event loop stands still).
# argv[1]: JSON (or a JSON file) {"url", "plain_url", "topic", "ctl": port,
#   "tls": null | {"ca", "cert", "key"}}
# Steps (one client, keep-alive 60): connected, qos0, qos0 again, qos1, qos0, subscribe,
# qos0, incoming qos1 (its PUBACK; another client publishes it), qos0, unsubscribe, qos0,
# qos2; then a second client with keep-alive 1: ping qos0, pingreq.
# Prints {"steps": [names], "got": n, "error": null | {type, msg, rc}}.
import asyncio
import socket

from mp_kit import error_info, params, report, run

from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig

P = params()
PID = open("/proc/self/stat").read().split()[0]
ctl = socket.socket()
ctl.connect(socket.getaddrinfo("127.0.0.1", P["ctl"])[0][-1])
steps = []


def step(c, name):
    """Tell the test the state is to be read, and wait until it has read it."""
    steps.append(name)
    ctl.write(("%s %d %s\n" % (PID, c._transport._tcp.fileno(), name)).encode())
    ctl.read(1)


async def until(pred):
    for _ in range(500):  # (a bound, not a measurement: the state is asserted by the test)
        if pred():
            return
        await asyncio.sleep_ms(10)


async def main():
    t = P.get("tls")
    tls = TlsConfig(ca=t["ca"], cert=t.get("cert"), key=t.get("key")) if t else None
    topic = P["topic"]
    out = {"steps": steps, "got": 0, "error": None}
    got = []
    c = MqttClient(ConnectOptions("nagle-" + topic[-6:], tls=tls, keep_alive=60))
    other = MqttClient(ConnectOptions("nagle-o-" + topic[-6:], keep_alive=60))
    try:
        await c.connect(P["url"])
        step(c, "connected")
        await c.publish(topic, b"0")
        step(c, "qos0")
        await c.publish(topic, b"0")
        step(c, "qos0 again")
        await c.publish(topic, b"1", qos=1)
        step(c, "qos1")
        if tls:
            return out
        await c.publish(topic, b"0")
        step(c, "qos0 before subscribe")
        await c.subscribe(topic + "/in", lambda m: got.append(1), qos=1)
        step(c, "subscribe")
        await c.publish(topic, b"0")
        step(c, "qos0 before incoming qos1")
        await other.connect(P["plain_url"])
        await other.publish(topic + "/in", b"in", qos=1)
        await until(lambda: got and not c._nagle)  # (the PUBACK written)
        step(c, "incoming qos1")
        await c.publish(topic, b"0")
        step(c, "qos0 before unsubscribe")
        await c.unsubscribe(topic + "/in")
        step(c, "unsubscribe")
        await c.publish(topic, b"0")
        step(c, "qos0 before qos2")
        await c.publish(topic, b"2", qos=2)
        step(c, "qos2")
        p = MqttClient(ConnectOptions("nagle-p-" + topic[-6:], keep_alive=1))
        await p.connect(P["plain_url"])
        await p.publish(topic, b"0")
        step(p, "qos0 before ping")
        await until(lambda: not p._nagle)  # (the keep-alive's PINGREQ written)
        step(p, "pingreq")
        await p.disconnect()
    except Exception as e:
        out["error"] = error_info(e)
    finally:
        out["got"] = len(got)
        await c.disconnect()
        await other.disconnect()
    return out


async def main_report():
    report(await main())


run(main_report)
ctl.close()
