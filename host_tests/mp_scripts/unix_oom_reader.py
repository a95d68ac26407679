# The reader runs out of heap while the link is up (a MemoryError in its poll, as the SUBACK
# comes in) and there is none to load _cold, what handling a lost link needs: the subscribe
# waiting for that SUBACK must fail with the reader's error, not wait for good (with
# the heap full nothing else would wake it); once _cold loads, the link is handled as lost:
# the client reconnects, and subscribes and receives again. Stand-ins raise the two
# MemoryErrors (a poll, _cold's link_failed), so that they come at that point.
# argv[1]: JSON (or a JSON file) {"url", "client_id", "topic"}. Prints {"subscribe": its
# error (or "hang"), "connected_during": is_connected meanwhile, "events": the connection
# events, "granted": the QoS the next subscribe got, "got": what it received}.
import asyncio

from mp_kit import Events, error_info, params, report, run, until

from mqtt_v5 import client as client_module
from mqtt_v5.client import Connected, ConnectOptions, MqttClient, ReconnectConfig


class _NoHeapForTheLoss:
    """What client._cold_paths() gives while starved: link_failed fails as loading _cold
    would with the heap full; the rest is _cold's own."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        if name == "link_failed":
            raise MemoryError("memory allocation failed (test: _cold)")
        return getattr(self.real(), name)


async def main():
    p = params()
    c = MqttClient(ConnectOptions(p["client_id"], keep_alive=0, reconnect_config=ReconnectConfig(
        initial_delay=0.05, max_delay=0.2, jitter=0)))
    events = Events(c)
    await c.connect(p["url"])
    s = c._session
    real_poll = s.poll
    starved = [True]

    def starving_poll(now):
        if starved[0] and s.reader.end > s.reader.start:  # the SUBACK is in
            raise MemoryError("memory allocation failed (test)")
        return real_poll(now)

    real_cold_paths = client_module._cold_paths
    stand_in = _NoHeapForTheLoss(real_cold_paths)
    s.poll = starving_poll
    client_module._cold_paths = lambda: stand_in
    got = []
    out = {"subscribe": "hang"}
    try:
        await asyncio.wait_for(c.subscribe(p["topic"], lambda m: got.append(m.payload), qos=1), 5)
        out["subscribe"] = "granted"
    except asyncio.TimeoutError:
        pass
    except Exception as e:
        out["subscribe"] = error_info(e)
    out["connected_during"] = c.is_connected
    starved[0] = False  # the heap is back: the reader's next try hands the loss to _cold
    client_module._cold_paths = real_cold_paths
    await events.wait(Connected, 2)
    out["events"] = events.summary()
    out["granted"] = await c.subscribe(p["topic"], lambda m: got.append(bytes(m.payload)), qos=1)
    await c.publish(p["topic"], b"after", qos=1)
    await until(lambda: got)
    out["got"] = [g.decode() for g in got]
    await c.disconnect()
    report(out)


run(main)
