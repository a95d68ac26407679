"""`make demo`: the AWS IoT weather-sensor scenario against the local twin.

It starts the twin in this process (free loopback ports, state in ``$TWIN_DEMO_DATA``,
default ``.twin-demo/``), registers the thing ``weather-sensor-001`` with a certificate, and
then runs the device side with mqtt_v5 exactly as it would run against AWS IoT Core, over
the raw ``$aws/...`` topics:

1. connect over mutual TLS with the thing name as client id (persistent session);
2. publish telemetry (QoS 1) to ``devices/<thing>/telemetry``;
3. report the sensor state to the device shadow and wait for ``update/accepted``;
4. the demo (standing in for a cloud application) changes the shadow's desired state;
   the device gets ``update/delta``, applies it and reports the new state;
5. the demo queues a job; the device gets ``jobs/notify-next``, starts it
   (``start-next``), executes it and reports SUCCEEDED;
6. QoS 2 is refused up front: AWS IoT Core's CONNACK says Maximum QoS 1.

Every step is printed. Exit status 0 means the whole scenario succeeded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig, UsageError

from .twin import Twin

THING = "weather-sensor-001"
STEP_TIMEOUT_S = 10.0


def say(text: str) -> None:
    print(text, flush=True)


class Device:
    """The firmware side: what would run on the ESP32, written against mqtt_v5 only."""

    def __init__(self, client: MqttClient, thing: str) -> None:
        self.client = client
        self.thing = thing
        self.shadow = f"$aws/things/{thing}/shadow"
        self.jobs = f"$aws/things/{thing}/jobs"
        self.config = {"report_interval_s": 60, "unit": "C"}
        self.inbox: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()

    def _on_json(self, msg) -> None:
        try:
            body = json.loads(msg.payload) if msg.payload else {}
        except ValueError:
            body = {"raw": msg.payload}
        self.inbox.put_nowait((msg.topic, body))

    async def expect(self, topic: str) -> dict:
        """The next message on ``topic`` (others seen meanwhile are reported and skipped)."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing on {topic} within {STEP_TIMEOUT_S} s")
            got, body = await asyncio.wait_for(self.inbox.get(), left)
            if got == topic:
                return body
            say(f"      (also received {got})")

    async def subscribe_all(self) -> None:
        for suffix in ("update/accepted", "update/rejected", "update/delta"):
            await self.client.subscribe(f"{self.shadow}/{suffix}", self._on_json, qos=1)
        for suffix in (
            "notify-next",
            "start-next/accepted",
            "start-next/rejected",
            "+/update/accepted",
            "+/update/rejected",
        ):
            await self.client.subscribe(f"{self.jobs}/{suffix}", self._on_json, qos=1)

    async def report(self, state: dict) -> dict:
        body = {"state": {"reported": state}, "clientToken": f"report-{time.monotonic_ns()}"}
        await self.client.publish_qos1(f"{self.shadow}/update", json.dumps(body))
        while True:
            # Other writers' updates (the cloud's) are accepted on the same topic: match
            # ours by its client token.
            accepted = await self.expect(f"{self.shadow}/update/accepted")
            if accepted.get("clientToken") == body["clientToken"]:
                return accepted
            say("      (update/accepted of another writer)")


