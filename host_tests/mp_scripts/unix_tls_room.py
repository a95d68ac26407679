# While reconnecting, the client holds the block the lost TLS session's input buffer had
# (_cold.hold_tls_heap), where mbedTLS allocates from MicroPython's heap, and lets it go
# just before the next session is made (_compat_micropython._Stream.start) or when the
# client stops reconnecting (disconnect() during the backoff). Mutual TLS to Mosquitto; the
# broker drops the link at a malformed packet written under the client.
# argv[1]: JSON (or a JSON file) {"url", "client_id", "topic", "tls": {"ca", "cert", "key"}}.
# Prints {"tls_heap": what the first wrap_socket took of the heap, "room_lost": the held
# block's size while backing off (None: none), "room_up": the same once reconnected,
# "room_closed": once disconnect() stopped the backoff, "got": the payloads received after
# the reconnect, "events": the connection events}.
import asyncio
import sys

from mp_kit import Events, params, report, run, until

from mqtt_v5.client import Connected, ConnectOptions, MqttClient, ReconnectConfig
from mqtt_v5.tls import TlsConfig


def room():
    m = sys.modules.get("mqtt_v5._compat_micropython")
    held = getattr(getattr(m, "_Stream", None), "tls_room", None)
    return None if held is None else len(held)


async def dropped(c):
    """Have the broker drop the link (packet type 0), then wait for the client to see it."""
    await c._transport.write(b"\x00\x00")
    if not await until(lambda: not c.is_connected, 3):
        raise AssertionError("the broker did not drop the link")


async def main():
    p = params()
    t = p["tls"]
    c = MqttClient(ConnectOptions(p["client_id"], keep_alive=0, reconnect_config=ReconnectConfig(
        initial_delay=0.5, max_delay=0.5, jitter=0)))
    c.options.tls = TlsConfig(ca=t["ca"], cert=t["cert"], key=t["key"],
                              server_hostname="localhost")
    events = Events(c)
    got = []
    await c.connect(p["url"])
    m = sys.modules.get("mqtt_v5._compat_micropython")
    out = {"tls_heap": getattr(getattr(m, "_Stream", None), "tls_heap", None)}
    await c.subscribe(p["topic"], lambda msg: got.append(bytes(msg.payload)), qos=1)
    await dropped(c)
    await asyncio.sleep(0.1)  # backing off (0.5 s)
    out["room_lost"] = room()
    await events.wait(Connected, 2)
    out["room_up"] = room()
    await c.publish(p["topic"], b"after", qos=1)
    await until(lambda: got, 3)
    out["got"] = [g.decode() for g in got]
    await dropped(c)
    await asyncio.sleep(0.1)
    out["room_lost_again"] = room()
    await c.disconnect()  # during the backoff: no more reconnecting
    out["room_closed"] = room()
    out["events"] = events.summary()
    report(out)


run(main)
