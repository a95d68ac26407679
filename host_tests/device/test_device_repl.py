"""REPL comfort: ``repr(client)`` and ``client.status()`` say what a client is doing (state,
server, in flight, queued, subscriptions, the server's limits), the same on CPython and on
MicroPython's unix port, against the suite's Mosquitto."""

from __future__ import annotations

import asyncio
from pathlib import Path

import mp_unix
import pytest

from mqtt_v5 import ConnectOptions, MqttClient, ReconnectConfig

SCRIPT = Path(__file__).resolve().parent / "mp_scripts" / "repl_status.py"

pytestmark = pytest.mark.broker


def test_status_on_cpython(mosquitto):
    async def main():
        c = MqttClient(ConnectOptions("repl-cp", reconnect_config=ReconnectConfig(enabled=False)))
        assert c.status()["state"] == "disconnected"
        assert repr(c) == "<MqttClient 'repl-cp' disconnected  in_flight=0 queued=0>"
        # offline: waits in the queue
        pending = asyncio.ensure_future(c.publish("repl/offline", b"1", qos=1))
        await asyncio.sleep(0)
        assert c.status()["queued"] == 1
        assert repr(c) == "<MqttClient 'repl-cp' disconnected  in_flight=0 queued=1>"
        url = f"mqtt://{mosquitto.host}:{mosquitto.plain_port}"
        await c.connect(url)
        await pending
        await c.subscribe("repl/#", qos=1)
        st = c.status()
        assert st["state"] == "connected"
        assert st["server"] == url
        assert st["client_id"] == "repl-cp"
        assert (st["in_flight"], st["queued"], st["subscriptions"]) == (0, 0, 1)
        assert st["limits"] is c.limits
        assert repr(c) == f"<MqttClient 'repl-cp' connected {url} in_flight=0 queued=0>"
        await c.disconnect()
        assert c.status()["state"] == "disconnected"

    asyncio.run(main())


@pytest.mark.micropython
def test_status_on_micropython(mosquitto, mp_unix_port):
    # The library as .mpy, as on a board (compiling client.py from source at the prompt
    # would take more heap than running it).
    proc = mp_unix.run_script(mp_unix_port, SCRIPT, args=[mosquitto.host, mosquitto.plain_port],
                              heapsize="256k", mpy=True)
    r = mp_unix.last_json(proc)
    url = f"mqtt://{mosquitto.host}:{mosquitto.plain_port}"
    assert r["before"] == "<MqttClient 'repl-1' disconnected  in_flight=0 queued=0>"
    assert r["connected"] == {"state": "connected", "client_id": "repl-1", "server": url,
                              "in_flight": 0, "queued": 0, "subscriptions": 1}
    assert r["repr"] == f"<MqttClient 'repl-1' connected {url} in_flight=0 queued=0>"
    assert r["limits"].startswith("Limits(")
    assert r["after"] == "disconnected"