async def scenario(twin: Twin) -> None:
    creds = twin.add_thing(THING) if not (twin.thing_dir(THING) / "cert.pem").exists() else None
    cert = creds.cert_path if creds else twin.thing_dir(THING) / "cert.pem"
    key = creds.key_path if creds else twin.thing_dir(THING) / "key.pem"
    port = twin.ports["mtls"]
    say(f"[1] connect {THING} over mutual TLS to mqtts://localhost:{port}")
    say(f"      CA {twin.ca_path}, certificate {cert}")

    options = ConnectOptions(THING, clean_start=False, keep_alive=30, session_expiry_interval=3600)
    options.tls = TlsConfig(ca=str(twin.ca_path), cert=str(cert), key=str(key))
    options.reconnect_config.max_attempts = 3
    client = MqttClient(options)
    client.on_connection_event(lambda ev: say(f"      connection event: {ev!r}"))
    await client.connect(f"mqtts://localhost:{port}")
    lim = client.limits
    say(
        f"      CONNACK: Receive Maximum {lim.receive_maximum}, Maximum QoS {lim.maximum_qos},"
        f" Maximum Packet Size {lim.maximum_packet_size},"
        f" Topic Alias Maximum {lim.topic_alias_maximum}"
    )
    device = Device(client, THING)
    await device.subscribe_all()

    say("[2] publish telemetry (QoS 1) to devices/weather-sensor-001/telemetry")
    readings = [{"temperature": 21.5 + i * 0.3, "humidity": 48 + i} for i in range(3)]
    for r in readings:
        pid = await client.publish_qos1(f"devices/{THING}/telemetry", json.dumps(r))
        say(f"      {r} acknowledged, packet id {pid}")

    say("[3] report state to the device shadow")
    accepted = await device.report({**readings[-1], **device.config, "firmware": "1.2.3"})
    say(f"      update/accepted, shadow version {accepted['version']}")

    say("[4] the cloud asks for a new report interval (desired state)")
    twin.update_shadow(THING, {"state": {"desired": {"report_interval_s": 10}}})
    while True:
        # A report that leaves a difference makes a delta too (AWS's data-flow page): wait
        # for the one that carries the cloud's new value.
        delta = await device.expect(f"{device.shadow}/update/delta")
        if delta["state"].get("report_interval_s") == 10:
            break
        say(f"      (earlier update/delta: {delta['state']})")
    say(f"      update/delta: {delta['state']}")
    device.config.update(delta["state"])
    accepted = await device.report(device.config)
    doc = twin.get_shadow(THING)
    assert doc is not None
    reported = doc["state"]["reported"]["report_interval_s"]
    if reported != 10 or "delta" in doc["state"]:
        raise RuntimeError(f"shadow not converged: {doc['state']}")
    say(
        f"      reported report_interval_s={reported}; desired and reported agree"
        f" (version {doc['version']})"
    )

    say("[5] the cloud queues a job; the device executes it")
    job_id = twin.add_job(THING, {"operation": "calibrate", "offset": -0.4})
    note = await device.expect(f"{device.jobs}/notify-next")
    say(f"      notify-next: job {note['execution']['jobId']}")
    await client.publish_qos1(
        f"{device.jobs}/start-next",
        json.dumps({"clientToken": "start-1", "statusDetails": {"step": "starting"}}),
    )
    started = await device.expect(f"{device.jobs}/start-next/accepted")
    execution = started["execution"]
    say(
        f"      start-next: {execution['jobId']} is {execution['status']},"
        f" document {execution['jobDocument']}"
    )
    say("      ... calibrating ...")
    await client.publish_qos1(
        f"{device.jobs}/{job_id}/update",
        json.dumps(
            {
                "status": "SUCCEEDED",
                "expectedVersion": execution["versionNumber"],
                "statusDetails": {"result": "offset applied"},
            }
        ),
    )
    await device.expect(f"{device.jobs}/{job_id}/update/accepted")
    status = twin.services.jobs.execution(THING, job_id)
    final = status.status if hasattr(status, "status") else status["status"]
    if final != "SUCCEEDED":
        raise RuntimeError(f"job {job_id} ended {final}")
    say(f"      job {job_id}: {final}")

    say("[6] QoS 2 on AWS IoT: refused before anything is sent")
    try:
        await client.publish(f"devices/{THING}/telemetry", b"{}", qos=2)
        raise RuntimeError("QoS 2 was accepted")
    except UsageError as e:
        say(f"      UsageError: {e}")

    await client.disconnect()
    say("done: telemetry, shadow report, delta, job SUCCEEDED")


async def main() -> int:
    data = Path(os.environ.get("TWIN_DEMO_DATA", ".twin-demo"))
    twin = Twin(data, mtls_port=0, listeners=("mtls",), admin=False)
    say(f"starting the AWS IoT twin (state in {data}/)")
    await twin.start()
    try:
        await scenario(twin)
    finally:
        await twin.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as e:  # the demo's one job is to say clearly what failed
        print(f"demo FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
