"""Client throughput: mqtt_v5.MqttClient vs paho-mqtt 2.x, same run, same broker.

Starts its own Mosquitto on a free loopback port (``max_queued_messages 0`` so a slow
subscriber loses nothing, persistence off) and measures, for each client library:

  qos1_stop_and_wait   publish QoS 1 and wait for its PUBACK, one at a time
  qos1_pipelined       N QoS 1 publishes in flight up to the broker's Receive Maximum
                       (ours: begin_publish; paho: publish with max_inflight = RM)
  qos0_publish         N QoS 0 publishes until the last is written to the socket
  e2e_qos0, e2e_qos1   publisher -> broker -> subscriber (both of the same library, one
                       process): first publish to last message received

Rates are msg/s (64-byte payloads), the median of ``rounds`` runs; ``ratio`` = ours / paho.
``bench_client(results)`` is the ``client`` section of tools/bench.py: it fills ``results``
with {metric: {"ours", "paho", "ratio"}} and "conditions". ``python tools/bench_client.py``
runs it alone (``--n``, ``--rounds``, ``--json``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "lib") not in sys.path:
    sys.path.insert(0, str(ROOT / "lib"))

HOST = "127.0.0.1"
PAYLOAD = b"x" * 64
# paho announces no Receive Maximum (65535): give our subscriber a window as wide, or the
# broker throttles ours and the comparison measures configuration, not code.
RX_RECEIVE_MAXIMUM = 65535


# ------------------------------------------------------------------------------ broker --


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class _Broker:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="mqtt_v5-bench-"))
        self.dir.chmod(0o755)
        self.proc = None
        self.port = 0

    def start(self):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        for _ in range(3):
            self.port = _free_port()
            conf = self.dir / "bench.conf"
            conf.write_text(
                "\n".join(
                    [
                        "per_listener_settings false",
                        "allow_anonymous true",
                        "persistence false",
                        "max_queued_messages 0",
                        "log_dest stderr",
                        "log_type error",
                        f"listener {self.port} {HOST}",
                        "",
                    ]
                )
            )
            conf.chmod(0o644)
            self.proc = subprocess.Popen(
                [exe, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection((HOST, self.port), 0.2).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_seq = [0]


def _topic(kind):
    _seq[0] += 1
    return f"bench/{os.getpid()}/{kind}/{_seq[0]}"


# ---------------------------------------------------------------------------- ours --


def _ours_options(name, **kw):
    from mqtt_v5.client import ConnectOptions, ReconnectConfig

    return ConnectOptions(
        f"{name}-{os.getpid()}-{_seq[0]}", reconnect_config=ReconnectConfig(enabled=False), **kw
    )


async def _ours_connect(port, name, **kw):
    from mqtt_v5.client import MqttClient

    c = MqttClient(_ours_options(name, **kw))
    await c.connect(f"mqtt://{HOST}:{port}")
    return c


async def _ours_stop_and_wait(port, n):
    c = await _ours_connect(port, "sw", max_inflight=32)
    topic = _topic("sw")
    t0 = time.perf_counter()
    for _ in range(n):
        await c.publish(topic, PAYLOAD, qos=1)
    dt = time.perf_counter() - t0
    await c.disconnect()
    return n / dt


async def _ours_pipelined(port, n):
    c = await _ours_connect(port, "pipe", max_inflight=64)
    topic = _topic("pipe")
    t0 = time.perf_counter()
    last = None
    for _ in range(n):
        last = await c.begin_publish(topic, PAYLOAD, qos=1)
    await last.wait()  # acks come in order: the last one means all
    dt = time.perf_counter() - t0
    await c.disconnect()
    return n / dt


async def _ours_qos0(port, n):
    c = await _ours_connect(port, "q0")
    topic = _topic("q0")
    t0 = time.perf_counter()
    for _ in range(n):
        await c.publish(topic, PAYLOAD)  # returns once written
    dt = time.perf_counter() - t0
    await c.disconnect()
    return n / dt


async def _ours_e2e(port, n, qos):
    rx = await _ours_connect(port, "rx", receive_maximum=RX_RECEIVE_MAXIMUM)
    tx = await _ours_connect(port, "tx", max_inflight=64)
    topic = _topic("e2e")
    done = asyncio.Event()
    count = [0]

    def on_msg(m):
        count[0] += 1
        if count[0] == n:
            done.set()

    await rx.subscribe(topic, on_msg, qos=qos)
    t0 = time.perf_counter()
    if qos:
        for _ in range(n):
            await tx.begin_publish(topic, PAYLOAD, qos=1)
    else:
        for _ in range(n):
            await tx.publish(topic, PAYLOAD)
    try:
        await asyncio.wait_for(done.wait(), 60)
    except TimeoutError:
        pass
    dt = time.perf_counter() - t0
    await tx.disconnect()
    await rx.disconnect()
    return count[0] / dt


# ---------------------------------------------------------------------------- paho --


def _paho(port, name, rm=20):
    from paho.mqtt import client as pmqtt

    c = pmqtt.Client(
        pmqtt.CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{os.getpid()}-{_seq[0]}",
        protocol=pmqtt.MQTTv5,
    )
    c.max_inflight_messages_set(rm)
    c.max_queued_messages_set(0)
    ready = threading.Event()
    c.on_connect = lambda *a: ready.set()
    c.connect(HOST, port, keepalive=60)
    c.loop_start()
    if not ready.wait(5):
        raise RuntimeError("paho did not connect")
    return c


def _paho_close(c):
    c.disconnect()
    c.loop_stop()


def _paho_stop_and_wait(port, n):
    c = _paho(port, "psw")
    topic = _topic("psw")
    t0 = time.perf_counter()
    for _ in range(n):
        c.publish(topic, PAYLOAD, qos=1).wait_for_publish(10)
    dt = time.perf_counter() - t0
    _paho_close(c)
    return n / dt


def _paho_pipelined(port, n):
    c = _paho(port, "ppipe")
    topic = _topic("ppipe")
    t0 = time.perf_counter()
    infos = [c.publish(topic, PAYLOAD, qos=1) for _ in range(n)]
    for info in infos:
        info.wait_for_publish(30)
    dt = time.perf_counter() - t0
    _paho_close(c)
    return n / dt


def _paho_qos0(port, n):
    c = _paho(port, "pq0")
    topic = _topic("pq0")
    t0 = time.perf_counter()
    info = None
    for _ in range(n):
        info = c.publish(topic, PAYLOAD)
    info.wait_for_publish(30)  # QoS 0: "published" once written to the socket
    dt = time.perf_counter() - t0
    _paho_close(c)
    return n / dt


def _paho_e2e(port, n, qos):
    rx = _paho(port, "prx")
    tx = _paho(port, "ptx")
    topic = _topic("pe2e")
    done = threading.Event()
    count = [0]

    def on_msg(client, userdata, msg):
        count[0] += 1
        if count[0] == n:
            done.set()

    subscribed = threading.Event()
    rx.on_message = on_msg
    rx.on_subscribe = lambda *a: subscribed.set()
    rx.subscribe(topic, qos=qos)
    subscribed.wait(5)
    t0 = time.perf_counter()
    for _ in range(n):
        tx.publish(topic, PAYLOAD, qos=qos)
    done.wait(60)
    dt = time.perf_counter() - t0
    _paho_close(tx)
    _paho_close(rx)
    return count[0] / dt


# ----------------------------------------------------------------------------- run --

METRICS = ("qos1_stop_and_wait", "qos1_pipelined", "qos0_publish", "e2e_qos0", "e2e_qos1")


def _measure(port, n):
    ours = {
        "qos1_stop_and_wait": lambda: asyncio.run(_ours_stop_and_wait(port, n // 2)),
        "qos1_pipelined": lambda: asyncio.run(_ours_pipelined(port, n)),
        "qos0_publish": lambda: asyncio.run(_ours_qos0(port, n)),
        "e2e_qos0": lambda: asyncio.run(_ours_e2e(port, n, 0)),
        "e2e_qos1": lambda: asyncio.run(_ours_e2e(port, n, 1)),
    }
    paho = {
        "qos1_stop_and_wait": lambda: _paho_stop_and_wait(port, n // 2),
        "qos1_pipelined": lambda: _paho_pipelined(port, n),
        "qos0_publish": lambda: _paho_qos0(port, n),
        "e2e_qos0": lambda: _paho_e2e(port, n, 0),
        "e2e_qos1": lambda: _paho_e2e(port, n, 1),
    }
    return ours, paho


def bench_client(results: dict, n: int = 10_000, rounds: int = 3) -> None:
    """Fill ``results`` with {metric: {"ours", "paho", "ratio"}} in msg/s, and
    "conditions"."""
    broker = _Broker().start()
    try:
        ours, paho = _measure(broker.port, n)
        for metric in METRICS:
            o = statistics.median(ours[metric]() for _ in range(rounds))
            p = statistics.median(paho[metric]() for _ in range(rounds))
            results[metric] = {"ours": round(o), "paho": round(p), "ratio": round(o / p, 2)}
        results["conditions"] = {
            "messages": n,
            "stop_and_wait_messages": n // 2,
            "payload_bytes": len(PAYLOAD),
            "rounds": rounds,
            "broker": "mosquitto, loopback, max_queued_messages 0",
            "python": sys.version.split()[0],
        }
    finally:
        broker.close()


def _table(results: dict) -> str:
    lines = [f"{'msg/s':20s} {'mqtt_v5':>12s} {'paho':>12s} {'ratio':>8s}"]
    for metric in METRICS:
        r = results.get(metric)
        if r:
            lines.append(f"{metric:20s} {r['ours']:12,d} {r['paho']:12,d} {r['ratio']:8.2f}")
    c = results.get("conditions", {})
    lines.append(", ".join(f"{k}: {v}" for k, v in c.items()))
    return "\n".join(lines)


bench_client.table = _table


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = {}
    bench_client(results, args.n, args.rounds)
    print(json.dumps(results, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()
