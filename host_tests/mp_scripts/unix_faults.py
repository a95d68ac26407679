# MqttClient through the suite's fault proxy (host_tests/netutil), driven by the test.
# argv[1]: JSON (or a JSON file) {
#   "reconnect": {"url", "client_id", "topic", "ready_topic"}: connect, subscribe to topic,
#       publish "ready" (QoS 1) to ready_topic (the test then resets the link), wait for
#       the reconnect, publish "after" (QoS 1) to topic and wait for it to come back
#       through the subscription the client renewed by itself;
#       ("tls": {"ca", "cert", "key"} for mutual TLS);
#   "offline": {"url", "client_id", "root", "signal"}: connect, publish root/ready (the test
#       then cuts the link and refuses connections), queue 4 QoS 1 and 1 QoS 0 messages to
#       root/q (max_queued 5: one more of each is QueueFull), write the file "signal" (the
#       test then lets connections through), wait for the 4 acks; then a client with
#       max_attempts=2 connects and publishes root/ready2 (the test cuts and refuses for
#       good), queues one message, and publishes once it gave up;
#   "noloss": {"url", "client_id", "root", "n"}: session expiry 60 s, n QoS 1 messages to
#       root/q1 and n QoS 2 messages to root/q2 (payloads b"0".. ), published concurrently
#       while the proxy cuts the link again and again; wait for every acknowledgement
#       ("tls" as above).}
# Prints {"reconnect": {"events", "got", "after_pid"}, "offline": {"full", "pids", "after",
#   "events"}, "noloss": {"events", "pids1",
#   "pids2", "errors"}}.
import asyncio

from mp_kit import Events, error_info, params, report, run

from mqtt_v5.client import Connected, ConnectOptions, Disconnected, MqttClient, ReconnectConfig
from mqtt_v5.tls import TlsConfig

FAST = ReconnectConfig(initial_delay=0.05, max_delay=0.5, jitter=0)


def tls_of(p):
    t = p.get("tls")
    return None if t is None else TlsConfig(ca=t["ca"], cert=t.get("cert"), key=t.get("key"))


async def reconnect(p):
    c = MqttClient(ConnectOptions(p["client_id"], reconnect_config=FAST, connect_timeout=5,
                                  tls=tls_of(p)))
    ev = Events(c)
    got = []
    await c.connect(p["url"])
    await c.subscribe(p["topic"], lambda m: got.append(bytes(m.payload).decode()), qos=1)
    await c.publish(p["ready_topic"], b"ready", qos=1)
    await ev.wait(Connected, 2, timeout_s=15)  # after the test reset the link
    pid = await c.publish(p["topic"], b"after", qos=1)
    for _ in range(500):
        if got:
            break
        await asyncio.sleep(0.01)
    await c.disconnect()
    return {"events": ev.summary(), "got": got, "after_pid": pid}


async def queued_offline(p):
    """Publishes made while the link is down wait in the offline queue (bounded: QueueFull
    beyond it) and go out, in order, once it is back; after reconnecting gave up, a queued
    message fails and publish raises at once."""
    out = {}
    topic = p["root"] + "/q"
    c = MqttClient(ConnectOptions(p["client_id"], reconnect_config=FAST, connect_timeout=1,
                                  max_queued=5, max_queued_bytes=1000))
    ev = Events(c)
    await c.connect(p["url"])
    await c.publish(p["root"] + "/ready", b"ready", qos=1)  # the test then cuts and refuses
    await ev.wait(Disconnected)
    queued = []
    for i in range(4):  # a loop: MicroPython has no await in comprehensions
        queued.append(await c.begin_publish(topic, b"%d" % i, qos=1))
    await c.publish(topic, b"q0", qos=0)  # QoS 0 waits in the queue too
    out["full"] = []
    for qos in (1, 0):
        try:
            await c.publish(topic, b"too many", qos=qos) if qos == 0 else (
                await c.begin_publish(topic, b"too many", qos=1))
            out["full"].append(None)
        except Exception as e:
            out["full"].append(error_info(e))
    with open(p["signal"], "w") as f:  # the test lets connections through again
        f.write("queued")
    pids = []
    for d in queued:
        pids.append(await asyncio.wait_for(d.wait(), 10))
    out["pids"] = pids
    await c.disconnect()

    gave_up = ReconnectConfig(initial_delay=0.05, max_delay=0.1, jitter=0, max_attempts=2)
    c = MqttClient(ConnectOptions(p["client_id"], reconnect_config=gave_up,
                                  connect_timeout=1))
    ev = Events(c)
    await c.connect(p["url"])
    await c.publish(p["root"] + "/ready2", b"ready", qos=1)  # cut and refused for good
    await ev.wait(Disconnected)
    d = await c.begin_publish(topic, b"lost", qos=1)  # queued while it tries twice
    out["after"] = []
    for step in ("queued", 1, 0):
        try:
            if step == "queued":
                await asyncio.wait_for(d.wait(), 10)
            else:
                await asyncio.wait_for(c.publish(topic, b"late", qos=step), 1)
            out["after"].append(None)
        except Exception as e:
            out["after"].append(error_info(e))
    out["events"] = ev.summary()
    await c.disconnect()
    return out


async def publish_all(c, topic, n, qos):
    deliveries = []
    for i in range(n):
        deliveries.append(await c.begin_publish(topic, b"%d" % i, qos=qos))
    pids = []
    errors = []
    for d in deliveries:
        try:
            pids.append(await d.wait())
        except Exception as e:
            errors.append(error_info(e))
    return pids, errors


async def noloss(p):
    c = MqttClient(ConnectOptions(p["client_id"], session_expiry_interval=60,
                                  reconnect_config=FAST, connect_timeout=5, max_inflight=20,
                                  max_queued=5000, max_queued_bytes=1 << 20,
                                  tls=tls_of(p)))
    ev = Events(c)
    await c.connect(p["url"])
    n = p["n"]
    (pids1, err1), (pids2, err2) = await asyncio.gather(
        publish_all(c, p["root"] + "/q1", n, 1), publish_all(c, p["root"] + "/q2", n, 2))
    await c.disconnect()
    return {"events": ev.summary(), "pids1": pids1, "pids2": pids2, "errors": err1 + err2}


async def main():
    p = params()
    out = {}
    if "reconnect" in p:
        out["reconnect"] = await reconnect(p["reconnect"])
    if "offline" in p:
        out["offline"] = await queued_offline(p["offline"])
    if "noloss" in p:
        out["noloss"] = await noloss(p["noloss"])
    report(out)


run(main)
