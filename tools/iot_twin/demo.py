"""`make demo`: the AWS IoT weather-sensor scenario against the local twin.

It starts the twin in this process (free loopback ports, state in ``$TWIN_DEMO_DATA``,
default ``.twin-demo/``), registers the thing ``weather-sensor-001`` with a certificate, and
then runs the device side with ``mqtt_v5.aws`` exactly as it would run against AWS IoT Core:

1. ``aws_client``: mutual TLS with the thing name as client id, persistent session;
2. publish telemetry (QoS 1) to ``devices/<thing>/telemetry``;
3. ``Shadow.update``: report the sensor state (answer matched by clientToken);
4. the demo (standing in for a cloud application) changes the shadow's desired state;
   ``Shadow.on_delta`` gets only the change, applies it and reports it in the same step;
5. the demo queues a job; ``Jobs.on_next`` wakes the ``JobRunner``, which starts it, runs
   the handler for its ``operation`` and reports SUCCEEDED;
6. QoS 2 is refused up front: AWS IoT Core's CONNACK says Maximum QoS 1.

Every step is printed. Exit status 0 means the whole scenario succeeded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from mqtt_v5 import UsageError
from mqtt_v5.aws.connect import aws_client
from mqtt_v5.aws.jobs import JobRunner, Jobs
from mqtt_v5.aws.shadow import Shadow

from .twin import Twin

THING = "weather-sensor-001"
STEP_TIMEOUT_S = 10.0


def say(text: str) -> None:
    print(text, flush=True)


async def until(predicate, what: str) -> None:
    """Wait (bounded) until ``predicate()`` holds."""
    for _ in range(int(STEP_TIMEOUT_S / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what}: not within {STEP_TIMEOUT_S} s")


async def scenario(twin: Twin) -> None:
    creds = twin.add_thing(THING) if not (twin.thing_dir(THING) / "cert.pem").exists() else None
    cert = creds.cert_path if creds else twin.thing_dir(THING) / "cert.pem"
    key = creds.key_path if creds else twin.thing_dir(THING) / "key.pem"
    port = twin.ports["mtls"]
    say(f"[1] connect {THING} over mutual TLS to mqtts://localhost:{port}")
    say(f"      CA {twin.ca_path}, certificate {cert}")

    client = aws_client(
        "localhost",
        THING,
        cert=str(cert),
        key=str(key),
        ca=str(twin.ca_path),
        port=port,
        keep_alive=30,
    )
    client.options.reconnect_config.max_attempts = 3
    client.on_connection_event(lambda ev: say(f"      connection event: {ev!r}"))
    await client.connect()
    lim = client.limits
    say(
        f"      CONNACK: Receive Maximum {lim.receive_maximum}, Maximum QoS {lim.maximum_qos},"
        f" Maximum Packet Size {lim.maximum_packet_size},"
        f" Topic Alias Maximum {lim.topic_alias_maximum}"
    )

    say(f"[2] publish telemetry (QoS 1) to devices/{THING}/telemetry")
    readings = [{"temperature": 21.5 + i * 0.3, "humidity": 48 + i} for i in range(3)]
    for r in readings:
        pid = await client.publish_qos1(f"devices/{THING}/telemetry", json.dumps(r))
        say(f"      {r} acknowledged, packet id {pid}")

    say("[3] report state to the device shadow")
    shadow = Shadow(client)
    config = {"report_interval_s": 60, "unit": "C"}
    accepted = await shadow.update(reported={**readings[-1], **config, "firmware": "1.2.3"})
    say(f"      update/accepted, shadow version {accepted['version']}")

    def apply(state: dict, version: int) -> dict:
        say(f"      update/delta (version {version}): {state}")
        config.update(state)
        return state  # reported back by on_delta, in the same step

    await shadow.on_delta(apply)

    say("[4] the cloud asks for a new report interval (desired state)")
    twin.update_shadow(THING, {"state": {"desired": {"report_interval_s": 10}}})

    def converged() -> bool:
        doc = twin.get_shadow(THING)
        return (
            bool(doc)
            and doc["state"].get("reported", {}).get("report_interval_s") == 10
            and "delta" not in doc["state"]
        )

    await until(converged, "shadow convergence")
    doc = twin.get_shadow(THING)
    assert doc is not None
    say(
        f"      reported report_interval_s={config['report_interval_s']}; desired and reported"
        f" agree (version {doc['version']})"
    )

    say("[5] the cloud queues a job; the device executes it")

    def calibrate(document: dict, execution: dict) -> dict:
        say(f"      running job {execution['jobId']}: {document}")
        return {"result": "offset applied"}

    runner = JobRunner(Jobs(client), {"calibrate": calibrate})
    run = asyncio.create_task(runner.run())
    job_id = twin.add_job(THING, {"operation": "calibrate", "offset": -0.4})
    await until(lambda: any(j == job_id for j, _ in runner.history), "the job")
    runner.stop()
    await asyncio.wait_for(run, STEP_TIMEOUT_S)
    status = twin.services.jobs.execution(THING, job_id)
    final = status.status if status is not None else "missing"
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
