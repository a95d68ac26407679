# A publish() whose coroutine is dropped unawaited, or cancelled before it ran, must cost at
# most that one message: the next publishes go out (issue 8 item 1).
# argv[1]: JSON (or a JSON file) {"url", "client_id", "topic"}.
# Prints {"steps": [[what was dropped, packet id of the next QoS 1 publish or "hang"]]}.
import asyncio

from mp_kit import params, report, run

from mqtt_v5.client import ConnectOptions, MqttClient, ReconnectConfig


async def main():
    p = params()
    c = MqttClient(ConnectOptions(p["client_id"], reconnect_config=ReconnectConfig(
        enabled=False)))
    await c.connect(p["url"])
    steps = []
    for k, how in enumerate(("dropped-qos0", "dropped-qos1", "cancelled-qos1")):
        coro = c.publish(p["topic"], how.encode(), qos=0 if how == "dropped-qos0" else 1)
        if how.startswith("cancelled"):
            task = asyncio.create_task(coro)
            task.cancel()
            await asyncio.sleep(0)
        del coro
        try:
            pid = await asyncio.wait_for(c.publish(p["topic"], b"next-%d" % k, qos=1), 1)
        except asyncio.TimeoutError:  # MicroPython has no builtin TimeoutError
            steps.append([how, "hang"])
            break  # the client is jammed for good: nothing else would go out
        steps.append([how, pid])
    else:
        await asyncio.wait_for(c.disconnect(), 2)
    report({"steps": steps})


run(main)
