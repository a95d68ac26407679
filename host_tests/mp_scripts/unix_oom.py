# The link drops while the heap is full: what a lost link needs (_cold, a reconnect) cannot
# be loaded or made until there is heap again. The client must go on trying, as in a
# network outage, and deliver what waited once it can: never a task dead of MemoryError
# leaving a publish waiting for good.
# argv[1]: JSON (or a JSON file) {"url", "client_id", "root", "ready", "stalled", "hogged",
# "spare"}: connect (keep-alive off: nothing else would notice a dead reader), publish
# root/ready QoS 1, write the file "ready", wait for the file "stalled" (the test stopped
# the proxy's flow), start a QoS 1 publish of b"x" (its
# PUBACK will not come on this link), fill the heap but "spare" bytes, write the file "hogged"
# (the test cuts the link), wait 1.5 s with the heap full, free it, wait for the publish.
# Prints {"during": done while the heap was full, "waiter": its packet id or "hang" or an
# error, "after": the packet id of one more QoS 1 publish, b"y"}.
import asyncio
import gc
import os

from mp_kit import error_info, params, report, run

from mqtt_v5.client import ConnectOptions, MqttClient, ReconnectConfig


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


async def main():
    p = params()
    c = MqttClient(ConnectOptions(p["client_id"], keep_alive=0, reconnect_config=ReconnectConfig(
        initial_delay=0.1, max_delay=0.2, jitter=0)))
    await c.connect(p["url"])
    await c.publish(p["root"] + "/ready", b"1", qos=1)
    with open(p["ready"], "w") as f:  # its PUBACK is in: the test may stop the flow
        f.write("1")
    while not exists(p["stalled"]):
        await asyncio.sleep_ms(10)
    waiter = asyncio.create_task(c.publish(p["root"] + "/t", b"x", qos=1))
    await asyncio.sleep_ms(50)
    gc.collect()
    spare = bytearray(p["spare"])  # given back once the heap is full: one hole
    hog = None  # (a chain of pairs: a list stops growing long before the heap is full)
    for size in (4096, 1024, 256, 64, 16):
        try:
            while True:
                hog = (bytearray(size), hog)
        except MemoryError:
            pass
    del spare
    with open(p["hogged"], "w") as f:
        f.write("1")
    for _ in range(150):
        await asyncio.sleep_ms(10)
    during = waiter.done()
    hog = None
    gc.collect()
    for _ in range(1000):
        if waiter.done():
            break
        await asyncio.sleep_ms(10)
    out = {"during": during, "waiter": "hang"}
    if waiter.done():
        try:
            out["waiter"] = await waiter
        except Exception as e:
            out["waiter"] = error_info(e)
    out["after"] = await asyncio.wait_for(c.publish(p["root"] + "/t", b"y", qos=1), 10)
    await c.disconnect()
    report(out)


run(main)
